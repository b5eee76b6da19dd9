"""The training loop: exact resume, determinism, non-finite and exploding losses."""

from __future__ import annotations

import os
import shutil

import jax
import numpy as np
import pytest

from seqlab.config import base_config
from seqlab.errors import TrainingError
from seqlab.run.checkpoint import Checkpointer
from seqlab.run.loop import train_and_evaluate
from seqlab.run.state import init_train_state
from seqlab.run.writers import read_metrics
from seqlab.tasks import make_task


def small_config(**overrides):
    c = base_config()
    c.task.name = "adding"
    c.model.hidden_size = 16
    c.data.seq_len = 12
    c.data.batch_size = 8
    c.train.num_steps = 20
    c.train.log_every = 5
    c.train.eval_every = 10
    c.train.checkpoint_every = 10
    c.train.progress = False
    c.model.num_layers = 2  # dropout runs between layers (a 1-layer many-to-one has none),
    c.model.dropout = 0.1  # so the exact-resume test covers the per-step dropout key too
    c.wandb.mode = "disabled"
    c.task.eval_batches = 2
    for k, v in overrides.items():
        section, key = k.split(".")
        c[section][key] = v
    return c


def final_params(config, workdir):
    task = make_task(config)
    _, state, _ = init_train_state(config, task)
    ck = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    state = ck.restore(ck.latest_step(), state)
    ck.close()
    return jax.device_get(state)


def assert_trees_equal(a, b):
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert len(la) == len(lb)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_resume_is_exact(tmp_path):
    """20 straight steps == 10 steps, a restart from the step-10 checkpoint, 10 more."""
    config = small_config()
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    train_and_evaluate(config, a)
    shutil.copytree(a, b)
    ck = Checkpointer(os.path.join(b, "checkpoints"), async_save=False)
    assert ck.all_steps() == [10, 20]
    ck.manager.delete(20)  # as if the run had died right after saving step 10
    ck.close()
    train_and_evaluate(config, b)
    assert_trees_equal(final_params(config, a), final_params(config, b))
    rows_a, rows_b = read_metrics(f"{a}/metrics.jsonl"), read_metrics(f"{b}/metrics.jsonl")
    strip = lambda rows: [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in rows]
    assert strip(rows_a) == strip(rows_b)
    steps = [r["step"] for r in rows_b if "train/loss" in r]
    assert steps == [5, 10, 15, 20]  # no duplicated or missing rows


@pytest.mark.slow
def test_same_config_same_curve(tmp_path):
    config = small_config(**{"train.num_steps": 10})
    train_and_evaluate(config, str(tmp_path / "a"))
    train_and_evaluate(config, str(tmp_path / "b"))
    loss = lambda d: [
        r["train/loss"] for r in read_metrics(f"{d}/metrics.jsonl") if "train/loss" in r
    ]
    assert loss(tmp_path / "a") == loss(tmp_path / "b")
    config.seed = 1
    train_and_evaluate(config, str(tmp_path / "c"))
    assert loss(tmp_path / "a") != loss(tmp_path / "c")


@pytest.fixture
def poisoned(monkeypatch):
    """Makes the batch of step 7 contain a NaN, so its loss and gradients are NaN."""
    from seqlab.tasks.long_range import AddingTask

    original = AddingTask.train_batch

    def train_batch(self, step):
        batch = original(self, step)
        if step == 7:
            batch = {**batch, "inputs": batch["inputs"].copy()}
            batch["inputs"][0, 0, 0] = np.nan
        return batch

    monkeypatch.setattr(AddingTask, "train_batch", train_batch)


@pytest.mark.slow
def test_nonfinite_stop_names_step_and_checkpoint(tmp_path, poisoned):
    config = small_config(**{"train.checkpoint_every": 5})
    with pytest.raises(TrainingError, match=r"step 7 .*last good checkpoint: step 5"):
        train_and_evaluate(config, str(tmp_path))
    state = final_params(config, str(tmp_path))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))


@pytest.mark.slow
def test_nonfinite_skip_counts_and_continues(tmp_path, poisoned):
    config = small_config(**{"train.on_nonfinite": "skip"})
    metrics = train_and_evaluate(config, str(tmp_path))
    assert np.isfinite(metrics["eval/loss"])
    rows = [r for r in read_metrics(f"{tmp_path}/metrics.jsonl") if "train/loss" in r]
    assert [r["train/skipped_steps"] for r in rows] == [0, 1, 1, 1]
    state = final_params(config, str(tmp_path))
    assert all(np.isfinite(x).all() for x in jax.tree.leaves(state["params"]))


def test_explosion_is_detected(tmp_path):
    config = small_config(
        **{
            "optim.name": "sgd",
            "optim.learning_rate": 50.0,
            "optim.clip": "none",
            "optim.momentum": 0.0,
        }
    )
    with pytest.raises(TrainingError, match="loss exploded|non-finite"):
        train_and_evaluate(config, str(tmp_path))


@pytest.mark.slow
def test_dropout_key_is_the_seed_folded_with_the_step():
    """The step's loss is the task's loss under ``fold_in(key(seed), step)``: a new mask every
    step, the same one for the same step (what exact resume relies on)."""
    import jax.numpy as jnp

    from seqlab.run.state import make_train_step

    config = small_config(**{"model.dropout": 0.5})
    task = make_task(config)
    mdef, state, tx = init_train_state(config, task)
    batch = {k: jnp.asarray(v) for k, v in task.train_batch(0).items()}
    key = jax.random.key(config.seed)

    @jax.jit
    def loss_under(rng):
        return task.loss(mdef.merge(state["params"]), batch, carry=state["carry"], rng=rng)[0]

    # dropout really runs in this model: another key, another loss
    assert float(loss_under(jax.random.key(1))) != float(loss_under(jax.random.key(2)))
    step_fn = jax.jit(make_train_step(mdef, task, tx))
    losses = []
    for step in (0, 1, 7):
        _, metrics = step_fn({**state, "step": jnp.asarray(step, jnp.int32)}, batch, key)
        loss = float(metrics["loss"][0] / metrics["loss"][1])
        assert loss == pytest.approx(float(loss_under(jax.random.fold_in(key, step))), rel=1e-6)
        losses.append(loss)
    assert len(set(losses)) == 3  # the same batch and params: only the dropout key differs
