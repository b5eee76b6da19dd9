"""``model.cell=attention`` in every model family: the char LM (generation with the key/value
window equal to full recomputation, also past the window), many-to-one with lengths, seq2seq."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.config import base_config
from seqlab.models.build import build_model, hidden_size_for, num_params
from seqlab.models.generate import generate, sample_logits
from seqlab.tasks.base import ModelSpec


def model_config(**kw):
    m = base_config().model
    m.cell, m.hidden_size, m.num_layers, m.num_heads, m.window = "attention", 16, 2, 2, 4
    for k, v in kw.items():
        m[k] = v
    return m


@pytest.fixture(scope="module")
def lm():
    return build_model(model_config(), ModelSpec(family="lm", vocab_size=7), nnx.Rngs(0))


@pytest.mark.slow
def test_lm_every_parameter_gets_a_gradient(lm):
    tokens = jax.random.randint(jax.random.key(0), (2, 6), 0, 7)
    graphdef, state = nnx.split(lm, nnx.Param)

    @jax.jit
    def grads(p):
        loss = lambda p: jnp.mean(jax.nn.log_softmax(nnx.merge(graphdef, p)(tokens)[0])[..., 0])
        return jax.grad(loss)(p)

    leaves = jax.tree.leaves(grads(state))
    assert leaves and all(float(jnp.abs(g).max()) > 0 for g in leaves)


def jitted(model, fn):
    """``fn(model, *args)`` compiled over the model's state (eager NNX calls are slow)."""
    graphdef, state = nnx.split(model)
    f = jax.jit(lambda st, *a: fn(nnx.merge(graphdef, st), *a))
    return lambda *a: f(state, *a)


@pytest.mark.parametrize("temperature,top_k", [(0.0, 0), (1.0, 3)])
@pytest.mark.slow
def test_generation_with_the_window_equals_full_recomputation(lm, temperature, top_k):
    """Past the window (prime 3 + 9 tokens, window 4): token t from the cached steps equals
    the token drawn, with the same key, from the whole sequence recomputed (one causal call
    gives the logits of every prefix, the window sliding as in training)."""
    key, prime = jax.random.key(3), jnp.array([1, 2, 3])
    toks = generate(lm, prime, 9, key=key, temperature=temperature, top_k=top_k)[0]
    logits, _ = jitted(lm, lambda m, x: m(x))(jnp.concatenate([prime, toks])[None])
    for t in range(9):
        row = logits[:, 2 + t]
        want = sample_logits(row, jax.random.fold_in(key, t), temperature, top_k)
        assert int(toks[t]) == int(want[0]), t


@pytest.mark.slow
def test_lm_logits_from_steps_equal_one_call(lm):
    tokens = jax.random.randint(jax.random.key(1), (2, 10), 0, 7)
    full, _ = jitted(lm, lambda m, x: m(x))(tokens)

    def steps(m, x):
        return jax.lax.scan(lambda c, tok: m.step(c, tok), m.initial_carry(2), x.T)[1]

    rows = jitted(lm, steps)(tokens)
    np.testing.assert_allclose(np.swapaxes(rows, 0, 1), full, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("readout", ["last", "mean"])
@pytest.mark.slow
def test_classifier_ignores_padding(readout):
    spec = ModelSpec(family="classifier", input_kind="features", num_features=3, num_outputs=2)
    model = build_model(model_config(readout=readout), spec, nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(2), (2, 7, 3))
    out, _ = jitted(model, lambda m, x, n: m(x, lengths=n))(x, jnp.array([7, 4]))
    alone, _ = jitted(model, lambda m, x: m(x))(x[1:, :4])
    np.testing.assert_allclose(out[1], alone[0], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_seq2seq_decoder_continues_the_encoders_window():
    spec = ModelSpec(family="seq2seq", vocab_size=6, tgt_vocab_size=5)
    m = model_config(window=16, embed_dim=8)
    model = build_model(m, spec, nnx.Rngs(2))
    src = jax.random.randint(jax.random.key(4), (2, 5), 1, 6)
    tgt = jax.random.randint(jax.random.key(5), (2, 4), 1, 5)
    call = jitted(model, lambda m, s, t: m(s, t))
    logits, aux = call(src, tgt)
    assert logits.shape == (2, 4, 5)
    assert [int(c["pos"][0]) for c in aux["final_carry"]] == [9, 9]  # 5 source + 4 target
    decode = jitted(model, lambda m, s: m.greedy_decode(s, max_len=2, bos_id=1, eos_id=0)[0])
    toks = decode(src)
    teacher = jnp.concatenate([jnp.ones((2, 1), jnp.int32), toks[:, :1]], 1)
    np.testing.assert_array_equal(toks, jnp.argmax(call(src, teacher)[0], -1))
    m.attention = True
    with pytest.raises(ValueError, match="needs a recurrent cell"):
        build_model(m, spec, nnx.Rngs(2))


@pytest.mark.slow
def test_num_params_matched_width():
    spec = ModelSpec(family="lm", vocab_size=65)
    m = model_config(num_layers=4, num_heads=4)
    h = hidden_size_for(m, spec, 800_000)
    m.hidden_size = h
    assert abs(num_params(m, spec) - 800_000) < 0.02 * 800_000


@pytest.mark.slow
def test_nanogpt_cpu_config_end_to_end(tmp_path, capsys, monkeypatch):
    """configs/charlm.py:nanogpt_cpu shrunk: train (probing ||dL/dx_t||, the attention page at
    an eval), eval, sample
    (the same seed, the same text), inspect (the attention page)."""
    import json
    import os

    from tests.test_e2e import SHARED_DATA, train_then_eval

    if not os.path.isdir(SHARED_DATA):
        pytest.skip("tiny shakespeare is not available offline here")
    monkeypatch.setenv("SEQLAB_DATA_DIR", SHARED_DATA)
    from seqlab.tools.cli import main

    extra = ["--config.probe.every=10", "--config.probe.quantity=residual"]
    extra += ["--config.inspect.every=20"]  # the attention page at the step-20 eval
    wd, _ = train_then_eval(tmp_path, capsys, "charlm.py:nanogpt_cpu,runlocal", extra=extra)
    with open(os.path.join(wd, "inspect", "index.html"), encoding="utf-8") as f:
        assert "step 20" in f.read()
    with open(os.path.join(wd, "probe.json")) as f:
        curves = json.load(f)
    assert sorted(curves) == ["layer_0"] and "step_10" in curves["layer_0"]
    texts = []
    for _ in range(2):
        assert main(["sample", "--workdir", wd, "--length", "80", "--seed", "3"]) == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and len(texts[0]) >= 80  # past the window of 32
    assert main(["inspect", "--workdir", wd, "--max_chars", "60", "--position", "40"]) == 0
    with open(os.path.join(wd, "inspect", "index.html"), encoding="utf-8") as f:
        assert "Attention maps" in f.read()
