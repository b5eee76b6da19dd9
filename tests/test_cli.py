"""The seqlab command: bad input is one line on stderr and exit 2, and leaves the workdir
as it was; train/eval round trip."""

from __future__ import annotations

import json
import os

import pytest

from seqlab.run.writers import read_metrics
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
