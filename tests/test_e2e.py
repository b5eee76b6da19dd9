"""One end-to-end run per config family: the real config shrunk with `:runlocal`, through
the `seqlab` command (train, then eval; sample for the language models)."""

from __future__ import annotations

import json
import math
import os

import pytest

from seqlab.run.writers import read_metrics
from seqlab.tools.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")


@pytest.fixture(autouse=True)
def offline_data(monkeypatch):
    if os.path.isdir(SHARED_DATA):
        monkeypatch.setenv("SEQLAB_DATA_DIR", SHARED_DATA)


def train_then_eval(tmp_path, capsys, config, baseline=True, extra=()):
    wd = str(tmp_path / "run")
    argv = ["train", "--config", os.path.join(ROOT, "configs", config), "--workdir", wd]
    assert main([*argv, *extra]) == 0
    rows = read_metrics(os.path.join(wd, "metrics.jsonl"))
    evals = [r for r in rows if "eval/loss" in r]
    assert evals and all(math.isfinite(r["eval/loss"]) for r in evals)
    if baseline:
        assert any(k.startswith("baseline/") for k in evals[-1]), "no baseline reported"
    capsys.readouterr()
    assert main(["eval", "--workdir", wd]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["step"] == max(r["step"] for r in rows)
    return wd, result


@pytest.mark.parametrize(
    "config",
    [
        "long_range.py:runlocal",
        "long_range.py:runlocal,task=recall",
        "copy_memory.py:runlocal",
        "seq2seq.py:runlocal",
        "seq2seq.py:runlocal,attention",
        "seq2seq.py:runlocal,task=reverse",
    ],
)
@pytest.mark.slow
def test_family(tmp_path, capsys, config):
    wd, result = train_then_eval(tmp_path, capsys, config, baseline="seq2seq" not in config)
    if "seq2seq" in config:
        assert 0.0 <= result["eval/exact_match"] <= 1.0
        with open(os.path.join(wd, "samples.jsonl")) as f:
            assert "->" in f.readline()  # decoded examples were logged


@pytest.mark.parametrize("config", ["charlm.py:runlocal", "quickstart.py:runlocal"])
@pytest.mark.slow
def test_language_model_family(tmp_path, capsys, config):
    if config.startswith("charlm") and not os.path.isdir(SHARED_DATA):
        pytest.skip("tiny shakespeare is not available offline here")
    quick = config.startswith("quickstart")  # and its inspect page at the step-20 eval
    extra = ["--config.inspect.every=20"] if quick else []
    wd, result = train_then_eval(tmp_path, capsys, config, extra=extra)
    if quick:
        with open(os.path.join(wd, "inspect", "index.html")) as f:
            assert "step 20" in f.read()
    assert result["eval/bpc"] == pytest.approx(result["eval/loss"] / math.log(2), rel=1e-5)
    with open(os.path.join(wd, "samples.jsonl")) as f:
        assert json.loads(f.readline())  # samples were logged during training
    assert main(["sample", "--workdir", wd, "--length", "30", "--seed", "3"]) == 0
    first = capsys.readouterr().out
    assert main(["sample", "--workdir", wd, "--length", "30", "--seed", "3"]) == 0
    assert capsys.readouterr().out == first and len(first) >= 30  # same seed, same text
    code = main(["eval", "--workdir", wd, "--split", "test"])
    err = capsys.readouterr().err
    if config.startswith("quickstart"):  # test_fraction = 0: one line, exit 2
        assert code == 2 and "data.test_fraction is 0" in err
        return
    assert code == 0
    with open(os.path.join(wd, "eval_test.json")) as f:
        test = json.load(f)
    assert test["test/loss"] > 0 and test["test/loss"] != result["eval/loss"]
