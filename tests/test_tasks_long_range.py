"""The adding and recall tasks: pure data, stated structure, jitted metrics, baselines, learning."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqlab.cells import make_cell
from seqlab.config import base_config
from seqlab.models.build import build_model
from seqlab.run.validate import validate
from seqlab.tasks import make_task

try:
    from tests.task_util import evaluate, jnp_batch, load_config_module
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from task_util import evaluate, jnp_batch, load_config_module


def make_config(name: str, seq_len: int = 20, batch: int = 16, **task_opts):
    c = base_config()
    c.task.name = name
    c.task.eval_batches = 2
    for k, v in task_opts.items():
        c.task[k] = v
    c.data.seq_len = seq_len
    c.data.batch_size = batch
    c.model.hidden_size = 16
    return c


def train(task, config, steps: int, lr: float) -> nnx.Module:
    model = build_model(config.model, task.spec, nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch):
        grads = nnx.grad(lambda m: task.loss(m, batch)[0])(model)
        opt.update(model, grads)

    for i in range(steps):
        step(model, opt, jnp_batch(task.train_batch(i)))
    return model


class Constant:
    """A stand-in model that outputs the same vector for every example."""

    def __init__(self, value):
        self.value = jnp.asarray(value, jnp.float32)

    def __call__(self, x, **kw):
        return jnp.broadcast_to(self.value, (x.shape[0], *self.value.shape)), {}


@pytest.mark.parametrize("name", ["adding", "recall"])
def test_batches_are_pure_and_split_by_process(name):
    c = make_config(name)
    task = make_task(c)
    a, b = task.train_batch(3), make_task(c).train_batch(3)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert not np.array_equal(task.train_batch(4)["inputs"], a["inputs"])
    halves = [make_task(c, process_index=p, process_count=2).train_batch(3) for p in (0, 1)]
    assert halves[0]["inputs"].shape[0] == c.data.batch_size // 2
    assert not np.array_equal(halves[0]["inputs"], halves[1]["inputs"])
    for k in a:  # the two halves are exactly the single-process global batch
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), a[k])
    ev = task.eval_batches()
    assert len(ev) == 2 and ev is task.eval_batches()
    np.testing.assert_array_equal(ev[0]["inputs"], make_task(c).eval_batches()[0]["inputs"])
    assert not np.array_equal(ev[0]["inputs"], task.train_batch(0)["inputs"])
    c.seed = 1  # another training seed: new training data, the same eval set
    other = make_task(c)
    assert not np.array_equal(other.train_batch(3)["inputs"], a["inputs"])
    np.testing.assert_array_equal(other.eval_batches()[0]["inputs"], ev[0]["inputs"])


def test_adding_structure():
    T = 30
    b = make_task(make_config("adding", seq_len=T, batch=64)).train_batch(0)
    x, y = b["inputs"], b["targets"]
    assert x.shape == (64, T, 2) and x.dtype == np.float32 and y.shape == (64,)
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() < 1
    assert set(np.unique(markers)) == {0.0, 1.0}
    np.testing.assert_array_equal(markers[:, : T // 2].sum(1), 1)
    np.testing.assert_array_equal(markers[:, T // 2 :].sum(1), 1)
    np.testing.assert_allclose(y, (values * markers).sum(1), rtol=1e-6)


def test_adding_metrics_under_jit_and_baseline():
    c = make_config("adding", batch=8, eval_batch_size=512, eval_batches=4)
    task = make_task(c)
    model = build_model(c.model, task.spec, nnx.Rngs(0))
    batch = jnp_batch(task.train_batch(0))
    loss, (metrics, carry) = nnx.jit(lambda m, b: task.loss(m, b))(model, batch)
    assert carry is None and np.isfinite(loss)
    for s, n in metrics.values():
        assert s.shape == () and float(n) == 8
    assert float(metrics["mse"][0]) / 8 == pytest.approx(float(loss), rel=1e-5)

    assert task.baselines() == {"mse": pytest.approx(1 / 6)}
    means = {f"eval/{k}": v for k, v in evaluate(task, Constant([1.0])).items()}
    assert means["eval/mse"] == pytest.approx(1 / 6, abs=0.01)  # 2048 examples
    extra = task.summarize(means, "eval/")
    assert extra["eval/baseline_mse"] == pytest.approx(means["eval/mse"], rel=1e-4)
    assert extra["eval/mse_ratio"] == pytest.approx(1.0, rel=1e-4)


def test_recall_structure_metrics_and_baselines():
    c = make_config("recall", seq_len=12, batch=32, num_classes=5, num_distractors=3)
    task = make_task(c)
    b = task.train_batch(0)
    x, y = b["inputs"], b["labels"]
    assert x.shape == (32, 13) and task.spec.vocab_size == 9 and task.spec.num_outputs == 5
    np.testing.assert_array_equal(x[:, 0], y)
    assert ((x[:, 1:12] >= 5) & (x[:, 1:12] < 8)).all() and (x[:, 12] == 8).all()
    assert task.baselines() == {"accuracy": 0.2, "loss": pytest.approx(math.log(5))}

    model = build_model(c.model, task.spec, nnx.Rngs(0))
    loss, (metrics, _) = nnx.jit(lambda m, b: task.loss(m, b))(model, jnp_batch(b))
    assert np.isfinite(loss) and float(metrics["accuracy"][1]) == 32
    assert 0 <= float(metrics["accuracy"][0]) <= 32
    # Uniform logits score exactly the chance loss; always guessing class 0 is right on 1/K.
    means = evaluate(task, Constant(np.zeros(5)))
    assert means["loss"] == pytest.approx(math.log(5), rel=1e-5)
    labels = np.concatenate([e["labels"] for e in task.eval_batches()])
    assert means["accuracy"] == pytest.approx(np.mean(labels == 0))


@pytest.mark.slow
def test_adding_lstm_learns_beyond_no_memory_baseline():
    c = make_config("adding", seq_len=10, batch=64, eval_batch_size=256)
    c.model.hidden_size = 32
    task = make_task(c)
    mse = evaluate(task, train(task, c, steps=200, lr=1e-2))["mse"]
    assert mse < 0.3 * task.baselines()["mse"]


def test_recall_lstm_learns_above_chance():
    c = make_config("recall", seq_len=8, batch=32, num_classes=4, num_distractors=4)
    task = make_task(c)
    acc = evaluate(task, train(task, c, steps=150, lr=1e-2))["accuracy"]
    assert acc > 0.9  # chance is 0.25


def flat_keys(c) -> set[str]:
    return {
        f"{k}.{sub}" if hasattr(v, "items") else k
        for k, v in c.items()
        for sub in (v.keys() if hasattr(v, "items") else [None])
    }


@pytest.mark.parametrize(
    "arg, name, cell, T",
    [
        ("", "adding", "lstm", 100),
        ("task=recall,gru,T=50", "recall", "gru", 50),
        ("cell=irnn,T=200", "adding", "irnn", 200),
        ("task=recall", "recall", "lstm", 60),
        ("runlocal", "adding", "lstm", 20),
    ],
)
def test_config_variants(arg, name, cell, T):
    c = load_config_module("long_range").get_config(arg)
    validate(c)
    assert flat_keys(base_config()) <= flat_keys(c)
    assert (c.task.name, c.model.cell, c.data.seq_len) == (name, cell, T)
    assert c.model.init == "default"  # each cell's own default: the IRNN's is identity
    cell_init = make_cell(cell, 2, 3, rngs=nnx.Rngs(0), init=c.model.init).init
    assert cell_init == ("irnn" if cell == "irnn" else "default")
    assert make_task(c).spec.family == "classifier"
    with pytest.raises(ValueError, match="unknown long_range task"):
        load_config_module("long_range").get_config("task=copy")


def test_sweep_overrides_existing_keys():
    module = load_config_module("long_range")
    c = module.get_config()
    sweep = list(module.get_sweep())
    assert len(sweep) == len(module.CELLS) * len(module.LENGTHS)
    assert len({tuple(sorted(s.items())) for s in sweep}) == len(sweep)
    for overrides in sweep:
        for key in overrides:
            section, leaf = key.split(".")
            assert leaf in c[section]
    assert list(module.get_sweep("cells=gru,lengths=30")) == [
        {"model.cell": "gru", "data.seq_len": 30}
    ]


def test_runlocal_trains_end_to_end(tmp_path):
    from seqlab.run.loop import train_and_evaluate

    c = load_config_module("long_range").get_config("runlocal")
    out = train_and_evaluate(c, str(tmp_path))
    assert np.isfinite(out["eval/loss"])
    assert set(make_task(c).baselines()) <= {
        k.split("/", 1)[1] for k in out if k.startswith("baseline/")
    }
