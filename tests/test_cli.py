"""The seqlab command: bad input is one line on stderr and exit 2, and leaves the workdir
as it was; train/eval round trip."""

from __future__ import annotations

import json
import os
import re

import pytest

from seqlab.run.checkpoint import Checkpointer
from seqlab.run.state import checkpoint_meta, init_train_state
from seqlab.run.writers import read_metrics
from seqlab.tasks import TASKS, make_task, task_config
from seqlab.tasks.long_range import RecallTask
from seqlab.tools.cli import main

CONFIG = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "long_range.py")
FAST = [
    "--config.train.num_steps=4",
    "--config.train.log_every=2",
    "--config.train.eval_every=4",
    "--config.train.checkpoint_every=4",
    "--config.train.progress=False",
    "--config.wandb.mode=disabled",
]


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(d):
    return {
        os.path.join(r, f): os.path.getsize(os.path.join(r, f))
        for r, _, fs in os.walk(d)
        for f in fs
    }


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("run"))
    assert main(["train", "--config", f"{CONFIG}:runlocal", "--workdir", wd, *FAST]) == 0
    return wd


@pytest.mark.slow
def test_train_writes_the_workdir(trained):
    assert {"config.json", "metrics.jsonl", "checkpoints"} <= set(os.listdir(trained))
    rows = read_metrics(os.path.join(trained, "metrics.jsonl"))
    assert any("eval/loss" in r for r in rows) and any("train/loss" in r for r in rows)


def test_eval(trained, capsys):
    code, out, _ = run(capsys, "eval", "--workdir", trained)
    assert code == 0 and json.loads(out)["step"] == 4
    code, out, _ = run(capsys, "eval", "--workdir", trained, "--best")
    assert code == 0 and "eval/loss" in json.loads(out)
    code, _, err = run(capsys, "eval", "--workdir", trained, "--split", "test")
    assert code == 2 and "no test split" in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--config.model.hiden_size=3"], "did you mean --config.model.hidden_size"),
        (["--config.trian.num_steps=3"], "did you mean --config.train.num_steps"),
        (["--config.model.hidden_size=abc"], "hidden_size"),
        (["--config.model.cell=lstn"], "did you mean 'lstm'"),
        (["--config.model.hidden_size=999"], "different model shape"),
        (["--config.optim.learning_rate=-1.0"], "learning_rate"),
    ],
)
def test_bad_train_input_keeps_workdir(trained, capsys, argv, needle):
    before = snapshot(trained)
    code, _, err = run(
        capsys, "train", "--config", f"{CONFIG}:runlocal", "--workdir", trained, *FAST, *argv
    )
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(trained) == before


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["train", "--config", "configs/nope.py", "--workdir", "{tmp}"], "nope.py"),
        (["train", "--workdir", "{tmp}"], "--config is required"),
        (["train", "--config", CONFIG], "--workdir is required"),
        (["train", "--config", f"{CONFIG}:runlocal,celll=gru", "--workdir", "{tmp}"], "celll"),
        (["eval", "--workdir", "{tmp}"], "no checkpoints"),
        (["sample", "--workdir", "{tmp}"], "no checkpoints"),
        (["trian"], "did you mean 'train'"),
        (["train", "--bogus=1"], "unknown flag --bogus"),
    ],
)
def test_bad_input_is_one_line(tmp_path, capsys, argv, needle):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    code, _, err = run(capsys, *argv)
    assert code == 2
    assert needle in err and len(err.strip().splitlines()) == 1, err


def test_sample_needs_a_language_model(trained, capsys):
    code, _, err = run(capsys, "sample", "--workdir", trained)
    assert code == 2 and "character language model" in err


def test_unwritable_workdir(tmp_path, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a directory")
    code, _, err = run(
        capsys, "train", "--config", f"{CONFIG}:runlocal", "--workdir", str(blocker / "run"), *FAST
    )
    assert code == 2 and "not writable" in err
    assert blocker.read_text() == "not a directory"


# -- seqlab sample -----------------------------------------------------------------------------
QUICK = os.path.join(os.path.dirname(CONFIG), "quickstart.py")


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    wd = str(tmp_path_factory.mktemp("lm"))
    argv = ["train", "--config", f"{QUICK}:runlocal", "--workdir", wd, *FAST]
    assert main([*argv, "--config.task.sample_length=4"]) == 0
    return wd


def split_samples(out: str) -> list[tuple[re.Match, str]]:
    """(header, text) per sample, cut at the header lines as a script would."""
    from seqlab.tools.sampling import HEADER

    samples: list[tuple[re.Match, list[str]]] = []
    for line in out.removesuffix("\n").split("\n"):
        if m := HEADER.match(line):
            samples.append((m, []))
        else:
            samples[-1][1].append(line)
    return [(m, "\n".join(lines)) for m, lines in samples]


@pytest.mark.slow
def test_samples_are_separated_and_are_what_generate_draws(lm, capsys):
    import jax

    from seqlab import load_run

    code, out, err = run(
        capsys,
        "sample",
        "--workdir",
        lm,
        "--num_samples",
        "3",
        "--length",
        "25",
        "--prime",
        "def ",
        "--seed",
        "4",
        "--temperature",
        "0.8",
    )
    assert code == 0, err
    samples = split_samples(out)
    assert [m.group(1, 2) for m, _ in samples] == [("1", "3"), ("2", "3"), ("3", "3")]
    assert all(m.group(3) == "seed 4, temperature 0.8" for m, _ in samples)
    run_ = load_run(lm)
    ids = run_.vocab.encode("def ")
    drawn = run_.model().generate(ids, 25, key=jax.random.key(4), temperature=0.8, num_samples=3)
    assert [text for _, text in samples] == ["def " + run_.vocab.decode(r) for r in drawn]
    code, one, _ = run(capsys, "sample", "--workdir", lm, "--length", "25", "--prime", "def ")
    assert code == 0 and not one.startswith("---") and len(one) == len("def ") + 25 + 1


@pytest.fixture
def no_restore(monkeypatch):
    """Makes any restore of a model's parameters fail the test."""
    import seqlab.run

    def restored(*a, **k):
        raise AssertionError("the parameters were restored before the flags were checked")

    monkeypatch.setattr(seqlab.run, "load_run", restored)


@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--top_k=1000"], "--top_k=1000 exceeds the vocabulary size"),
        (["--prime", "\u20ac"], "not in the vocab"),
        (["--replica=3"], "--replica=3 is out of range"),
        (["--workdir={lr}"], "character language model"),
    ],
)
def test_sample_flags_are_checked_before_any_restore(lm, trained, no_restore, capsys, argv, needle):
    argv = [a.replace("{lr}", trained) for a in argv]
    code, out, err = run(capsys, "sample", "--workdir", lm, *argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert out == ""


@pytest.mark.slow
def test_long_sample_streams_in_chunks_with_progress(lm, capsys, monkeypatch):
    from seqlab.tools import cli

    for extra in ([], ["--num_samples", "2"]):
        argv = [
            "sample",
            "--workdir",
            lm,
            "--length",
            "40",
            "--prime",
            "def ",
            "--seed",
            "2",
            *extra,
        ]
        monkeypatch.setattr(cli, "SAMPLE_CHUNK", 4096)
        code, whole, err = run(capsys, *argv)
        assert code == 0 and "40/40" not in err  # short: one call, no bar
        monkeypatch.setattr(cli, "SAMPLE_CHUNK", 7)
        code, chunked, err = run(capsys, *argv)
        assert code == 0 and chunked == whole and "40/40" in err  # 6 calls, a bar on stderr
    assert [len(text) for _, text in split_samples(chunked)] == [44, 44]  # prime + 40


# -- seqlab eval --best: which checkpoint, by the task's own rule --------------------------------
class RecallByAccuracy(RecallTask):
    """Recall whose best checkpoint is its highest accuracy (no built-in task maximizes)."""

    best_metric, best_mode = "eval/accuracy", "max"


@pytest.mark.parametrize(
    ("task", "metric", "best_step"),
    [("adding", "eval/mse", 2), ("recall_by_accuracy", "eval/accuracy", 1)],
)
@pytest.mark.slow
def test_eval_best_restores_the_best_step(tmp_path, capsys, monkeypatch, task, metric, best_step):
    """Steps 1..3 saved with metric values 0.3, 0.1, 0.2: the lowest is step 2, the highest
    step 1; eval/loss ranks them the other way round, so a loss-based pick fails too."""
    monkeypatch.setitem(TASKS, "recall_by_accuracy", f"{__name__}:RecallByAccuracy")
    config = task_config(task)
    config.model.hidden_size, config.data.seq_len, config.data.batch_size = 6, 8, 4
    config.task.eval_batches = 1
    mtask = make_task(config)
    _, state, _ = init_train_state(config, mtask)
    ckpt = Checkpointer(str(tmp_path / "checkpoints"), keep=10, async_save=False)
    for step, value in {1: 0.3, 2: 0.1, 3: 0.2}.items():
        loss = value * (9 if step == best_step else 1)
        ckpt.save(step, state, checkpoint_meta(config, mtask), {metric: value, "eval/loss": loss})
    ckpt.close()
    for flags_, step in (["--best"], best_step), ([], 3):
        code, out, err = run(capsys, "eval", "--workdir", str(tmp_path), *flags_)
        assert code == 0, err
        with open(tmp_path / "eval.json") as f:
            result = json.load(f)
        assert result["step"] == json.loads(out)["step"] == step, flags_
        assert result["checkpoint"] == ("best" if flags_ else "latest")


def test_sample_stops_quietly_when_the_reader_does(lm, capsys, monkeypatch):
    """`seqlab sample --length 50000000 | head`: generation stops at the closed pipe, exit 0,
    no traceback."""
    import io
    import sys

    from seqlab.tools import cli

    class Closed:
        writes = 0

        def write(self, text):
            Closed.writes += 1
            raise BrokenPipeError(32, "Broken pipe")

        def flush(self):
            pass

        def fileno(self):  # as under pytest's capture: no real descriptor to redirect
            raise io.UnsupportedOperation("fileno")

    monkeypatch.setattr(cli, "SAMPLE_CHUNK", 5)
    monkeypatch.setattr(sys, "stdout", Closed())
    code = main(["sample", "--workdir", lm, "--length", "1000"])
    err = capsys.readouterr().err
    assert code == 0 and "Traceback" not in err and Closed.writes == 1
