"""Addition and reversal seq2seq tasks: pure data, correct strings, masked metrics, learning."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqlab.config import base_config
from seqlab.models.build import build_model
from seqlab.run.validate import validate
from seqlab.tasks import make_task
from seqlab.tasks.seq2seq import BOS, EOS, PAD

try:
    from tests.task_util import evaluate, jnp_batch, load_config_module
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from task_util import evaluate, jnp_batch, load_config_module


def make_config(name: str, batch: int = 16, **task_opts):
    c = base_config()
    c.task.name = name
    c.task.eval_batches = 2
    for k, v in task_opts.items():
        c.task[k] = v
    c.data.batch_size = batch
    c.model.hidden_size = 16
    c.model.embed_dim = 8
    return c


@pytest.mark.parametrize("name", ["addition", "reverse"])
def test_batches_are_pure_and_split_by_process(name):
    c = make_config(name)
    task = make_task(c)
    a = task.train_batch(2)
    for k, v in make_task(c).train_batch(2).items():
        np.testing.assert_array_equal(v, a[k])
    assert not np.array_equal(task.train_batch(3)["src"], a["src"])
    halves = [make_task(c, process_index=p, process_count=2).train_batch(2) for p in (0, 1)]
    assert not np.array_equal(halves[0]["src"], halves[1]["src"])
    for k in a:
        np.testing.assert_array_equal(np.concatenate([h[k] for h in halves]), a[k])
    assert task.eval_batches() is task.eval_batches()
    assert not np.array_equal(task.eval_batches()[0]["src"], a["src"])


def check_padding(b):
    """Valid tokens then PAD; targets end with EOS; tgt_in is BOS + target[:-1]."""
    S, L = b["src"].shape[1], b["tgt_out"].shape[1]
    src_valid = np.arange(S)[None] < b["src_lengths"][:, None]
    tgt_valid = np.arange(L)[None] < b["tgt_lengths"][:, None]
    assert (b["src"][~src_valid] == PAD).all() and (b["src"][src_valid] > EOS).all()
    assert (b["tgt_out"][~tgt_valid] == PAD).all()
    rows = np.arange(len(b["tgt_out"]))
    assert (b["tgt_out"][rows, b["tgt_lengths"] - 1] == EOS).all()
    assert (b["tgt_in"][:, 0] == BOS).all()
    np.testing.assert_array_equal(b["tgt_in"][:, 1:], b["tgt_out"][:, :-1])


def test_addition_strings_are_correct_sums():
    task = make_task(make_config("addition", batch=256, max_digits=3))
    b = task.train_batch(0)
    check_padding(b)
    assert b["src"].shape[1] == 7 and b["tgt_out"].shape[1] == 5 and task.spec.vocab_size == 14
    lens = set()
    for i in range(256):
        src = task.detokenize(b["src"][i, : b["src_lengths"][i]])
        tgt = task.detokenize(b["tgt_out"][i, : b["tgt_lengths"][i] - 1])
        x, y = src.split("+")
        assert int(x) + int(y) == int(tgt) and str(int(x)) == x and str(int(tgt)) == tgt
        lens.update((len(x), len(y)))
    assert lens == {1, 2, 3}  # every operand length occurs


def test_addition_reverse_source():
    plain = make_task(make_config("addition", max_digits=2)).train_batch(0)
    rev = make_task(make_config("addition", max_digits=2, reverse_source=True)).train_batch(0)
    for i in range(len(plain["src"])):
        n = plain["src_lengths"][i]
        np.testing.assert_array_equal(rev["src"][i, :n], plain["src"][i, :n][::-1])
    np.testing.assert_array_equal(rev["tgt_out"], plain["tgt_out"])


def test_reverse_structure():
    task = make_task(make_config("reverse", batch=64, vocab=5, min_len=2, max_len=6))
    b = task.train_batch(0)
    check_padding(b)
    assert task.spec.vocab_size == 8 and b["src"].shape[1] == 6 and b["tgt_out"].shape[1] == 7
    assert b["src_lengths"].min() >= 2 and b["src_lengths"].max() <= 6
    np.testing.assert_array_equal(b["tgt_lengths"], b["src_lengths"] + 1)
    for i in range(64):
        n = b["src_lengths"][i]
        np.testing.assert_array_equal(b["tgt_out"][i, :n], b["src"][i, :n][::-1])


def test_metrics_under_jit():
    c = make_config("addition", batch=8, max_digits=2)
    task = make_task(c)
    model = build_model(c.model, task.spec, nnx.Rngs(0))
    batch = jnp_batch(task.train_batch(0))
    loss, (m, carry) = nnx.jit(lambda mdl, b: task.loss(mdl, b))(model, batch)
    n_tok = float(np.sum(task.train_batch(0)["tgt_lengths"]))
    assert carry is None and np.isfinite(loss)
    assert float(m["loss"][1]) == n_tok == float(m["token_accuracy"][1])
    assert float(m["loss"][0]) / n_tok == pytest.approx(float(loss), rel=1e-5)
    em, _ = nnx.jit(lambda mdl, b: task.eval_metrics(mdl, b))(model, batch)
    assert set(em) == {"loss", "token_accuracy", "exact_match"}
    assert float(em["exact_match"][1]) == 8 and 0 <= float(em["exact_match"][0]) <= 8


def test_exact_match_and_samples_with_an_oracle_decoder():
    """A model whose greedy decode returns the targets scores 1.0 and prints them."""
    task = make_task(make_config("addition", max_digits=3))
    ev = task.eval_batches()[0]

    answers = {
        row.tobytes(): tgt
        for b in task.eval_batches()
        for row, tgt in zip(b["src"], b["tgt_out"], strict=True)
    }

    class Oracle:
        def greedy_decode(self, src, **kw):
            return jnp.asarray(np.stack([answers[r.tobytes()] for r in np.asarray(src)])), None

    toks = task.decode(Oracle(), ev)
    assert np.all(np.asarray(toks) == ev["tgt_out"])
    lines = task.text_samples(Oracle(), 0)["samples"].splitlines()
    assert len(lines) == 4
    for line in lines:
        src, rest = line.split(" -> ")
        pred, tgt = rest[:-1].split(" (")
        x, y = src.split("+")
        assert pred == tgt == str(int(x) + int(y))


@pytest.mark.slow
def test_reverse_lstm_learns_short_sequences():
    c = make_config("reverse", batch=64, vocab=4, min_len=1, max_len=4, eval_batch_size=128)
    c.model.hidden_size = 64
    c.model.embed_dim = 16
    task = make_task(c)
    model = build_model(c.model, task.spec, nnx.Rngs(0))
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, batch):
        opt.update(model, nnx.grad(lambda m: task.loss(m, batch)[0])(model))

    for i in range(120):
        step(model, opt, jnp_batch(task.train_batch(i)))
    after = evaluate(task, model)  # untrained: exact match ~0
    assert after["token_accuracy"] > 0.9 and after["exact_match"] > 0.6
    lines = task.text_samples(model, 120)["samples"].splitlines()
    assert len(lines) == 4 and all(" -> " in ln for ln in lines)


def test_config_variants_and_sweep():
    module = load_config_module("seq2seq")
    for arg, name, attention in [
        ("", "addition", False),
        ("task=reverse,attention", "reverse", True),
        ("gru,digits=5", "addition", False),
        ("runlocal", "addition", False),
    ]:
        c = module.get_config(arg)
        validate(c)
        assert (c.task.name, c.model.attention) == (name, attention)
        assert make_task(c).spec.family == "seq2seq"
    c = module.get_config()
    base = base_config()
    for section in ("task", "model", "data", "train"):
        assert set(base[section].keys()) <= set(c[section].keys())
    sweep = list(module.get_sweep())
    assert len(sweep) == len(module.CELLS) * 2 * len(module.DIGITS)
    for overrides in [*sweep, *module.get_sweep("task=reverse")]:
        for key in overrides:
            section, leaf = key.split(".")
            assert leaf in c[section]
    assert list(module.get_sweep("task=reverse,cells=gru,attention=yes,lengths=7")) == [
        {"task.name": "reverse", "model.cell": "gru", "model.attention": True, "task.max_len": 7}
    ]


@pytest.mark.slow
def test_runlocal_trains_end_to_end(tmp_path):
    """The whole loop: train, eval with greedy decoding, text samples, checkpoints."""
    from seqlab.run.loop import train_and_evaluate

    c = load_config_module("seq2seq").get_config("runlocal")
    out = train_and_evaluate(c, str(tmp_path))
    assert np.isfinite(out["eval/loss"]) and 0 <= out["eval/exact_match"] <= 1
    assert 0 <= out["eval/token_accuracy"] <= 1
