"""Files seqlab wrote, read back after damage or editing (bytes that are not UTF-8, lines that
are not objects, fields of the wrong type, torn lines): every reader skips what it cannot use
and says how much in one warning line; nothing is lost; a resume checks every file it reads
back before it rewrites config.json."""

from __future__ import annotations

import json
import logging
import os
import shutil

import faults_util as fu
import pytest

from seqlab.run import records
from seqlab.run.writers import JsonlWriter, read_metrics
from seqlab.tools.cli import main

LR = fu.config_path("long_range.py") + ":runlocal"
FAST = [
    "--config.train.log_every=2",
    "--config.train.eval_every=2",
    "--config.train.checkpoint_every=2",
    "--config.train.progress=False",
    "--config.wandb.mode=disabled",
]
GOOD = [{"step": 2, "train/loss": 1.5}, {"step": 4, "train/loss": 1.25, "eval/loss": "nan"}]
#: (name, damaged line, the reason counted): the ways a line of a JSONL file goes wrong
DAMAGE = [
    ("not-utf8", b'{"step": 3, "train/loss": 1.0\xff}\n', "not UTF-8"),
    ("latin1-bytes", b"\xe9t\xe9\n", "not UTF-8"),
    ("not-json", b"step 3 loss 1.0\n", "not JSON"),
    ("a-list", b"[3, 1.0]\n", "not an object"),
    ("a-number", b"7\n", "not an object"),
    ("a-string", b'"step"\n', "not an object"),
    ("null", b"null\n", "not an object"),
    ("step-string", b'{"step": "3", "train/loss": 1.0}\n', "'step' of the wrong type"),
    ("step-bool", b'{"step": true, "train/loss": 1.0}\n', "'step' of the wrong type"),
    ("step-float", b'{"step": 3.5, "train/loss": 1.0}\n', "'step' of the wrong type"),
    ("no-step", b'{"train/loss": 1.0}\n', "no 'step'"),
    ("value-list", b'{"step": 3, "train/loss": [1.0]}\n', "a value of the wrong type"),
    ("value-object", b'{"step": 3, "train/loss": {"a": 1}}\n', "a value of the wrong type"),
]


def write_lines(path, rows, damaged: bytes = b"") -> None:
    with open(path, "wb") as f:
        f.write((json.dumps(rows[0]) + "\n").encode())
        f.write(damaged)
        for r in rows[1:]:
            f.write((json.dumps(r) + "\n").encode())


@pytest.mark.parametrize("name,line,reason", DAMAGE, ids=[d[0] for d in DAMAGE])
def test_metrics_reader_skips_and_counts(tmp_path, caplog, name, line, reason):
    path = tmp_path / "metrics.jsonl"
    write_lines(path, GOOD, line)
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        rows = read_metrics(str(path))
    assert rows == GOOD
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1, warned
    assert f"skipped 1 of 3 line(s) that cannot be used (1 {reason})" in warned[0], warned
    assert str(path) in warned[0]
    fu.count("malformed_tried")


def test_reader_counts_every_reason_in_one_line_and_a_torn_last_line(tmp_path, caplog):
    path = tmp_path / "samples.jsonl"
    with open(path, "wb") as f:
        f.write(b'{"step": 2, "sample/t=0.5": "abc"}\n\xff\xfe\n[1]\n[2]\n')
        f.write(b'{"step": 4, "sample/t=0.5": 5}\n{"step": 6, "sample/t=0.5": "ab')
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        rows = records.read_jsonl(str(path), records.SAMPLES)
    assert rows == [{"step": 2, "sample/t=0.5": "abc"}]
    (line,) = [r.getMessage() for r in caplog.records]
    for part in (
        "skipped 5 of 6",
        "2 not an object",
        "1 not UTF-8",
        "a value of the wrong",
        "torn",
    ):
        assert part in line, line
    assert records.read_jsonl(str(tmp_path / "missing.jsonl")) == []  # missing: quietly none


@pytest.mark.parametrize(
    "content,why",
    [
        (b"\xff\xfe{}", "not UTF-8"),
        (b'{"state": "done"', "not JSON"),
        (b"[]", "not an object"),
        (b'{"state": 1}', "'state' of the wrong type"),
        (b"", "not JSON"),
    ],
)
def test_json_reader_and_set_aside(tmp_path, caplog, content, why):
    path = tmp_path / "status.json"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        assert records.read_json(str(path), {"state": str}) is None
        assert records.read_json(str(path), {"state": str}, set_aside=True) is None
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all(why in ln for ln in lines), lines
    assert "moved to" in lines[1] and not path.exists()  # nothing lost: it is beside
    assert (tmp_path / "status.json.unreadable").read_bytes() == content
    fu.count("malformed_tried")


def test_resume_truncation_keeps_damaged_lines_aside(tmp_path, caplog):
    """On resume the rows after the checkpoint go; a line that cannot be read is not dropped
    with them but kept, whole, in PATH.skipped."""
    path = tmp_path / "metrics.jsonl"
    bad = b'{"step": "oops"}\n\xff\xfe not text\n'
    write_lines(path, [{"step": s, "train/loss": 1.0} for s in (2, 4, 6)], bad)
    samples = tmp_path / "samples.jsonl"
    samples.write_bytes(b'{"step": 2, "sample/t=1.0": "hi"}\n{"step": 4, "sample/t=1.0": 7}\n')
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        JsonlWriter(str(path), resume_step=4).close()
    assert [r["step"] for r in read_metrics(str(path))] == [2, 4]
    assert (tmp_path / "metrics.jsonl.skipped").read_bytes() == bad
    assert (tmp_path / "samples.jsonl.skipped").read_bytes() == b'{"step": 4, "sample/t=1.0": 7}\n'
    assert read_metrics(str(samples), records.SAMPLES) == [{"step": 2, "sample/t=1.0": "hi"}]
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and all("moved to" in ln for ln in lines), lines


def test_inspect_samples_and_sweep_status_readers(tmp_path, caplog):
    from seqlab.tools.inspect import read_samples
    from seqlab.tools.sweep import _status

    (tmp_path / "samples.jsonl").write_bytes(
        b'{"step": 4, "sample/t=0.5": "late"}\n\xff\n{"step": "2", "sample/t=0.5": "x"}\n'
        b'{"step": 2, "sample/t=0.5": ["x"]}\n{"step": 2, "sample/t=0.5": "early"}\n'
    )
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        got = read_samples(str(tmp_path))
    assert [r["text"] for r in got["rows"]] == ["early", "late"]
    (tmp_path / "status.json").write_bytes(b'{"state": ["done"]}')
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        assert _status(str(tmp_path)) == {}  # not trusted: the point runs again
    assert len(caplog.records) == 2, [r.getMessage() for r in caplog.records]


def test_report_reads_around_damaged_lines(tmp_path, caplog):
    from seqlab.tools.report import collect

    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": {"name": "adding"}, "train": {}}))
    write_lines(run / "metrics.jsonl", [{"step": 2, "eval/mse": 0.5}], b'{"step": [2]}\n\xff\n')
    (run / "status.json").write_bytes(b"\x00\x01")
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        (row,) = collect(str(tmp_path))
    assert row["steps"] == 2 and row["eval/mse"] == 0.5 and row["state"] != "unreadable", row
    lines = [r.getMessage() for r in caplog.records]
    assert any("skipped 2 of 3" in ln for ln in lines) and len(lines) == 2, lines


@pytest.mark.slow
def test_train_resumes_over_damaged_files_and_refuses_before_rewriting(tmp_path, capsys):
    """A run whose metrics.jsonl, samples.jsonl and probe.json were damaged resumes (the
    damage set aside, counted in one line each); a resume refused after those reads (here:
    TensorBoard asked for without tensorboardX) leaves config.json as it was."""
    wd = tmp_path / "run"
    base = ["train", "--config", LR, "--workdir", str(wd), *FAST, "--config.probe.every=2"]
    assert main([*base, "--config.train.num_steps=4"]) == 0
    with open(wd / "metrics.jsonl", "ab") as f:
        f.write(b'\xff\xfe{"step": 1}\n[1, 2]\n{"step": "4", "train/loss": 0}\n')
    (wd / "samples.jsonl").write_bytes(b'{"step": 2, "sample": 3}\nnot json\n')
    (wd / "probe.json").write_bytes(b'{"layer_0": ')
    config = (wd / "config.json").read_bytes()
    capsys.readouterr()
    try:
        import tensorboardX  # noqa: F401
    except ImportError:
        code = main([*base, "--config.train.num_steps=6", "--config.tensorboard=True"])
        _, err = capsys.readouterr()
        assert code == 2 and "tensorboardX" in err and "Traceback" not in err, err[-2000:]
        assert (wd / "config.json").read_bytes() == config  # refused: not rewritten
    assert main([*base, "--config.train.num_steps=6"]) == 0
    _, err = capsys.readouterr()
    assert "Traceback" not in err, err[-3000:]
    rows = read_metrics(str(wd / "metrics.jsonl"))
    assert max(r["step"] for r in rows) == 6 and all(isinstance(r["step"], int) for r in rows)
    assert json.loads((wd / "config.json").read_text())["train"]["num_steps"] == 6
    skipped = (wd / "metrics.jsonl.skipped").read_bytes()
    assert b"\xff\xfe" in skipped and b"[1, 2]" in skipped  # nothing lost
    assert (wd / "probe.json.unreadable").read_bytes() == b'{"layer_0": '
    assert json.loads((wd / "probe.json").read_text())  # probed anew, whole
    assert os.path.exists(wd / "samples.jsonl.skipped")
    shutil.rmtree(wd)
    fu.count("malformed_tried", 3)


@pytest.mark.parametrize(
    "content", [b"\xff\xfe\x00", b"", b"two words", b"a" * 300, b"id/../../etc"]
)
def test_a_damaged_wandb_id_is_set_aside(tmp_path, caplog, content):
    from seqlab.run.writers import saved_run_id

    path = tmp_path / "wandb_id.txt"
    path.write_bytes(content)
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        assert saved_run_id(str(path)) is None
    assert (tmp_path / "wandb_id.txt.unreadable").read_bytes() == content
    assert len(caplog.records) == 1
    path.write_text("3f2a9c01be7d\n")
    assert saved_run_id(str(path)) == "3f2a9c01be7d"
    assert saved_run_id(str(tmp_path / "missing.txt")) is None
    fu.count("malformed_tried")
