"""Each linear recurrence (LRU, minGRU, minLSTM, RG-LRU) end to end: the real configs shrunk
with ``:runlocal`` and a few steps, through the ``seqlab`` command (train, eval; sample for the
language model, which decodes step by step).

Every cell runs the char LM, whose sampling takes each cell's own one-step path; the other
three families each take a different linear cell, so every family meets one (their plumbing
is one code path for all mixers; the cells' numerics are checked against the papers'
equations on every engine in tests/test_linear_cells.py)."""

from __future__ import annotations

import json
import math
import os

import pytest

from seqlab.run.writers import read_metrics
from seqlab.tools.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINEAR = ("lru", "mingru", "minlstm", "rglru")
FAMILIES = {  # config -> (what the family is, overrides that keep it small)
    "long_range.py:runlocal": ("many-to-one", []),
    "copy_memory.py:runlocal": ("many-to-many", []),
    "seq2seq.py:runlocal": ("encoder-decoder", ["--config.task.text_samples=1"]),
    "quickstart.py:runlocal": ("char LM", ["--config.task.sample_length=20"]),
}
SHORT = ["--config.train.num_steps=6", "--config.train.eval_every=6"]
SHORT += ["--config.train.checkpoint_every=6", "--config.train.log_every=3"]


POINTS = [("quickstart.py:runlocal", cell) for cell in LINEAR] + [
    (config, LINEAR[i]) for i, config in enumerate(c for c in FAMILIES if "quickstart" not in c)
]


@pytest.mark.slow
@pytest.mark.parametrize(("config", "cell"), POINTS)
def test_linear_cell_trains_evaluates_and_samples(tmp_path, capsys, config, cell):
    wd = str(tmp_path / "run")
    argv = ["train", "--config", os.path.join(ROOT, "configs", config), "--workdir", wd]
    family, extra = FAMILIES[config]
    assert main([*argv, f"--config.model.cell={cell}", *SHORT, *extra]) == 0
    with open(os.path.join(wd, "config.json")) as f:
        saved = json.load(f)["model"]
    assert saved["cell"] == cell and saved["block"] == "auto"  # residual blocks by default
    evals = [r for r in read_metrics(os.path.join(wd, "metrics.jsonl")) if "eval/loss" in r]
    assert evals and all(math.isfinite(r["eval/loss"]) for r in evals)
    capsys.readouterr()
    assert main(["eval", "--workdir", wd]) == 0
    assert json.loads(capsys.readouterr().out)["step"] == 6
    if family == "char LM":
        assert main(["sample", "--workdir", wd, "--length", "20", "--seed", "1"]) == 0
        assert len(capsys.readouterr().out) >= 20
