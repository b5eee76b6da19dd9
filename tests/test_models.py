"""Behaviour of the three model families: LanguageModel, SequenceClassifier, Seq2Seq."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqlab.models import LanguageModel, Seq2Seq, SequenceClassifier
from seqlab.models.inputs import InputEncoder

TOL = {"rtol": 1e-5, "atol": 1e-5}
H, E = 8, 6  # hidden size and embedding width of every model here (shared shapes compile once)
V = 7  # vocabulary (LM) / target vocabulary (seq2seq)
SRC_V = 9
PAD, BOS, EOS = 0, 1, 2


def tokens(key: int, shape: tuple[int, ...], vocab: int = V, low: int = 0) -> jax.Array:
    # NumPy draws: each new shape of an eager jax.random call costs an XLA compilation
    return jnp.asarray(np.random.default_rng(key).integers(low, vocab, shape), jnp.int32)


@partial(nnx.jit, static_argnames=("method", "static"))
def _jcall(model, args, kwargs, *, method: str, static: tuple):
    return getattr(model, method)(*args, **kwargs, **dict(static))


def jcall(model: nnx.Module, *args: Any, method: str = "__call__", **kwargs: Any) -> Any:
    """``model.method(*args, **kwargs)`` under nnx.jit; bool/int/str keywords are static.

    Eager calls re-trace and re-compile every lax.scan on each call; jitting compiles each
    (model structure, shapes) pair once per session, which keeps these tests fast."""
    static = tuple(sorted((k, v) for k, v in kwargs.items() if isinstance(v, (bool, int, str))))
    dynamic = {k: v for k, v in kwargs.items() if not isinstance(v, (bool, int, str))}
    return _jcall(model, args, dynamic, method=method, static=static)


def params_of(model: nnx.Module) -> dict[str, np.ndarray]:
    flat = nnx.to_flat_state(nnx.state(model, nnx.Param))
    return {"/".join(map(str, path)): np.array(v[...]) for path, v in flat}


def adam_step_changes_every_parameter(model: nnx.Module, loss_fn) -> None:
    """One optax.adam step through nnx.Optimizer moves every element of every parameter,
    and lowers the loss."""
    before = params_of(model)
    opt = nnx.Optimizer(model, optax.adam(1e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, opt):
        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    loss0 = train_step(model, opt)
    after = params_of(model)
    assert int(opt.step[...]) == 1
    assert before.keys() == after.keys() and len(before) > 0
    unchanged = [k for k in before if np.any(before[k] == after[k])]
    assert not unchanged, f"parameters (partly) unchanged by the step: {unchanged}"
    assert float(train_step(model, opt)) < float(loss0)  # the loss after the first step


def xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


# ---------------------------------------------------------------------------------------------
# LanguageModel
# ---------------------------------------------------------------------------------------------


def lm(input_kind: str = "onehot", cell: str = "lstm", **kw: Any) -> LanguageModel:
    embed = {"embed_dim": E} if input_kind == "embed" else {}
    return LanguageModel(
        V,
        cell=cell,
        hidden_size=H,
        num_layers=2,
        input_kind=input_kind,
        rngs=nnx.Rngs(0),
        **embed,
        **kw,
    )


def assert_trees_close(a: Any, b: Any) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    jax.tree.map(lambda u, v: np.testing.assert_allclose(u, v, **TOL), a, b)


def test_lm_halves_with_chained_carry_equal_one_call():
    model = lm("onehot", "lstm")
    x = tokens(0, (2, 8))
    full, aux = jcall(model, x)
    assert full.shape == (2, 8, V)
    first, aux1 = jcall(model, x[:, :4])
    second, aux2 = jcall(model, x[:, 4:], carry=aux1["final_carry"])
    np.testing.assert_allclose(jnp.concatenate([first, second], 1), full, **TOL)
    assert_trees_close(aux2["final_carry"], aux["final_carry"])
    # without the carry the second half starts from zeros and differs
    assert not np.allclose(jcall(model, x[:, 4:])[0], second, atol=1e-3)


def test_lm_step_iterated_equals_call():
    model = lm("onehot", "lstm")
    x = tokens(1, (2, 8))
    full, aux = jcall(model, x)
    carry = model.initial_carry(2)
    for t in range(8):
        carry, logits = jcall(model, carry, x[:, t], method="step")
        np.testing.assert_allclose(logits, full[:, t], **TOL)
    assert_trees_close(carry, aux["final_carry"])


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.slow
def test_backends_agree(cell):
    """backend="fast" (custom VJP) and "scan" give the same logits and parameter gradients,
    and the one-hot LM (token ids looked up as rows of w_x) equals an explicit one-hot."""
    x, y = tokens(3, (3, 9)), tokens(4, (3, 9))
    scan, fast = lm("onehot", cell, backend="scan"), lm("onehot", cell, backend="fast")
    assert fast.rnn.layers[0].backend == "fast"

    def loss_fn(model):
        return xent(model(x)[0], y)

    g_scan = nnx.jit(nnx.grad(loss_fn))(scan)
    g_fast = nnx.jit(nnx.grad(loss_fn))(fast)
    assert_trees_close(jcall(scan, x)[0], jcall(fast, x)[0])
    assert_trees_close(nnx.to_pure_dict(g_scan), nnx.to_pure_dict(g_fast))
    explicit = scan.rnn(jax.nn.one_hot(x, V))[0]
    np.testing.assert_allclose(scan.rnn(x)[0], explicit, **TOL)
    with pytest.raises(ValueError, match="unknown recurrence backend"):
        lm("onehot", cell, backend="cudnnn")


def test_embed_init_normal_is_pytorchs_unit_normal():
    table = lambda init: np.asarray(
        InputEncoder(
            "embed", vocab_size=64, embed_dim=64, embed_init=init, rngs=nnx.Rngs(0)
        ).embed.embedding[...]
    )
    assert abs(table("normal").std() - 1.0) < 0.1  # N(0, 1), nn.Embedding's init (4096 draws)
    assert table("default").std() < 0.5  # Flax's variance scaling: much smaller
    with pytest.raises(ValueError, match="unknown embed init"):
        lm("embed", embed_init="xavier")


@pytest.mark.parametrize("block", ["none", "residual"])
def test_onehot_fan_in_scales_only_the_first_layers_input_kernel(block):
    """input_fan_in=1: the first layer's one-hot rows get unit variance (the same draws
    times sqrt(V)); deeper layers, the recurrent kernels and the head are unchanged."""
    kw = {"cell": "lstm" if block == "none" else "mingru", "block": block}
    flat = lambda m: {
        jax.tree_util.keystr(p): np.asarray(v)
        for p, v in jax.tree_util.tree_leaves_with_path(nnx.to_pure_dict(nnx.state(m)))
    }
    a, b = flat(lm("onehot", **kw)), flat(lm("onehot", input_fan_in=1, **kw))
    changed = [k for k in a if not np.array_equal(a[k], b[k])]
    assert len(changed) == 1, changed
    np.testing.assert_allclose(b[changed[0]], a[changed[0]] * np.sqrt(V), rtol=1e-6)
    want = "['input_proj']['linear']['kernel']" if block == "residual" else "[0]['cell']['w_x']"
    assert want in changed[0], changed[0]


@pytest.mark.slow
def test_lm_input_kinds():
    x = tokens(2, (2, 5))
    onehot, embed = lm("onehot"), lm("embed")
    assert not hasattr(onehot.inputs, "embed")  # one-hot: w_x is the embedding table
    np.testing.assert_array_equal(onehot.inputs(x), jax.nn.one_hot(x, V))
    assert onehot.rnn.layers[0].cell.in_features == V
    np.testing.assert_array_equal(embed.inputs(x), embed.inputs.embed.embedding[...][x])
    assert embed.rnn.layers[0].cell.in_features == E
    x2 = x.at[:, 3].set((x[:, 3] + 1) % V)
    for model in (onehot, embed):
        logits, _ = jcall(model, x)
        assert logits.shape == (2, 5, V) and bool(jnp.all(jnp.isfinite(logits)))
        # changing one token changes the logits from that step on, not before
        logits2, _ = jcall(model, x2)
        np.testing.assert_allclose(logits2[:, :3], logits[:, :3], **TOL)
        assert np.all(np.abs(logits2[:, 3:] - logits[:, 3:]).max(-1) > 1e-5)


def test_lm_dropout_only_when_training():
    model = lm(dropout=0.5)
    x = tokens(3, (2, 6))
    ref, _ = jcall(model, x)
    k1, k2 = jax.random.key(1), jax.random.key(2)
    np.testing.assert_array_equal(jcall(model, x, train=False, rng=k1)[0], ref)
    t1, t1b, t2 = (jcall(model, x, train=True, rng=k)[0] for k in (k1, k1, k2))
    np.testing.assert_array_equal(t1, t1b)  # the rng alone decides the mask
    assert not np.allclose(t1, ref, atol=1e-4)
    assert not np.allclose(t1, t2, atol=1e-4)
    with pytest.raises(ValueError, match="rng"):
        model(x, train=True)


def test_lm_adam_step_changes_every_parameter():
    model = lm("onehot")  # one-hot: no embedding table whose unused rows could stay put
    # every token occurs as an input at some t > 0 (at t = 0 the zero carry gives the LSTM's
    # forget-gate weights of that token a zero gradient)
    x = jnp.stack([(jnp.arange(V + 1) + 1) % V, (jnp.arange(V + 1) * 3 + 2) % V])
    adam_step_changes_every_parameter(model, lambda m: xent(m(x[:, :-1])[0], x[:, 1:]))


# ---------------------------------------------------------------------------------------------
# SequenceClassifier
# ---------------------------------------------------------------------------------------------

F, HC = 3, H  # features per step, classifier hidden size
LENGTHS = jnp.array([6, 2, 4])


def classifier(readout: str = "last", bidirectional: bool = False, **kw: Any):
    kw = {"num_outputs": 4, "cell": "lstm", "num_features": F, **kw}
    return SequenceClassifier(
        hidden_size=HC,
        num_layers=2,
        bidirectional=bidirectional,
        readout=readout,
        rngs=nnx.Rngs(0),
        **kw,
    )


def features(key: int, B: int = 3, T: int = 6) -> jax.Array:
    return jnp.asarray(np.random.default_rng(key).normal(size=(B, T, F)), jnp.float32)


def with_garbage_padding(x: jax.Array, lengths: jax.Array, extra: int = 3) -> jax.Array:
    """Overwrites steps past each length with huge values and appends ``extra`` more."""
    valid = jnp.arange(x.shape[1])[None, :, None] < lengths[:, None, None]
    x = jnp.where(valid, x, 1e3)
    return jnp.concatenate([x, jnp.full((x.shape[0], extra, *x.shape[2:]), -1e3, x.dtype)], 1)


@pytest.mark.parametrize("bidirectional", [False, True], ids=["uni", "bi"])
@pytest.mark.slow
def test_classifier_last_readout_respects_lengths(bidirectional):
    """Each example's output equals running the model on its truncated sequence alone."""
    model = classifier("last", bidirectional)
    x = features(0)
    out, _ = jcall(model, x, lengths=LENGTHS)
    assert out.shape == (3, 4)
    alone, _ = jcall(model, x[1:2, : int(LENGTHS[1])])
    np.testing.assert_allclose(out[1:2], alone, **TOL)
    # the lengths matter: treating every example as full length changes the truncated ones
    full, _ = jcall(model, x, lengths=jnp.full((3,), 6))
    np.testing.assert_allclose(full[0], out[0], **TOL)
    assert np.all(np.abs(full[1:] - out[1:]).max(-1) > 1e-4)


@pytest.mark.parametrize("readout,bidirectional", [("last", True), ("mean", True), ("max", False)])
@pytest.mark.slow
def test_classifier_ignores_padded_steps(readout, bidirectional):
    """Garbage in padded steps, and more padded steps appended, change nothing; mean/max pool
    exactly the valid top-layer outputs."""
    model = classifier(readout, bidirectional)
    x = features(1)
    out, aux = jcall(model, x, lengths=LENGTHS)
    out2, aux2 = jcall(model, with_garbage_padding(x, LENGTHS), lengths=LENGTHS)
    np.testing.assert_allclose(out2, out, **TOL)
    top = aux["hidden_states"][-1]
    assert top.shape == (3, 6, HC * (2 if bidirectional else 1))
    if readout != "last":
        pool = jnp.mean if readout == "mean" else jnp.max
        for b, n in enumerate(LENGTHS.tolist()):
            np.testing.assert_allclose(aux["features"][b], pool(top[b, :n], 0), **TOL)


def test_bidirectional_last_readout_is_both_final_states():
    model = classifier("last", bidirectional=True)
    _, aux = jcall(model, features(2), lengths=LENGTHS)
    top = aux["hidden_states"][-1]
    assert aux["features"].shape == (3, 2 * HC)
    for b, n in enumerate(LENGTHS.tolist()):
        # the forward direction ends at the last valid step, the backward one at step 0
        np.testing.assert_allclose(aux["features"][b, :HC], top[b, n - 1, :HC], **TOL)
        np.testing.assert_allclose(aux["features"][b, HC:], top[b, 0, HC:], **TOL)


def test_token_classifier_and_regression():
    tok = classifier(input_kind="embed", vocab_size=SRC_V, embed_dim=E, num_outputs=2)
    assert jcall(tok, tokens(0, (2, 5), SRC_V))[0].shape == (2, 2)

    reg = classifier("mean", num_outputs=1)
    x, y = features(3, B=4), jnp.array([[0.5], [-1.0], [2.0], [0.0]])

    def mse(model: SequenceClassifier) -> jax.Array:
        out, _ = model(x)
        assert out.shape == (4, 1)
        return jnp.mean((out - y) ** 2)

    opt = nnx.Optimizer(reg, optax.adam(3e-2), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, opt):
        loss, grads = nnx.value_and_grad(mse)(model)
        opt.update(model, grads)
        return loss

    losses = [float(train_step(reg, opt)) for _ in range(6)]
    assert losses[-1] < 0.7 * losses[0], losses


def test_classifier_adam_step_changes_every_parameter():
    model = classifier("last", bidirectional=True)
    x, y, lens = features(4, B=4), jnp.array([0, 1, 2, 3]), jnp.array([6, 5, 3, 2])
    adam_step_changes_every_parameter(model, lambda m: xent(m(x, lengths=lens)[0], y))


# ---------------------------------------------------------------------------------------------
# Seq2Seq
# ---------------------------------------------------------------------------------------------

S2S = [(False, False), (False, True), (True, True)]
S2S_IDS = ["plain", "bienc", "attn-bienc"]


def s2s(attention: bool, bidirectional: bool) -> Seq2Seq:
    return Seq2Seq(
        SRC_V,
        V,
        embed_dim=E,
        cell="lstm",
        hidden_size=H,
        num_layers=1 if attention else 2,
        bidirectional_encoder=bidirectional,
        attention=attention,
        attention_size=5,
        rngs=nnx.Rngs(0),
    )


B2, S, T2 = 8, 5, 6  # seq2seq batch, source and target lengths (shared: compiled once)
SRC = tokens(10, (B2, S), SRC_V, low=3)
SRC_LENGTHS = jnp.array([5, 2, 4, 3, 1, 5, 3, 4])
TGT_IN = jnp.concatenate([jnp.full((B2, 1), BOS), tokens(11, (B2, T2 - 1), V, low=3)], 1)
SRC_MASK = jnp.arange(S)[None, :] < SRC_LENGTHS[:, None]


@partial(jax.jit, static_argnames=("graphdef", "max_len"))
def _decode(graphdef, state, src, src_lengths, eos_id, *, max_len: int):
    model = nnx.merge(graphdef, state)
    return model.greedy_decode(
        src, src_lengths=src_lengths, max_len=max_len, bos_id=BOS, eos_id=eos_id, pad_id=PAD
    )


def decode(model: Seq2Seq, src, src_lengths, max_len: int, eos_id: int = EOS):
    return _decode(*nnx.split(model), src, src_lengths, eos_id, max_len=max_len)


@nnx.jit
def _attention_decoder_by_hand(model: Seq2Seq, emb, keys, carry):
    """Bahdanau decoding: the query is the decoder state before step t; the step's input is
    [embedding; context] and the head reads [h_t; context]."""
    pkeys = model.attention.project_keys(keys)
    ys, ws = [], []
    for t in range(emb.shape[1]):
        ctx, w = model.attention(model.decoder.top_hidden(carry), keys, pkeys, SRC_MASK)
        carry, h = model.decoder.step(carry, jnp.concatenate([emb[:, t], ctx], -1))
        ys.append(jnp.concatenate([h, ctx], -1))
        ws.append(w)
    return jnp.stack(ys, 1), jnp.stack(ws, 1)


@pytest.mark.parametrize("attention,bidirectional", S2S, ids=S2S_IDS)
@pytest.mark.slow
def test_seq2seq_teacher_forcing_and_encoder_carry(attention, bidirectional):
    model = s2s(attention, bidirectional)
    logits, aux = jcall(model, SRC, TGT_IN, src_lengths=SRC_LENGTHS)
    assert logits.shape == (B2, T2, V)
    assert aux["encoder_states"].shape == (B2, S, H)
    # the encoder's final carry (directions summed) is what the decoder starts from
    _, enc = jcall(model.encoder, model.src_embed(SRC), lengths=SRC_LENGTHS)
    expected = enc["final_carry"]
    if bidirectional:
        expected = [jax.tree.map(jnp.add, f, b) for f, b in expected]
    assert_trees_close(aux["encoder_carry"], expected)
    # re-running the decoder by hand from aux['encoder_carry'] reproduces the logits
    emb = model.tgt_embed(TGT_IN)
    if not attention:
        y, _ = jcall(model.decoder, emb, initial_carry=aux["encoder_carry"])
    else:
        y, w = _attention_decoder_by_hand(model, emb, aux["encoder_states"], aux["encoder_carry"])
        np.testing.assert_allclose(w, aux["attention"], **TOL)
    np.testing.assert_allclose(model.head(y), logits, **TOL)
    # the source reaches the decoder: another source changes every example's logits
    other, _ = jcall(model, SRC[::-1], TGT_IN, src_lengths=SRC_LENGTHS[::-1])
    assert np.all(np.abs(other - logits).max(axis=(1, 2)) > 1e-4)


@pytest.mark.parametrize("attention", [False, True], ids=["plain", "attn"])
def test_seq2seq_target_lengths(attention):
    """With tgt_lengths, aux['final_carry'] is each example's decoder state at its last valid
    target step (as RNNStack defines it), whichever decoder is used."""
    model = s2s(attention, bidirectional=False)
    tgt_lengths = jnp.array([6, 3, 4, 1, 6, 2, 5, 6])
    _, aux = jcall(model, SRC, TGT_IN, src_lengths=SRC_LENGTHS, tgt_lengths=tgt_lengths)
    b, n = 1, 3
    _, alone = jcall(model, SRC[b : b + 1, : int(SRC_LENGTHS[b])], TGT_IN[b : b + 1, :n])
    assert_trees_close(
        jax.tree.map(lambda c: c[b : b + 1], aux["final_carry"]), alone["final_carry"]
    )


@pytest.mark.parametrize("attention", [False, True], ids=["bienc", "attn-bienc"])
@pytest.mark.slow
def test_seq2seq_source_padding_invariance(attention):
    model = s2s(attention, bidirectional=True)  # the reverse encoder must skip the padding
    logits, _ = jcall(model, SRC, TGT_IN, src_lengths=SRC_LENGTHS)
    # padded source positions hold other tokens, and more padded positions are appended
    garbage = jnp.concatenate([jnp.where(SRC_MASK, SRC, SRC_V - 1), jnp.full((B2, 3), 4)], 1)
    logits2, _ = jcall(model, garbage, TGT_IN, src_lengths=SRC_LENGTHS)
    np.testing.assert_allclose(logits2, logits, **TOL)
    # and one example alone, unpadded, gives the same logits
    alone, _ = jcall(model, SRC[1:2, :2], TGT_IN[1:2])
    np.testing.assert_allclose(alone, logits[1:2], **TOL)


def test_attention_weights_are_a_masked_distribution():
    model = s2s(attention=True, bidirectional=True)
    _, aux = jcall(model, SRC, TGT_IN, src_lengths=SRC_LENGTHS)
    w = aux["attention"]
    assert w.shape == (B2, T2, S)
    np.testing.assert_allclose(w.sum(-1), 1.0, rtol=1e-5)
    valid = SRC_MASK[:, None, :]
    assert float(jnp.abs(jnp.where(valid, 0.0, w)).max()) < 1e-6
    assert bool(jnp.all(jnp.where(valid, w, 1.0) > 0))


def _reference_greedy(model: Seq2Seq, src, src_lengths, max_len: int) -> np.ndarray:
    """Feeds each step's argmax back through the teacher-forced __call__ (no EOS handling).

    The decoder is causal, so logits at step t depend only on tgt_in[:, : t + 1]; the input is
    kept at a fixed width (one compilation) and filled in as tokens are chosen."""
    tgt = jnp.full((src.shape[0], max_len), BOS)
    out = []
    for t in range(max_len):
        nxt = jnp.argmax(jcall(model, src, tgt, src_lengths=src_lengths)[0][:, t], -1)
        out.append(nxt)
        if t + 1 < max_len:
            tgt = tgt.at[:, t + 1].set(nxt)
    return np.asarray(jnp.stack(out, 1))


@pytest.mark.parametrize(
    "attention,bidirectional", [(False, False), (True, True)], ids=["plain", "attn-bienc"]
)
def test_greedy_decode_matches_teacher_forced_argmax_and_stops_at_eos(attention, bidirectional):
    model, max_len, src, lens = s2s(attention, bidirectional), T2, SRC, SRC_LENGTHS
    ref = _reference_greedy(model, src, lens, max_len)
    toks, n = decode(model, src, lens, max_len, eos_id=-1)  # an id that never occurs
    np.testing.assert_array_equal(toks, ref)
    np.testing.assert_array_equal(n, max_len)

    # As EOS take a token the model emits first at different steps in different examples
    # (and not at all in some), so per-example stopping is exercised.
    def first_hits(v: int) -> list[int | None]:
        return [int(np.argmax(r == v)) if (r == v).any() else None for r in ref]

    eos = max(range(V), key=lambda v: len(set(first_hits(v))))
    hits = first_hits(eos)
    assert len(set(hits)) >= 3, f"degenerate test model: {ref}"
    toks, n = decode(model, src, lens, max_len, eos_id=eos)
    for b, h in enumerate(hits):
        if h is None:
            np.testing.assert_array_equal(toks[b], ref[b])
            assert int(n[b]) == max_len
        else:
            np.testing.assert_array_equal(toks[b, : h + 1], ref[b, : h + 1])
            assert int(toks[b, h]) == eos
            assert np.all(np.asarray(toks[b, h + 1 :]) == PAD)
            assert int(n[b]) == h + 1  # the length counts the EOS


def test_greedy_decode_forced_immediate_eos():
    model = s2s(True, False)
    model.head.bias[...] = model.head.bias[...].at[EOS].set(1e4)
    toks, n = decode(model, SRC, SRC_LENGTHS, T2)
    np.testing.assert_array_equal(toks, np.tile([EOS] + [PAD] * (T2 - 1), (B2, 1)))
    np.testing.assert_array_equal(n, 1)


def test_seq2seq_adam_step_changes_every_parameter():
    model = s2s(attention=True, bidirectional=True)
    src = jnp.stack([jnp.arange(SRC_V), jnp.arange(SRC_V)[::-1]])  # every token occurs
    tgt = jnp.stack([(jnp.arange(V + 1) + 1) % V, (jnp.arange(V + 1) * 3 + 2) % V])
    lens = jnp.array([SRC_V, SRC_V - 2])
    adam_step_changes_every_parameter(
        model, lambda m: xent(m(src, tgt[:, :-1], src_lengths=lens)[0], tgt[:, 1:])
    )


@pytest.mark.slow
def test_num_params_and_hidden_size_for():
    from seqlab.config import base_config
    from seqlab.models.build import build_model, hidden_size_for, num_params
    from seqlab.tasks.base import ModelSpec

    spec = ModelSpec(family="lm", vocab_size=V)
    m = base_config().model
    m.cell, m.num_layers, m.hidden_size = "lstm", 2, 9
    built = build_model(m, spec, nnx.Rngs(0))
    actual = sum(int(x.size) for x in jax.tree.leaves(nnx.state(built, nnx.Param)))
    h = 9  # one-hot LSTM: per layer 4H(in + H) + 4H (one folded bias per gate); head H*V + V
    closed = 4 * h * (V + h) + 4 * h + 4 * h * (h + h) + 4 * h + h * V + V
    assert num_params(m, spec) == actual == closed
    for cell in ("rnn", "gru", "lstm"):
        m.cell = cell
        best = hidden_size_for(m, spec, 5_000)

        def count(hidden: int) -> int:
            m.hidden_size = hidden
            return num_params(m, spec)

        gap = abs(count(best) - 5_000)
        assert gap <= abs(count(best - 1) - 5_000) and gap <= abs(count(best + 1) - 5_000)
