"""The lines ``seqlab train`` ends with: steps (and where it resumed), time, the final
metrics with the task's headline first, the best step by the task's own rule, the files and
the next commands; results.json holds the same final metrics, machine-readable."""

from __future__ import annotations

import json
import os

import pytest

from seqlab.run.writers import read_metrics
from seqlab.tasks import task_config
from seqlab.tools.cli import main
from seqlab.tools.summary import best_eval, metric_line, summary

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")
FAST = [
    "--config.train.log_every=2",
    "--config.train.eval_every=2",
    "--config.train.checkpoint_every=2",
    "--config.train.progress=False",
    "--config.wandb.mode=disabled",
]


def train(capsys, workdir: str, steps: int) -> str:
    argv = ["train", "--config", f"{CONFIGS}/long_range.py:runlocal", "--workdir", workdir]
    assert main([*argv, f"--config.train.num_steps={steps}", *FAST]) == 0
    return capsys.readouterr().out


def field(out: str, name: str) -> str:
    """The text after ``name`` on its summary line."""
    line = next(x for x in out.splitlines() if x.strip().startswith(name + " "))
    return line.strip()[len(name) :].strip()


@pytest.mark.slow
def test_train_ends_with_a_summary(tmp_path, capsys):
    wd = str(tmp_path / "run")
    out = train(capsys, wd, 4)
    assert out.startswith("seqlab train: done at step 4 of 4 (from scratch) in ")
    with open(os.path.join(wd, "results.json")) as f:
        results = json.load(f)  # the machine-readable form
    final = field(out, "final").split("  ")
    assert final[0] == f"eval/mse={results['eval/mse']:.4g}"  # adding's headline first
    assert f"eval/loss={results['eval/loss']:.4g}" in final
    assert field(out, "baseline").startswith("baseline/mse=0.1667")
    evals = [r for r in read_metrics(os.path.join(wd, "metrics.jsonl")) if "eval/mse" in r]
    best = min(evals, key=lambda r: r["eval/mse"])  # the lowest mse, from the file
    assert field(out, "best").startswith(f"step {best['step']}: eval/mse={best['eval/mse']:.4g}")
    assert field(out, "files") == os.path.abspath(wd)
    for name in ("results.json", "metrics.jsonl", "checkpoints"):
        assert any(line.split()[:1] == [name] for line in out.splitlines()), name
    assert f"seqlab eval --workdir {wd} --best" in out and f"seqlab report {wd}" in out
    assert "seqlab sample" not in out and "seqlab inspect" not in out  # not a language model

    os.mkdir(os.path.join(wd, "checkpoints", "99"))  # a stray step the run sets aside
    out = train(capsys, wd, 6)  # extended
    assert out.startswith("seqlab train: done at step 6 of 6 (2 now, resumed from step 4) in ")
    out = train(capsys, wd, 6)  # nothing left to do
    assert out.startswith("seqlab train: done at step 6 of 6 (already there: nothing to train)")


def test_summary_of_a_stopped_language_model(tmp_path):
    wd = tmp_path / "my run"  # a path the next commands must quote
    wd.mkdir()
    c = task_config("charlm")
    c.train.num_steps, c.train.time_limit_s = 10, 5.0
    (wd / "results.json").write_text(json.dumps({"step": 3, "eval/loss": 2.0}))
    rows = [{"step": 1, "eval/loss": 2.5}, {"step": 2, "eval/loss": 1.5}, {"step": 3}]
    (wd / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    metrics = {"eval/accuracy": 0.5, "eval/loss": 2.0, "baseline/loss": 3.0}
    out = summary(str(wd), c, metrics, start=None, wall_s=1.0)
    assert out.startswith("seqlab train: stopped at step 3 of 10 (from scratch)")
    assert "by train.time_limit_s=5; run the same command again to continue" in out
    assert field(out, "final") == "eval/loss=2  eval/accuracy=0.5"  # the task's metric first
    assert field(out, "best").startswith("step 2: eval/loss=1.5 (the lowest")
    assert f"seqlab sample --workdir '{wd}'" in out


def test_best_is_the_tasks_rule_in_both_directions():
    rows = [{"step": 1, "m": 0.3}, {"step": 2, "m": 0.1}, {"step": 3, "m": 0.1}, {"step": 4}]
    rows.append({"step": 5, "m": float("nan")})
    assert best_eval(rows, "m", "min")["step"] == 2  # the earliest of equals; NaN never best
    assert best_eval(rows, "m", "max")["step"] == 1
    assert best_eval(rows, "other", "min") is None


def test_seed_runs_show_mean_and_std_not_every_seed():
    m = {"eval/loss": 1.0, "eval/loss/std": 0.1, "eval/loss/seed_0": 0.9, "eval/mse": 2.0}
    assert metric_line(m, "eval/mse") == "eval/mse=2  eval/loss=1 +- 0.1"


@pytest.mark.parametrize("bad", ["[1, 2]", "{", ""])
def test_unreadable_results_json_still_summarizes(tmp_path, bad):
    (tmp_path / "results.json").write_text(bad)
    out = summary(str(tmp_path), task_config("adding"), {"eval/mse": 0.1}, start=None, wall_s=0)
    assert "final    eval/mse=0.1" in out
