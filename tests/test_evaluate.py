"""``seqlab.run.evaluate.Evaluator`` against references computed here in NumPy (float64), not
with seqlab's own reduction: the mean over *every* eval batch, per-seed means and their std,
and a stateful char LM's carry threaded through the val streams."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.models.build import build_model
from seqlab.run.evaluate import Evaluator
from seqlab.run.replicas import Replicas
from seqlab.run.state import init_train_state, split_model
from seqlab.tasks import make_task, task_config


def adding(**kw):
    c = task_config("adding")
    c.model.hidden_size, c.data.seq_len, c.data.batch_size = 8, 10, 4
    c.task.eval_batches = 4
    for k, v in kw.items():
        c[k] = v
    return c


def squared_errors(model, batches) -> list[np.ndarray]:
    """Per batch, (prediction - target)^2 in float64; the model's forward is the only seqlab
    code used."""
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda x: nnx.merge(graphdef, state)(x)[0])
    out = []
    for b in batches:
        pred = forward(jnp.asarray(b["inputs"]))
        out.append((np.asarray(pred, np.float64)[:, 0] - np.asarray(b["targets"], np.float64)) ** 2)
    return out


def test_the_mean_is_over_every_eval_batch():
    config = adding()
    task = make_task(config)
    model = build_model(config.model, task.spec, nnx.Rngs(params=0))
    mdef, params = split_model(model)
    batches = task.eval_batches()
    sq = squared_errors(model, batches)
    per_batch = [float(s.mean()) for s in sq]
    assert len(batches) == 4 and np.ptp(per_batch) > 1e-3  # batches that disagree
    expected = float(np.concatenate(sq).mean())
    out = Evaluator(mdef, task)(params)
    assert out["eval/mse"] == pytest.approx(expected, rel=1e-5)
    assert out["eval/loss"] == pytest.approx(expected, rel=1e-5)
    for partial in (per_batch[-1], per_batch[0], float(np.concatenate(sq[:-1]).mean())):
        assert out["eval/mse"] != pytest.approx(partial, rel=1e-4)
    targets = np.concatenate([np.asarray(b["targets"], np.float64) for b in batches])
    assert out["eval/baseline_mse"] == pytest.approx(np.mean((targets - 1.0) ** 2), rel=1e-5)
    assert out["baseline/mse"] == pytest.approx(1 / 6)


@pytest.mark.slow
def test_seeds_are_scored_each_on_the_same_batches_with_mean_and_std():
    config = adding(num_seeds=3, seed=4)
    replicas = Replicas(config)
    mdef, state, _ = replicas.init(init_train_state)
    out = Evaluator(mdef, replicas.task, replicas=replicas)(state["params"])
    batches = replicas.task.eval_batches()  # replica 0's, for every replica
    mses = []
    for i in range(3):
        model = mdef.merge(jax.tree.map(lambda x, i=i: x[i], state["params"]))
        mses.append(float(np.concatenate(squared_errors(model, batches)).mean()))
    assert len(set(mses)) == 3  # three initializations
    for i, m in enumerate(mses):
        assert out[f"eval/mse/seed_{i}"] == pytest.approx(m, rel=1e-5)
    assert out["eval/mse"] == pytest.approx(np.mean(mses), rel=1e-5)
    assert out["eval/mse/std"] == pytest.approx(np.std(mses), rel=1e-4)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


@pytest.mark.slow
def test_stateful_eval_equals_each_val_stream_read_whole(tmp_path):
    """tbptt eval carries the state from chunk to chunk: its loss is the cross-entropy of
    each val stream's first chunks read in one pass from the initial state, stream r being
    the val split's r-th contiguous slice (cut here by hand)."""
    path = tmp_path / "corpus.txt"
    path.write_text("".join(f"{i * 7919 % 1000:03d} the lazy dog; " for i in range(150)))
    B, T, K = 3, 8, 4  # K eval chunks per stream
    c = task_config("charlm")
    c.data.corpus, c.data.batching = f"file:{path}", "tbptt"
    c.data.batch_size, c.data.seq_len, c.data.val_fraction = B, T, 0.2
    c.model.hidden_size, c.task.eval_batches = 16, K
    task = make_task(c)
    model = build_model(c.model, task.spec, nnx.Rngs(params=1))
    mdef, params = split_model(model)
    out = Evaluator(mdef, task)(params)

    ids = task.vocab.encode(path.read_text())
    n = len(ids)
    n_val = int(n * 0.2)
    n_train = n - n_val - int(n * c.data.test_fraction)
    val = ids[n_train : n_train + n_val]
    stride = (len(val) - 1) // B
    assert stride >= K * T + 1
    rows = np.stack([val[r * stride : r * stride + K * T + 1] for r in range(B)])
    graphdef, state = nnx.split(model)
    forward = jax.jit(lambda x: nnx.merge(graphdef, state)(x)[0])

    def nll(part: np.ndarray) -> np.ndarray:
        logp = log_softmax(np.asarray(forward(jnp.asarray(part[:, :-1])), np.float64))
        return -np.take_along_axis(logp, part[:, 1:, None], axis=-1)[..., 0]

    whole = float(nll(rows).mean())
    assert out["eval/loss"] == pytest.approx(whole, rel=1e-5)
    # without the carry (each chunk from the initial state) the loss is another number
    fresh = np.concatenate([nll(rows[:, k * T : (k + 1) * T + 1]) for k in range(K)], 1)
    assert float(fresh.mean()) != pytest.approx(whole, rel=1e-4)
