"""Unbounded and degenerate inputs: every flag that could make a command run for hours has an
upper bound, an empty path or a directory where a file belongs is one sentence naming the
flag, and a statistic computed from too little data says so."""

from __future__ import annotations

import json
import os

import faults_util as fu
import pytest

from seqlab.tools.cli import main

LR = fu.config_path("long_range.py") + ":runlocal"
CONFIGS = os.path.dirname(fu.config_path("x"))


def run_main(capsys, argv):
    code = main([str(a) for a in argv])
    _, err = capsys.readouterr()
    return code, err


@pytest.fixture(scope="module")
def dirs(tmp_path_factory):
    """A run with results (report/eval read it) and a plain file."""
    d = tmp_path_factory.mktemp("bounds")
    run = d / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"task": {"name": "adding"}, "train": {}}))
    (run / "metrics.jsonl").write_text('{"step": 2, "eval/mse": 0.5}\n')
    (d / "file.txt").write_text("x")
    return {"run": str(run), "file": str(d / "file.txt"), "new": str(d / "new")}


# (name, argv with {run} {file} {new} placeholders, needles of the one stderr line)
CASES = [
    # -- empty paths: a sentence with no hole in it ----------------------------------------
    ("train-workdir", ["train", "--config", LR, "--workdir", ""], ["--workdir is empty"]),
    ("eval-workdir", ["eval", "--workdir", ""], ["--workdir is empty"]),
    ("sample-workdir", ["sample", "--workdir", ""], ["--workdir is empty"]),
    ("inspect-workdir", ["inspect", "--workdir", ""], ["--workdir is empty"]),
    ("report-empty", ["report", ""], ["--workdir is empty"]),
    ("report-workdir", ["report", "--workdir", " "], ["--workdir is empty"]),
    ("sweep-workdir", ["sweep", "--config", LR, "--workdir", ""], ["--workdir is empty"]),
    ("inspect-out", ["inspect", "--workdir", "{run}", "--out", ""], ["--out is empty"]),
    ("inspect-text", ["inspect", "--workdir", "{run}", "--text", ""], ["--text is empty"]),
    # -- --config that is no file -----------------------------------------------------------
    ("config-dir", ["train", "--config", CONFIGS, "--workdir", "{new}"], ["is a directory"]),
    (
        "config-dir-arg",
        ["train", "--config", CONFIGS + ":runlocal", "--workdir", "{new}"],
        ["is a directory", "charlm.py"],
    ),
    ("config-empty", ["train", "--config", "", "--workdir", "{new}"], ["--config is empty"]),
    ("config-empty-arg", ["train", "--config=:gru", "--workdir", "{new}"], ["--config is empty"]),
    ("config-missing", ["train", "--config", "{new}.py", "--workdir", "{new}"], ["no such file"]),
    ("sweep-config-dir", ["sweep", "--config", CONFIGS, "--workdir", "{new}"], ["a directory"]),
    ("probe-config-dir", ["probe", "--config", CONFIGS, "--workdir", "{new}"], ["a directory"]),
    # -- bounds on what could run for hours -------------------------------------------------
    ("ngram-order", ["inspect", "--workdir", "{run}", "--ngram_order", "1000"], ["[0, 8]"]),
    ("max-chars", ["inspect", "--workdir", "{run}", "--max_chars", "1000000000"], ["max_chars"]),
    ("sample-length", ["sample", "--workdir", "{run}", "--length", "10000001"], ["--length"]),
    ("sample-seed-big", ["sample", "--workdir", "{run}", "--seed", str(2**70)], ["--seed"]),
    ("sample-seed-neg", ["sample", "--workdir", "{run}", "--seed", "-1"], ["--seed"]),
    ("sweep-parallel", ["sweep", "--config", LR, "--workdir", "{new}", "--parallel", "0"], []),
    # -- report --------------------------------------------------------------------------------
    ("report-file", ["report", "{file}"], ["is a file"]),
    ("report-metric", ["report", "{run}", "--metric", "eval/nope"], ["eval/mse"]),
    ("report-metric-empty", ["report", "{run}", "--metric", ""], ["--metric"]),
]


@pytest.mark.parametrize("name,argv,needles", CASES, ids=[c[0] for c in CASES])
def test_refused_in_one_line(dirs, capsys, name, argv, needles):
    before = {k: fu.snapshot(v) for k, v in dirs.items() if os.path.isdir(v)}
    code, err = run_main(capsys, [a.format(**dirs) for a in argv])
    line = fu.assert_one_line_error(code, err, needles)
    assert "  " not in line.split(": error: ", 1)[1], line  # no hole where a value was
    assert {k: fu.snapshot(v) for k, v in dirs.items() if os.path.isdir(v)} == before
    assert not os.path.exists(dirs["new"])
    fu.count("malformed_tried")
    fu.count("malformed_rejected")


@pytest.mark.slow
def test_too_little_text_is_said_on_the_page_and_stderr(tmp_path, tmp_path_factory, capsys):
    from test_inspect import lm_workdir

    from seqlab.tools.inspect import MIN_STATS_SYMBOLS, too_short

    assert too_short(MIN_STATS_SYMBOLS, "char") == ""
    assert "only 12 chars" in too_short(12, "char")
    wd = lm_workdir(tmp_path_factory)
    text = tmp_path / "short.txt"
    text.write_text("to be or not")
    out = tmp_path / "page"
    argv = ["inspect", "--workdir", wd, "--text", text, "--out", out, "--ngram_order", "2"]
    assert main([str(a) for a in argv]) == 0
    err = capsys.readouterr().err
    assert "only 12 chars inspected" in err and "too little text" in err, err
    assert "too little text to mean much" in (out / "index.html").read_text()
    text.write_text("to be or not to be, " * 12)  # 240 characters: no note
    assert main([str(a) for a in argv]) == 0
    assert "too little text" not in capsys.readouterr().err


def test_an_older_saved_config_is_one_warning_line(caplog):
    """Every key added since a run was saved is filled from the defaults: one line names them
    all (one line each put screens of warnings before a refusal)."""
    import logging

    from seqlab.tasks import complete_config, task_config

    config = task_config("charlm").to_dict()
    for key in ("num_layers", "hidden_size", "dropout"):
        del config["model"][key]
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        done = complete_config(config, saved=True)
    (line,) = [r.getMessage() for r in caplog.records]
    assert "predates 3 key(s)" in line and "model.hidden_size=" in line, line
    assert done.model.hidden_size == task_config("charlm").model.hidden_size
