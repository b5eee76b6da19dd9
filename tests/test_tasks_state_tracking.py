"""Parity and S3: labels against brute force, pure batches, jitted metrics, baselines, errors,
the config's variants and sweep, and the real config end to end."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqlab.config import base_config
from seqlab.errors import DataError
from seqlab.models.build import build_model
from seqlab.run.validate import validate
from seqlab.tasks import make_task
from seqlab.tasks.state_tracking import PERMUTATIONS, THEN

try:
    from tests.task_util import evaluate, jnp_batch, load_config_module
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from task_util import evaluate, jnp_batch, load_config_module

CASES = [("parity", False), ("parity", True), ("s3", False), ("s3", True)]


def make_config(name: str, seq_len: int = 12, batch: int = 16, per_step: bool = False, **opts):
    c = base_config()
    c.task.name = name
    c.task.per_step = per_step
    c.task.eval_batches = 2
    for k, v in opts.items():
        c.task[k] = v
    c.data.seq_len = seq_len
    c.data.batch_size = batch
    c.model.hidden_size = 16
    return c


def brute_s3(tokens) -> int:
    """The product of a token sequence, composed by hand: g_1 first, then g_2, ..."""
    perms = list(itertools.permutations(range(3)))
    state = (0, 1, 2)
    for g in (perms[t] for t in tokens):
        state = tuple(g[state[j]] for j in range(3))  # j -> g(state(j))
    return perms.index(state)


def brute(name: str, tokens) -> int:
    return int(sum(tokens) % 2) if name == "parity" else brute_s3(tokens)


def test_s3_enumeration_and_order():
    assert tuple(itertools.permutations(range(3))) == PERMUTATIONS  # lexicographic
    assert PERMUTATIONS[0] == (0, 1, 2)  # the identity
    # (0,2,1) then (1,2,0) is (1,0,2); the other order is (2,1,0): S3 is not abelian
    assert THEN[1, 3] == 2 and THEN[3, 1] == 5
    assert brute_s3([1, 3]) == 2 and brute_s3([3, 1]) == 5
    for a, b in itertools.product(range(6), repeat=2):
        assert THEN[a, b] == brute_s3([a, b])


@pytest.mark.parametrize("name, per_step", CASES)
def test_labels_match_brute_force(name, per_step):
    C = {"parity": 2, "s3": 6}[name]
    task = make_task(make_config(name, seq_len=9, batch=64, per_step=per_step))
    b = task.train_batch(0)
    x, y = b["inputs"], b["labels"]
    assert x.shape == (64, 9) and x.dtype == np.int32 and y.dtype == np.int32
    assert x.min() >= 0 and x.max() < C and len(np.unique(x)) == C
    assert y.shape == ((64, 9) if per_step else (64,))
    for row in range(64):
        tokens = x[row].tolist()
        if per_step:
            assert y[row].tolist() == [brute(name, tokens[: t + 1]) for t in range(9)]
        else:
            assert y[row] == brute(name, tokens)
    spec = task.spec
    assert (spec.family, spec.vocab_size) == ("lm" if per_step else "classifier", C)
    assert per_step or spec.num_outputs == C
    # the same data either way: per-step labels end with the many-to-one label
    other = make_task(make_config(name, seq_len=9, batch=64, per_step=not per_step))
    ob = other.train_batch(0)
    np.testing.assert_array_equal(ob["inputs"], x)
    last = y[:, -1] if per_step else y
    np.testing.assert_array_equal(ob["labels"] if per_step else ob["labels"][:, -1], last)


def test_s3_labels_depend_on_order():
    b = make_task(make_config("s3", seq_len=6, batch=64)).train_batch(0)
    reversed_labels = [brute_s3(row[::-1].tolist()) for row in b["inputs"]]
    assert np.mean(np.array(reversed_labels) != b["labels"]) > 0.3


@pytest.mark.parametrize("name, per_step", CASES[:3])
def test_batches_are_pure_and_the_eval_set_fixed(name, per_step):
    c = make_config(name, per_step=per_step)
    task = make_task(c)
    a = task.train_batch(3)
    for k, v in make_task(c).train_batch(3).items():
        np.testing.assert_array_equal(v, a[k])
    assert not np.array_equal(task.train_batch(4)["inputs"], a["inputs"])
    halves = [make_task(c, process_index=p, process_count=2).train_batch(3) for p in (0, 1)]
    for k in a:
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), a[k])
    ev = task.eval_batches()
    assert len(ev) == 2 and ev is task.eval_batches()
    c.seed = 1  # another training seed: new training data, the same eval set
    other = make_task(c)
    assert not np.array_equal(other.train_batch(3)["inputs"], a["inputs"])
    for e, o in zip(ev, other.eval_batches(), strict=True):
        np.testing.assert_array_equal(o["inputs"], e["inputs"])
        np.testing.assert_array_equal(o["labels"], e["labels"])


class Constant:
    """A stand-in model: the same logits for every example (and every step when per-step)."""

    def __init__(self, value, per_step: bool):
        self.value, self.per_step = jnp.asarray(value, jnp.float32), per_step

    def __call__(self, x, **kw):
        shape = x.shape if self.per_step else x.shape[:1]
        return jnp.broadcast_to(self.value, (*shape, *self.value.shape)), {}


def test_many_to_one_metrics_under_jit():
    """Counts per example; the per-step counts are checked on a real model below."""
    task = make_task(make_config("s3", seq_len=7, batch=8))
    logits = np.random.default_rng(0).normal(size=6)
    loss, (metrics, carry) = jax.jit(lambda b: task.loss(Constant(logits, False), b))(
        jnp_batch(task.train_batch(0))
    )
    assert carry is None and np.isfinite(loss) and "final_accuracy" not in metrics
    assert float(metrics["accuracy"][1]) == float(metrics["loss"][1]) == 8
    labels = task.train_batch(0)["labels"]
    assert float(metrics["accuracy"][0]) == np.sum(labels == np.argmax(logits))
    assert float(metrics["loss"][0]) / 8 == pytest.approx(float(loss), rel=1e-5)


@pytest.mark.parametrize("name, per_step", CASES)
def test_baselines_are_what_chance_scores(name, per_step):
    C = {"parity": 2, "s3": 6}[name]
    task = make_task(make_config(name, seq_len=7, per_step=per_step, eval_batch_size=256))
    want = {"accuracy": pytest.approx(1 / C), "loss": pytest.approx(math.log(C))}
    if per_step:
        want["final_accuracy"] = pytest.approx(1 / C)
    assert task.baselines() == want
    # uniform logits score exactly the chance loss; always guessing 0 is right on ~1/C
    means = evaluate(task, Constant(np.zeros(C), per_step))
    assert means["loss"] == pytest.approx(math.log(C), rel=1e-5)
    labels = np.concatenate([e["labels"] for e in task.eval_batches()])
    assert means["accuracy"] == pytest.approx(np.mean(labels == 0))
    assert means["accuracy"] == pytest.approx(1 / C, abs=0.05)


@pytest.mark.parametrize("name", ["parity", "s3"])
@pytest.mark.parametrize("seq_len", [0, -3])
def test_bad_length_is_one_clear_error(name, seq_len):
    with pytest.raises(DataError) as e:
        make_task(make_config(name, seq_len=seq_len))
    msg = str(e.value)
    assert f"{name} needs data.seq_len >= 1" in msg and f"got {seq_len}" in msg
    assert "\n" not in msg


@pytest.mark.slow
def test_gru_learns_per_step_parity_with_per_step_metrics():
    T, B = 8, 32
    c = make_config("parity", seq_len=T, batch=B, per_step=True, eval_batch_size=128)
    task = make_task(c)
    model = build_model(c.model, task.spec, nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch):
        loss_fn = lambda m: task.loss(m, batch)  # noqa: E731
        (loss, (metrics, _)), grads = nnx.value_and_grad(loss_fn, has_aux=True)(model)
        opt.update(model, grads)
        return loss, metrics

    for i in range(100):
        loss, metrics = step(model, opt, jnp_batch(task.train_batch(i)))
    assert float(metrics["accuracy"][1]) == float(metrics["loss"][1]) == B * T
    assert float(metrics["final_accuracy"][1]) == B
    assert float(metrics["loss"][0]) / (B * T) == pytest.approx(float(loss), rel=1e-5)
    means = evaluate(task, model)
    assert means["final_accuracy"] > 0.9 and means["accuracy"] > 0.9  # chance 0.5


@pytest.mark.parametrize(
    "arg, name, cell, T, per_step",
    [
        (None, "parity", "gru", 16, False),
        ("s3", "s3", "gru", 16, False),
        ("task=s3,lstm,T=32", "s3", "lstm", 32, False),
        ("parity,cell=mingru,per_step", "parity", "mingru", 16, True),
        ("s3,per_step,runlocal", "s3", "gru", 8, True),
        ("runlocal", "parity", "gru", 8, False),
    ],
)
def test_config_variants(arg, name, cell, T, per_step):
    c = load_config_module("state_tracking").get_config(arg)
    validate(c)
    assert (c.task.name, c.model.cell, c.data.seq_len, c.task.per_step) == (
        name,
        cell,
        T,
        per_step,
    )
    assert make_task(c).spec.family == ("lm" if per_step else "classifier")


def test_config_rejects_unknown_task_and_sweep_covers_cells_by_lengths():
    module = load_config_module("state_tracking")
    with pytest.raises(ValueError, match="unknown state_tracking task"):
        module.get_config("task=s5")
    sweep = list(module.get_sweep())
    assert len(sweep) == len(module.CELLS) * len(module.LENGTHS) == 52
    assert {"gru", "mingru", "lru", "mamba", "slstm", "mlstm", "deltanet", "attention"} <= {
        p["model.cell"] for p in sweep
    }
    c = module.get_config("s3")
    for point in sweep:
        for key in point:
            section, leaf = key.split(".")
            assert leaf in c[section]


@pytest.mark.slow
def test_runlocal_trains_end_to_end(tmp_path):
    """One run, to stay cheap: s3 (the many-to-one classifier path is long_range's), per
    step, with a linear recurrence (residual blocks, parallel scan)."""
    from seqlab.run.loop import train_and_evaluate

    c = load_config_module("state_tracking").get_config("s3,mingru,per_step,runlocal")
    out = train_and_evaluate(c, str(tmp_path))
    assert np.isfinite(out["eval/loss"]) and 0 <= out["eval/accuracy"] <= 1
    baselines = {k.split("/", 1)[1]: v for k, v in out.items() if k.startswith("baseline/")}
    assert baselines == pytest.approx(make_task(c).baselines())
    assert 0 <= out["eval/final_accuracy"] <= 1
