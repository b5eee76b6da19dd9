"""Selective copying and associative recall: data against brute force, pure batches, metrics
only where they belong, baselines, errors, the config's variants and sweep, and end to end."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.config import base_config
from seqlab.errors import DataError
from seqlab.models.build import build_model
from seqlab.run.validate import validate
from seqlab.tasks import make_task

try:
    from tests.task_util import evaluate, jnp_batch, load_config_module
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from task_util import evaluate, jnp_batch, load_config_module


def make_config(name: str, seq_len: int = 20, batch: int = 16, **opts):
    c = base_config()
    c.task.name = name
    c.task.eval_batches = 2
    for k, v in opts.items():
        c.task[k] = v
    c.data.seq_len = seq_len
    c.data.batch_size = batch
    c.model.hidden_size = 16
    return c


def sc_config(**kw):
    return make_config("selective_copy", **{"num_memorize": 4, "vocab": 5, **kw})


def ar_config(**kw):
    return make_config("associative_recall", **{"num_pairs": 4, "num_keys": 6, **kw})


class Fixed:
    """A stand-in model returning ``logits`` whatever its input: shape (C,) is one row for
    every example, (1, C) one row for every step, (B, L, C) all of them."""

    def __init__(self, logits):
        self.logits = jnp.asarray(logits, jnp.float32)

    def __call__(self, x, **kw):
        lead = x.shape[:1] if self.logits.ndim == 1 else x.shape[:2]
        return jnp.broadcast_to(self.logits, (*lead, self.logits.shape[-1])), {}


def test_selective_copy_matches_brute_force():
    T, M, V = 20, 4, 5
    task = make_task(sc_config(seq_len=T, batch=64))
    b = task.train_batch(0)
    x, y = b["inputs"], b["targets"]
    assert x.shape == (64, T + M) and y.shape == (64, M) and x.dtype == y.dtype == np.int32
    assert task.spec.family == "lm" and task.spec.vocab_size == V + 2
    assert task.tokens_per_batch() == 64 * (T + M)
    for row in range(64):
        context = x[row, :T].tolist()
        data = [t for t in context if t != 0]  # everything but noise, in order
        assert data == y[row].tolist() and all(1 <= t <= V for t in data)
        assert x[row, T:].tolist() == [V + 1] * M  # the markers
    positions = [tuple(np.flatnonzero(r[:T])) for r in x]
    assert len(set(positions)) > 50  # the data sit at varying positions


def test_associative_recall_matches_brute_force():
    T, N, K, V = 15, 4, 6, 16
    task = make_task(ar_config(seq_len=T, batch=64))
    b = task.train_batch(0)
    x, y = b["inputs"], b["labels"]
    assert x.shape == (64, T) and y.shape == (64,) and x.dtype == y.dtype == np.int32
    assert task.spec.family == "classifier"
    assert (task.spec.vocab_size, task.spec.num_outputs) == (K + V + 1, V)
    for row in x.tolist():
        keys, values = row[0 : 2 * N : 2], row[1 : 2 * N : 2]
        assert len(set(keys)) == N and all(0 <= k < K for k in keys)
        assert all(K <= v < K + V for v in values)
        assert row[2 * N : T - 1] == [K + V] * (T - 1 - 2 * N)  # blanks
    table = [dict(zip(r[0 : 2 * N : 2], r[1 : 2 * N : 2], strict=True)) for r in x.tolist()]
    np.testing.assert_array_equal(y, [t[r[-1]] - K for t, r in zip(table, x.tolist(), strict=True)])
    assert len(np.unique(x[:, -1])) == K  # every key gets asked


@pytest.mark.parametrize("config", [sc_config, ar_config])
def test_batches_are_pure_and_the_eval_set_fixed(config):
    c = config()
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
        for k in e:
            np.testing.assert_array_equal(o[k], e[k])


@pytest.mark.slow
def test_selective_copy_scores_the_marker_steps_only():
    T, M, V = 20, 4, 5
    c = sc_config(seq_len=T, batch=8)
    task = make_task(c)
    batch = task.train_batch(0)
    # right at the markers, confidently wrong everywhere else: the loss ignores the rest
    logits = np.zeros((8, T + M, V + 2), np.float32)
    logits[:, :T, V + 1] = 50.0
    logits[np.arange(8)[:, None], T + np.arange(M), batch["targets"]] = 50.0
    loss, (metrics, _) = task.loss(Fixed(logits), jnp_batch(batch))
    assert float(loss) < 1e-6
    assert float(metrics["accuracy"][0]) == float(metrics["accuracy"][1]) == 8 * M
    # a real model, jitted: counts are the B x M recalled tokens
    model = build_model(c.model, task.spec, nnx.Rngs(0))
    loss, (metrics, carry) = nnx.jit(lambda m, b: task.loss(m, b))(model, jnp_batch(batch))
    assert carry is None and np.isfinite(loss) and float(metrics["loss"][1]) == 8 * M


def test_selective_copy_baselines():
    V = 5
    task = make_task(sc_config(vocab=V, eval_batch_size=256))
    assert task.baselines() == {"accuracy": 0.2, "loss": pytest.approx(math.log(V))}
    # uniform over the V data tokens (none on noise or marker) scores exactly log V
    logits = np.full(V + 2, -1e9, np.float32)
    logits[1 : V + 1] = 0.0
    means = evaluate(task, Fixed(logits[None]))
    assert means["loss"] == pytest.approx(math.log(V), rel=1e-5)
    targets = np.concatenate([e["targets"] for e in task.eval_batches()])
    assert means["accuracy"] == pytest.approx(np.mean(targets == 1))
    assert means["accuracy"] == pytest.approx(1 / V, abs=0.05)


def test_associative_recall_metrics_and_baselines():
    c = ar_config(num_values=8, eval_batch_size=256)
    task = make_task(c)
    model = build_model(c.model, task.spec, nnx.Rngs(0))
    loss, (metrics, _) = nnx.jit(lambda m, b: task.loss(m, b))(
        model, jnp_batch(task.train_batch(0))
    )
    assert np.isfinite(loss) and float(metrics["accuracy"][1]) == 16
    assert task.baselines() == {"accuracy": 1 / 8, "loss": pytest.approx(math.log(8))}
    means = evaluate(task, Fixed(np.zeros(8)))
    assert means["loss"] == pytest.approx(math.log(8), rel=1e-5)
    labels = np.concatenate([e["labels"] for e in task.eval_batches()])
    assert means["accuracy"] == pytest.approx(np.mean(labels == 0))


@pytest.mark.parametrize(
    "config, opts, needle",
    [
        (sc_config, {"seq_len": 4}, "data.seq_len > task.num_memorize"),
        (sc_config, {"seq_len": 3}, "data.seq_len > task.num_memorize"),
        (sc_config, {"num_memorize": 0}, "task.num_memorize >= 1"),
        (sc_config, {"vocab": 1}, "task.vocab >= 2"),
        (ar_config, {"seq_len": 8}, "data.seq_len >= 2 * task.num_pairs + 1 = 9"),
        (ar_config, {"num_pairs": 0}, "task.num_pairs >= 1"),
        (ar_config, {"num_keys": 3}, "task.num_keys >= task.num_pairs"),
        (ar_config, {"num_values": 1}, "task.num_values >= 2"),
    ],
)
def test_bad_options_are_one_clear_error(config, opts, needle):
    seq_len = opts.pop("seq_len", 20)
    with pytest.raises(DataError) as e:
        make_task(config(seq_len=seq_len, **opts))
    assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize(
    "arg, name, cell, T, layers",
    [
        (None, "selective_copy", "gru", 64, 1),
        ("associative_recall", "associative_recall", "gru", 32, 1),
        ("task=associative_recall,lstm,T=128", "associative_recall", "lstm", 128, 1),
        ("mingru,layers=3", "selective_copy", "mingru", 64, 3),
        ("runlocal", "selective_copy", "gru", 12, 1),
        ("associative_recall,runlocal", "associative_recall", "gru", 12, 1),
    ],
)
def test_config_variants(arg, name, cell, T, layers):
    c = load_config_module("selective").get_config(arg)
    validate(c)
    assert (c.task.name, c.model.cell, c.data.seq_len, c.model.num_layers) == (
        name,
        cell,
        T,
        layers,
    )
    make_task(c)  # the options make a valid task


def test_config_rejects_unknown_task_and_sweep_covers_cells_by_lengths():
    module = load_config_module("selective")
    with pytest.raises(ValueError, match="unknown selective task"):
        module.get_config("task=copy")
    for arg in ("selective_copy", "associative_recall"):
        c = module.get_config(arg)
        sweep = list(module.get_sweep())
        assert len(sweep) == len(module.CELLS) * len(module.LENGTHS)
        for point in sweep:
            c.model.cell, c.data.seq_len = point["model.cell"], point["data.seq_len"]
            make_task(c)  # every length fits the task's options


@pytest.mark.slow
def test_runlocal_trains_end_to_end(tmp_path):
    """One run, to stay cheap: selective_copy, the per-step path with a loss on some steps
    (associative_recall is the classifier path long_range's test runs)."""
    from seqlab.run.loop import train_and_evaluate

    c = load_config_module("selective").get_config("runlocal")
    out = train_and_evaluate(c, str(tmp_path))
    assert np.isfinite(out["eval/loss"]) and 0 <= out["eval/accuracy"] <= 1
    baselines = {k.split("/", 1)[1]: v for k, v in out.items() if k.startswith("baseline/")}
    assert baselines == pytest.approx(make_task(c).baselines())
