"""``seqlab.load_run``: config, model, step and metadata of a workdir, the best checkpoint by
the task's own metric in both directions, and configs saved before a key existed."""

from __future__ import annotations

import logging

import jax
import numpy as np
import pytest

from seqlab import load_run
from seqlab.errors import RunError
from seqlab.run.checkpoint import Checkpointer
from seqlab.run.evaluate import Evaluator
from seqlab.run.state import checkpoint_meta, init_train_state
from seqlab.tasks import TASKS, make_task, task_config
from seqlab.tasks.long_range import RecallTask


class RecallByAccuracy(RecallTask):
    """Recall whose best checkpoint is its highest accuracy (no built-in task maximizes)."""

    best_metric, best_mode = "eval/accuracy", "max"


@pytest.fixture(autouse=True)
def _register(monkeypatch):
    monkeypatch.setitem(TASKS, "recall_by_accuracy", f"{__name__}:RecallByAccuracy")


def tiny(task: str):
    c = task_config(task)
    c.model.hidden_size, c.data.seq_len, c.data.batch_size = 6, 8, 4
    c.task.eval_batches, c.wandb.mode, c.train.progress = 1, "disabled", False
    return c


def save_steps(workdir, config, metrics_by_step, edit_meta=None) -> None:
    """Checkpoints of the real initial state at chosen steps with chosen eval metrics."""
    task = make_task(config)
    _, state, _ = init_train_state(config, task)
    meta = checkpoint_meta(config, task)
    if edit_meta is not None:
        edit_meta(meta)
    ckpt = Checkpointer(str(workdir / "checkpoints"), keep=10, async_save=False)
    for step, metrics in metrics_by_step.items():
        state["params"] = jax.tree.map(lambda a, s=step: a + s, state["params"])
        ckpt.save(step, state, meta, metrics=metrics)
    ckpt.close()


@pytest.mark.parametrize(
    ("task", "metric", "values", "best_step"),
    [
        ("adding", "eval/mse", {1: 0.3, 2: 0.1, 3: 0.2}, 2),  # lower is better
        ("recall_by_accuracy", "eval/accuracy", {1: 0.3, 2: 0.1, 3: 0.2}, 1),  # higher
    ],
)
@pytest.mark.slow
def test_best_is_the_tasks_metric_and_direction(tmp_path, task, metric, values, best_step):
    config = tiny(task)
    # eval/loss disagrees with the task's metric, so a loss-based pick would be wrong
    save_steps(
        tmp_path,
        config,
        {s: {metric: v, "eval/loss": v * (1 if s != best_step else 9)} for s, v in values.items()},
    )
    assert load_run(str(tmp_path)).step == 3
    best = load_run(str(tmp_path), best=True)
    assert best.step == best_step and best.metrics[metric] == values[best_step]
    first = jax.tree.leaves(best.params)[0]
    fresh = jax.tree.leaves(init_train_state(config, make_task(config))[1]["params"])[0]
    np.testing.assert_allclose(first, fresh + sum(range(1, best_step + 1)))  # that step's params


def test_load_run_matches_the_run_it_loads(tmp_path):
    from seqlab import train_and_evaluate

    config = tiny("adding")
    config.train.num_steps = config.train.eval_every = config.train.checkpoint_every = 3
    final = train_and_evaluate(config, str(tmp_path))
    run = load_run(str(tmp_path))
    assert run.step == 3 and run.spec.family == "classifier" and run.vocab is None
    assert run.config.to_dict() == config.to_dict()
    task = make_task(run.config)
    again = Evaluator(run.mdef, task)(run.params)
    assert again["eval/mse"] == pytest.approx(final["eval/mse"], rel=1e-6)
    with pytest.raises(RunError, match="out of range"):
        run.model(1)


def test_config_saved_before_a_key_existed(tmp_path, caplog):
    config = tiny("charlm")
    config.data.corpus, config.data.max_chars = "python_stdlib", 20_000

    def older(meta):  # as an older seqlab wrote it: one key missing, one under its old name
        del meta["config"]["task"]["sample_prime"]
        meta["config"]["data"]["eval_batches"] = meta["config"]["task"].pop("eval_batches")

    config.task.eval_batches = 3
    save_steps(tmp_path, config, {5: {"eval/loss": 1.0}}, edit_meta=older)
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        run = load_run(str(tmp_path))
    said = [r.getMessage() for r in caplog.records]
    assert any("predates" in m and "task.sample_prime=''" in m for m in said)  # one line
    assert not any("eval_batches" in m for m in said)  # a moved key is not missing
    assert run.config.task.sample_prime == "" and run.config.task.eval_batches == 3
    assert "eval_batches" not in run.config.data
    assert run.vocab is not None and run.model().vocab_size == run.vocab.size


def test_no_checkpoint_is_one_clear_error(tmp_path):
    with pytest.raises(RunError, match="no checkpoints in .*train first"):
        load_run(str(tmp_path))
