"""The copy-memory task: pure data, the T + 20 layout, jitted metrics, the no-memory baseline."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqlab.config import base_config
from seqlab.models.build import build_model
from seqlab.run.validate import validate
from seqlab.tasks import make_task

try:
    from tests.task_util import evaluate, jnp_batch, load_config_module
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from task_util import evaluate, jnp_batch, load_config_module


def make_config(T: int = 15, batch: int = 16, **task_opts):
    c = base_config()
    c.task.name = "copy_memory"
    c.task.eval_batches = 2
    for k, v in task_opts.items():
        c.task[k] = v
    c.data.seq_len = T
    c.data.batch_size = batch
    c.model.hidden_size = 16
    return c


class NoMemory:
    """Blank with certainty before the copy steps, uniform over the symbols on them."""

    def __init__(self, task):
        v, n = task.spec.vocab_size, task.copy_len
        blank = np.full(v, -1e9, np.float32)
        blank[task.blank_id] = 0.0
        guess = np.full(v, -1e9, np.float32)
        guess[1 : task.num_symbols + 1] = 0.0
        self.logits = jnp.asarray(np.stack([blank] * (task.length - n) + [guess] * n))

    def __call__(self, x, **kw):
        return jnp.broadcast_to(self.logits, (x.shape[0], *self.logits.shape)), {}


def test_batches_are_pure_and_split_by_process():
    c = make_config()
    task = make_task(c)
    a = task.train_batch(7)
    for k, v in make_task(c).train_batch(7).items():
        np.testing.assert_array_equal(v, a[k])
    assert not np.array_equal(task.train_batch(8)["inputs"], a["inputs"])
    halves = [make_task(c, process_index=p, process_count=2).train_batch(7) for p in (0, 1)]
    assert not np.array_equal(halves[0]["inputs"], halves[1]["inputs"])
    for k in a:
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), a[k])
    assert task.eval_batches() is task.eval_batches()
    assert not np.array_equal(task.eval_batches()[0]["inputs"], task.train_batch(0)["inputs"])


def test_layout():
    T = 15
    task = make_task(make_config(T=T, batch=32))
    b = task.train_batch(0)
    x, y = b["inputs"], b["targets"]
    assert x.shape == y.shape == (32, T + 20) and task.spec.vocab_size == 10
    assert task.spec.family == "lm" and task.tokens_per_batch() == 32 * (T + 20)
    symbols = x[:, :10]
    assert symbols.min() >= 1 and symbols.max() <= 8
    assert (x[:, 10 : 10 + T - 1] == 0).all() and (x[:, 10 + T - 1] == 9).all()
    assert (x[:, 10 + T :] == 0).all()
    assert (y[:, : T + 10] == 0).all()
    np.testing.assert_array_equal(y[:, T + 10 :], symbols)


def test_metrics_under_jit():
    c = make_config(batch=4)
    task = make_task(c)
    model = build_model(c.model, task.spec, nnx.Rngs(0))
    loss, (m, carry) = nnx.jit(lambda mdl, b: task.loss(mdl, b))(
        model, jnp_batch(task.train_batch(0))
    )
    assert carry is None and np.isfinite(loss)
    assert float(m["loss"][1]) == 4 * 35 and float(m["accuracy"][1]) == 4 * 10
    assert float(m["loss"][0]) / (4 * 35) == pytest.approx(float(loss), rel=1e-5)
    assert 0 <= float(m["accuracy"][0]) <= 40


@pytest.mark.parametrize("T", [15, 100])
def test_no_memory_model_hits_baseline(T):
    task = make_task(make_config(T=T, batch=64))
    assert task.baselines() == {
        "loss": pytest.approx(10 * math.log(8) / (T + 20)),
        "accuracy": 0.125,
    }
    means = evaluate(task, NoMemory(task))
    assert means["loss"] == pytest.approx(task.baselines()["loss"], rel=1e-5)
    assert task.summarize({"eval/loss": means["loss"]}, "eval/")["eval/loss_ratio"] == (
        pytest.approx(1.0, rel=1e-5)
    )


@pytest.mark.slow
def test_lstm_learns_to_copy_beyond_no_memory():
    c = make_config(T=5, batch=64, copy_len=3, num_symbols=4)
    c.model.hidden_size = 32
    task = make_task(c)
    model = build_model(c.model, task.spec, nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch):
        opt.update(model, nnx.grad(lambda m: task.loss(m, batch)[0])(model))

    for i in range(200):
        step(model, opt, jnp_batch(task.train_batch(i)))
    means = evaluate(task, model)
    assert means["accuracy"] > 0.8  # chance 0.25
    assert means["loss"] < 0.3 * task.baselines()["loss"]


def test_config_variants_and_sweep():
    module = load_config_module("copy_memory")
    for arg, cell, T in [("", "lstm", 100), ("gru,T=200", "gru", 200), ("runlocal", "lstm", 10)]:
        c = module.get_config(arg)
        validate(c)
        assert (c.task.name, c.model.cell, c.data.seq_len) == ("copy_memory", cell, T)
        assert make_task(c).spec.family == "lm"
    c = module.get_config()
    base = base_config()
    for section in ("task", "model", "data", "train"):
        assert set(base[section].keys()) <= set(c[section].keys())
    sweep = list(module.get_sweep())
    assert len(sweep) == len(module.CELLS) * len(module.LENGTHS)
    for overrides in sweep:
        for key in overrides:
            section, leaf = key.split(".")
            assert leaf in c[section]
    assert list(module.get_sweep("cells=irnn,lengths=50")) == [
        {"model.cell": "irnn", "data.seq_len": 50}
    ]


@pytest.mark.slow
def test_runlocal_trains_end_to_end(tmp_path):
    from seqlab.run.loop import train_and_evaluate

    c = load_config_module("copy_memory").get_config("runlocal")
    out = train_and_evaluate(c, str(tmp_path))
    assert np.isfinite(out["eval/loss"]) and 0 <= out["eval/accuracy"] <= 1
    assert out["baseline/loss"] == pytest.approx(10 * math.log(8) / (c.data.seq_len + 20))
    assert out["eval/loss_ratio"] == pytest.approx(out["eval/loss"] / out["baseline/loss"])
