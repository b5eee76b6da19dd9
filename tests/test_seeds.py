"""num_seeds = K: K replicas in one vmapped program, each identical to its own seed's run."""

from __future__ import annotations

import numpy as np
import pytest

from seqlab.config import base_config
from seqlab.run.loop import train_and_evaluate
from seqlab.run.writers import read_metrics
from seqlab.tools.cli import main


def config(**kw):
    c = base_config()
    c.task.name = "adding"
    c.model.hidden_size = 8
    c.model.num_layers = 2  # dropout runs between the layers (a 1-layer model has none) ...
    c.model.dropout = 0.3  # ... so each replica's own dropout keys matter
    c.data.seq_len = 6
    c.data.batch_size = 4
    c.task.eval_batches = 1
    c.train.num_steps = 6
    c.train.log_every = 2
    c.train.eval_every = 6
    c.train.checkpoint_every = 6
    c.train.progress = False
    c.wandb.mode = "disabled"
    for k, v in kw.items():
        c[k] = v
    return c


def losses(workdir, key):
    return [r[key] for r in read_metrics(f"{workdir}/metrics.jsonl") if key in r]


@pytest.mark.slow
def test_replicas_match_separate_runs(tmp_path, capsys):
    train_and_evaluate(config(num_seeds=3, seed=5), str(tmp_path / "k3"))
    rows = losses(tmp_path / "k3", "train/loss/seed_2")
    train_and_evaluate(config(seed=7), str(tmp_path / "seed7"))
    np.testing.assert_allclose(rows, losses(tmp_path / "seed7", "train/loss"), rtol=1e-5)
    per_seed = np.array([losses(tmp_path / "k3", f"train/loss/seed_{i}") for i in range(3)])
    np.testing.assert_allclose(losses(tmp_path / "k3", "train/loss"), per_seed.mean(0), rtol=1e-6)
    np.testing.assert_allclose(
        losses(tmp_path / "k3", "train/loss/std"), per_seed.std(0), rtol=1e-5, atol=1e-9
    )
    assert main(["eval", "--workdir", str(tmp_path / "k3")]) == 0
    assert '"eval/mse/seed_2"' in capsys.readouterr().out


@pytest.mark.slow
def test_each_replica_drops_out_with_its_own_seeds_keys():
    """Replica i's dropout key is key(seed + i): the keys, and the loss each one gives a
    model where dropout runs (another key, another loss)."""
    import jax
    import jax.numpy as jnp

    from seqlab.run.replicas import Replicas
    from seqlab.run.state import init_train_state

    c = config(num_seeds=3, seed=5)
    replicas = Replicas(c)
    keys = replicas.key(c.seed)
    for i in range(3):
        np.testing.assert_array_equal(
            jax.random.key_data(keys[i]), jax.random.key_data(jax.random.key(5 + i))
        )
    task = replicas.task
    mdef, state, _ = init_train_state(config(seed=5), task)
    batch = {k: jnp.asarray(v) for k, v in task.train_batch(0).items()}
    loss = lambda key: float(task.loss(mdef.merge(state["params"]), batch, rng=key)[0])
    assert len({loss(keys[0]), loss(keys[1]), loss(keys[2])}) == 3
