"""Recurrence over time (seqlab/recurrence.py) against the float64 NumPy reference."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from seqlab.cells import Cell, make_cell
from seqlab.recurrence import Bidirectional, Recurrent, RNNStack, flip_sequences, length_mask
from seqlab.recurrence.layers import perturbed

try:
    from tests import reference as ref
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    import reference as ref

KINDS = ref.KINDS
F, H, B, T = 4, 4, 3, 6  # F == H: stacked layers reuse the shapes of the first
LENGTHS = np.array([6, 4, 1])
F64 = {"param_dtype": jnp.float64}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


# -- helpers -----------------------------------------------------------------------------------


def randomize(module: nnx.Module, seed: int = 0, scale: float = 0.6) -> Any:
    """Replaces every parameter with N(0, scale^2) (non-trivial biases, b_hn included)."""
    state = nnx.state(module, nnx.Param)
    leaves, treedef = jax.tree.flatten(state)
    rng = np.random.default_rng(seed)
    new = [jnp.asarray(scale * rng.standard_normal(v.shape), v.dtype) for v in leaves]
    nnx.update(module, jax.tree.unflatten(treedef, new))
    return module


def cell64(kind: str, in_features: int = F, seed: int = 0) -> Cell:
    cell = make_cell(kind, in_features, H, rngs=nnx.Rngs(seed), init="char_rnn", **F64)
    return randomize(cell, seed)


def stack64(kind: str, seed: int = 0, **kw: Any) -> RNNStack:
    stack = RNNStack(kind, F, H, cell_kwargs={"init": "char_rnn", **F64}, rngs=nnx.Rngs(seed), **kw)
    return randomize(stack, seed)


def stack_params(stack: RNNStack) -> list[Any]:
    out = []
    for layer in stack.layers:
        if isinstance(layer, Bidirectional):
            out.append((ref.params_of(layer.forward.cell), ref.params_of(layer.backward.cell)))
        else:
            out.append(ref.params_of(layer.cell))
    return out


def inputs(seed: int = 0, t: int = T, b: int = B) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((b, t, F))


def random_carry(kind: str, seed: int, batch: int = B) -> Any:
    rng = np.random.default_rng(seed)
    if kind == "lstm":
        return (rng.standard_normal((batch, H)), 0.5 * rng.standard_normal((batch, H)))
    return 0.5 * rng.standard_normal((batch, H))


def to_jax(tree: Any) -> Any:
    return jax.tree.map(jnp.asarray, tree)


def to_np(tree: Any) -> Any:
    return jax.tree.map(np.asarray, tree)


def assert_tree_close(a: Any, b: Any, rtol: float = 1e-11, atol: float = 1e-12) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b), (
        jax.tree.structure(a),
        jax.tree.structure(b),
    )
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


def params_loss(module: nnx.Module, loss: Any) -> tuple[Any, Any]:
    """(f, params): f(params) = loss(module with params), for jax.grad / check_grads."""
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)

    def f(p: Any) -> jax.Array:
        return loss(nnx.merge(graphdef, p, rest))

    return f, params


# -- one layer vs the reference ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.slow
def test_layer_matches_reference(kind: str) -> None:
    cell = cell64(kind, seed=1)
    p = ref.params_of(cell)
    x = inputs(2)
    c0 = random_carry(kind, 3)
    # (reverse, kwargs): the plain scan, and the flip path with lengths and an initial carry;
    # the other two combinations are covered for the LSTM below.
    cases = [(False, {}), (True, {"lengths": LENGTHS, "initial_carry": c0})]
    if kind == "lstm":
        cases += [(True, {}), (False, {"lengths": LENGTHS, "initial_carry": c0})]
    for reverse, kw in cases:
        y, c = Recurrent(cell, reverse=reverse)(jnp.asarray(x), **to_jax(kw))
        y_ref, c_ref = ref.run_layer(kind, p, x, reverse=reverse, **kw)
        assert y.dtype == jnp.float64
        assert_tree_close(y, y_ref)
        assert_tree_close(c, c_ref)


def test_float32_default_matches_reference() -> None:
    """The default (float32) path stays float32 and agrees with the float64 reference."""
    cell = make_cell("lstm", F, H, rngs=nnx.Rngs(55), init="char_rnn")
    layer = Recurrent(randomize(cell, 55), reverse=True)
    x = inputs(56).astype(np.float32)
    y, c = layer(jnp.asarray(x), lengths=jnp.asarray(LENGTHS))
    assert y.dtype == jnp.float32
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(c))
    y_ref, c_ref = ref.run_layer("lstm", ref.params_of(cell), x, lengths=LENGTHS, reverse=True)
    assert_tree_close(y, y_ref, rtol=1e-4, atol=1e-5)
    assert_tree_close(c, c_ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.slow
def test_layer_param_gradients_match_reference_finite_differences(kind: str) -> None:
    cell = cell64(kind, seed=4)
    if kind == "irnn":  # keep the relu pre-activations away from the kink
        cell.b[...] = jnp.abs(cell.b[...]) + 1.0
    layer = Recurrent(cell, reverse=True)
    x, lengths = inputs(5, t=4, b=2), np.array([4, 2])
    rng = np.random.default_rng(6)
    g_y, g_c = rng.standard_normal((2, 4, H)), rng.standard_normal((2, H))

    def loss(m: Recurrent) -> jax.Array:
        y, c = m(jnp.asarray(x), lengths=jnp.asarray(lengths))
        return jnp.sum(g_y * y) + jnp.sum(g_c * m.cell.hidden(c))

    f, params = params_loss(layer, loss)
    grads = nnx.to_pure_dict(jax.jit(jax.grad(f))(params))["cell"]
    p = ref.params_of(cell)

    def ref_loss(pp: ref.Params) -> float:
        y, c = ref.run_layer(kind, pp, x, lengths=lengths, reverse=True)
        return float(np.sum(g_y * y) + np.sum(g_c * ref.hidden(kind, c)))

    assert set(grads) == set(p)
    for name, value in p.items():
        fd = ref.finite_difference(lambda v, name=name: ref_loss({**p, name: v}), value)
        np.testing.assert_allclose(grads[name], fd, rtol=1e-6, atol=1e-8, err_msg=name)


def test_layer_check_grads_lstm_with_lengths() -> None:
    layer = Recurrent(cell64("lstm", seed=7))
    x, lengths = jnp.asarray(inputs(8, t=4, b=2)), jnp.asarray([4, 3])
    c0 = to_jax(random_carry("lstm", 9, batch=2))
    graphdef, params, rest = nnx.split(layer, nnx.Param, ...)

    @jax.jit
    def f(p: Any, x: jax.Array, c0: Any) -> jax.Array:
        y, (c, h) = nnx.merge(graphdef, p, rest)(x, lengths=lengths, initial_carry=c0)
        return jnp.sum(jnp.sin(y)) + jnp.sum(c**2) + jnp.sum(h)

    check_grads(f, (params, x, c0), order=1, modes=("rev",), eps=1e-4)


# -- lengths -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_padding_semantics(kind: str) -> None:
    layer = Recurrent(cell64(kind, seed=10))
    lengths = np.array([6, 3, 0])  # a full row, a padded row, an empty row
    x = inputs(11)
    c0 = random_carry(kind, 12)
    y, c = layer(jnp.asarray(x), lengths=jnp.asarray(lengths), initial_carry=to_jax(c0))
    y, c = np.asarray(y), to_np(c)
    mask = np.arange(T)[None, :] < lengths[:, None]
    np.testing.assert_array_equal(y[~mask], 0.0)  # outputs at padded steps are zero
    assert np.all(np.abs(y[mask]) > 0)
    # The empty row keeps its initial carry.
    for leaf, leaf0 in zip(jax.tree.leaves(c), jax.tree.leaves(c0), strict=True):
        np.testing.assert_array_equal(leaf[2], leaf0[2])
    # Final carry = state after the last valid step = running the unpadded prefix alone.
    for b in (0, 1):
        row0 = jax.tree.map(lambda a, b=b: jnp.asarray(a[b : b + 1]), c0)
        y_b, c_b = layer(jnp.asarray(x[b : b + 1, : lengths[b]]), initial_carry=row0)
        np.testing.assert_allclose(y[b, : lengths[b]], np.asarray(y_b[0]), rtol=1e-12, atol=0)
        for leaf, leaf_b in zip(jax.tree.leaves(c), jax.tree.leaves(c_b), strict=True):
            np.testing.assert_allclose(leaf[b], np.asarray(leaf_b[0]), rtol=1e-12, atol=0)
    # The carry never changes on padded steps: the state after step L-1 is the final carry,
    # which equals the hidden output at the last valid step.
    np.testing.assert_array_equal(layer.cell.hidden(c)[1], y[1, 2])


@pytest.mark.parametrize("reverse", [False, True])
def test_padding_invariance(reverse: bool) -> None:
    """Appending padded steps full of garbage changes nothing on valid steps nor the carry."""
    layer = Recurrent(cell64("lstm", seed=13), reverse=reverse)
    x = inputs(14)
    garbage = 1e3 * np.random.default_rng(15).standard_normal((B, 3, F))
    x_long = np.concatenate([x, garbage], axis=1)
    x_dirty = x.copy()
    mask = np.arange(T)[None, :] < LENGTHS[:, None]
    x_dirty[~mask] = 1e3  # garbage in the existing padding too
    run = jax.jit(lambda x: layer(x, lengths=jnp.asarray(LENGTHS)))
    y, c = run(jnp.asarray(x))
    for xx in (x_long, x_dirty):
        y2, c2 = run(jnp.asarray(xx))
        np.testing.assert_allclose(np.asarray(y2[:, :T]), np.asarray(y), rtol=1e-12, atol=0)
        np.testing.assert_array_equal(np.asarray(y2[:, T:]), 0.0)
        assert_tree_close(c2, c, rtol=1e-12, atol=0)


def test_flip_sequences_and_length_mask() -> None:
    x = jnp.arange(2 * 5).reshape(2, 5)
    flipped = flip_sequences(x, jnp.asarray([3, 5]))
    np.testing.assert_array_equal(np.asarray(flipped), [[2, 1, 0, 3, 4], [9, 8, 7, 6, 5]])
    mask = length_mask(jnp.asarray([0, 2]), 3)
    np.testing.assert_array_equal(np.asarray(mask), [[False, False, False], [True, True, False]])


# -- bidirectional and stacks ------------------------------------------------------------------


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_matches_reference(merge: str) -> None:
    fwd, bwd = cell64("gru", seed=16), cell64("gru", seed=17)
    layer = Bidirectional(Recurrent(fwd), Recurrent(bwd, reverse=True), merge=merge)
    assert layer.output_size == (2 * H if merge == "concat" else H)
    x = inputs(18)
    c0 = (random_carry("gru", 19), random_carry("gru", 20))
    y, c = layer(jnp.asarray(x), lengths=jnp.asarray(LENGTHS), initial_carry=to_jax(c0))
    y_ref, c_ref = ref.run_bidirectional(
        "gru",
        ref.params_of(fwd),
        ref.params_of(bwd),
        x,
        merge=merge,
        lengths=LENGTHS,
        initial_carry=c0,
    )
    assert y.shape == (B, T, layer.output_size)
    assert_tree_close(y, y_ref)
    assert_tree_close(c, c_ref)


def test_bidirectional_rejects_unknown_merge() -> None:
    with pytest.raises(ValueError, match="unknown merge"):
        Bidirectional(Recurrent(cell64("rnn")), Recurrent(cell64("rnn"), reverse=True), "avg")


@pytest.mark.parametrize(
    ("kind", "num_layers", "bidirectional", "merge"),
    [("lstm", 3, False, "concat"), ("mgu", 2, True, "concat"), ("lstm", 2, True, "sum")],
)
def test_stack_matches_reference(
    kind: str, num_layers: int, bidirectional: bool, merge: str
) -> None:
    stack = stack64(kind, 21, num_layers=num_layers, bidirectional=bidirectional, merge=merge)
    x = inputs(22)
    y, aux = stack(jnp.asarray(x), lengths=jnp.asarray(LENGTHS))
    y_ref, outs_ref, carries_ref = ref.run_stack(
        kind, stack_params(stack), x, bidirectional=bidirectional, merge=merge, lengths=LENGTHS
    )
    assert y.shape == (B, T, stack.output_size)
    assert_tree_close(y, y_ref)
    assert_tree_close(aux["hidden_states"], outs_ref)
    assert_tree_close(aux["final_carry"], carries_ref)
    top = stack.top_hidden(aux["final_carry"])
    if bidirectional:
        cf, cb = carries_ref[-1]
        top_ref = np.concatenate([ref.hidden(kind, cf), ref.hidden(kind, cb)], axis=-1)
    else:
        top_ref = ref.hidden(kind, carries_ref[-1])
    np.testing.assert_allclose(np.asarray(top), top_ref, rtol=1e-11, atol=1e-12)


def test_carry_chaining_equals_one_run() -> None:
    """Running T steps = running T1 steps, then T - T1 more from the chained final carry.

    Row 0 spans both chunks, row 1 ends exactly at the split (length 0 in the second chunk),
    row 2 ends inside the first chunk."""
    stack = stack64("lstm", 23, num_layers=2)
    x, t1 = jnp.asarray(inputs(24)), 4
    c0 = [to_jax(random_carry("lstm", 25 + i)) for i in range(2)]
    lengths = jnp.asarray(LENGTHS)
    y, aux = stack(x, lengths=lengths, initial_carry=c0)
    l1, l2 = jnp.minimum(lengths, t1), jnp.clip(lengths - t1, 0, T - t1)
    y1, aux1 = stack(x[:, :t1], lengths=l1, initial_carry=c0)
    y2, aux2 = stack(x[:, t1:], lengths=l2, initial_carry=aux1["final_carry"])
    assert_tree_close(jnp.concatenate([y1, y2], axis=1), y, rtol=1e-12, atol=1e-14)
    assert_tree_close(aux2["final_carry"], aux["final_carry"], rtol=1e-12, atol=1e-14)
    y_ref, _, c_ref = ref.run_stack(
        "lstm", stack_params(stack), np.asarray(x), initial_carry=to_np(c0), lengths=LENGTHS
    )
    assert_tree_close(y, y_ref)
    assert_tree_close(aux["final_carry"], c_ref)


# -- the scan itself ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm", "gru", "mgu"])
def test_hoisted_projection_equals_naive_loop(kind: str) -> None:
    cell = cell64(kind, seed=26)
    x = jnp.asarray(inputs(27))
    c0 = to_jax(random_carry(kind, 28))
    y, c = Recurrent(cell)(x, initial_carry=c0)
    carry, ys, params = c0, [], cell.recurrent_params()
    for t in range(T):
        carry, h = cell.step(params, carry, cell.project(x[:, t]))
        ys.append(h)
    assert_tree_close(y, jnp.stack(ys, axis=1), rtol=1e-13, atol=1e-14)
    assert_tree_close(c, carry, rtol=1e-13, atol=1e-14)


def test_unroll_and_remat_match_default() -> None:
    cell = cell64("rnn", seed=31)
    x = jnp.asarray(inputs(29, t=5))  # 5 is not a multiple of unroll=4
    lengths = jnp.asarray([5, 3, 2])
    g = jnp.asarray(np.random.default_rng(30).standard_normal((B, 5, H)))

    def loss(m: Recurrent) -> jax.Array:
        y, c = m(x, lengths=lengths)
        return jnp.sum(g * y) + jnp.sum(c**2)

    results = []
    for opts in ({}, {"unroll": 4}, {"remat": True}):
        f, params = params_loss(Recurrent(cell, **opts), loss)
        value, grads = jax.jit(jax.value_and_grad(f))(params)
        results.append((value, nnx.to_pure_dict(grads)))
    for value, grads in results[1:]:
        np.testing.assert_allclose(value, results[0][0], rtol=1e-12)
        assert_tree_close(grads, results[0][1], rtol=1e-10, atol=1e-12)
    # RNNStack hands the options to every layer and direction.
    stack = RNNStack("gru", F, H, 2, bidirectional=True, unroll=4, remat=True, rngs=nnx.Rngs(0))
    for layer in stack.layers:
        for direction in (layer.forward, layer.backward):
            assert direction.unroll == 4 and direction.remat is True


def count_eqns(jaxpr: Any) -> int:
    """Equations in a jaxpr, including those of sub-jaxprs (scan bodies, checkpoints, ...)."""
    n = 0
    for eqn in jaxpr.eqns:
        n += 1
        for v in eqn.params.values():
            for sub in v if isinstance(v, (tuple, list)) else (v,):
                if hasattr(sub, "eqns"):
                    n += count_eqns(sub)
                elif hasattr(sub, "jaxpr") and hasattr(sub.jaxpr, "eqns"):
                    n += count_eqns(sub.jaxpr)
    return n


def test_program_size_does_not_grow_with_sequence_length() -> None:
    layer = Recurrent(cell64("lstm", seed=32), reverse=True)
    graphdef, state = nnx.split(layer)

    def f(state: Any, x: jax.Array, lengths: jax.Array) -> jax.Array:
        y, c = nnx.merge(graphdef, state)(x, lengths=lengths)
        return jnp.sum(y) + jnp.sum(c[0])

    def naive(state: Any, x: jax.Array) -> jax.Array:  # a Python loop over time, for contrast
        cell = nnx.merge(graphdef, state).cell
        carry, params = cell.initial_carry(x.shape[0]), cell.recurrent_params()
        for t in range(x.shape[1]):
            carry, _ = cell.step(params, carry, cell.project(x[:, t]))
        return jnp.sum(carry[1])

    def sizes(fn: Any, t: int) -> tuple[int, int]:
        args = (state, jnp.zeros((2, t, F)), jnp.asarray([t, t // 2]))[: 3 if fn is f else 2]
        for transform in (lambda g: g, jax.grad):
            jaxpr = jax.make_jaxpr(transform(fn))(*args).jaxpr
        hlo = jax.jit(fn).lower(*args).as_text()
        return count_eqns(jaxpr), len(hlo.splitlines())

    eqns_10, lines_10 = sizes(f, 10)
    eqns_1000, lines_1000 = sizes(f, 1000)
    assert eqns_10 == eqns_1000  # the gradient program's equation count is T-independent
    assert lines_10 == lines_1000  # and so is the lowered HLO
    naive_10, _ = sizes(naive, 10)
    naive_20, _ = sizes(naive, 20)
    assert naive_20 > naive_10 + 50  # the measure does detect a loop unrolled over time


# -- the gradient probe ------------------------------------------------------------------------


@pytest.mark.parametrize("with_lengths", [False, True])
def test_h_perturb_zero_is_identity_and_nonzero_matches_reference(with_lengths: bool) -> None:
    stack = stack64("gru", 33, num_layers=2, bidirectional=True)
    x = inputs(34)
    lengths = LENGTHS if with_lengths else None
    rng = np.random.default_rng(35)
    eps = [(rng.standard_normal((B, T, H)), rng.standard_normal((B, T, H))) for _ in range(2)]
    zeros = jax.tree.map(np.zeros_like, eps)

    def run_perturbed(e: Any) -> Any:
        with perturbed(stack, e):
            return stack(jnp.asarray(x), lengths=to_jax(lengths))

    run = jax.jit(run_perturbed)
    params = stack_params(stack)
    for e in (zeros, eps):
        y, aux = run(to_jax(e))
        y_ref, _, c_ref = ref.run_stack(
            "gru", params, x, bidirectional=True, lengths=lengths, h_perturb=e
        )
        assert_tree_close(y, y_ref)
        assert_tree_close(aux["final_carry"], c_ref)
    y_plain, _, _ = ref.run_stack("gru", params, x, bidirectional=True, lengths=lengths)
    assert not np.allclose(y_plain, y_ref, atol=1e-3)  # the perturbation did something


def test_h_perturb_gradient_equals_explicit_bptt_for_tanh_rnn() -> None:
    layer = Recurrent(cell64("rnn", seed=36))
    x = inputs(37)
    h0 = random_carry("rnn", 38)
    g = np.random.default_rng(39).standard_normal((B, T, H))

    def loss(eps: jax.Array) -> jax.Array:
        y, _ = layer(jnp.asarray(x), initial_carry=jnp.asarray(h0), h_perturb=eps)
        return jnp.sum(g * y)

    dl_dh = jax.grad(loss)(jnp.zeros((B, T, H)))
    expected = ref.rnn_tanh_hidden_grads(ref.params_of(layer.cell), x, h0, g)
    np.testing.assert_allclose(np.asarray(dl_dh), expected, rtol=1e-11, atol=1e-12)
    assert np.abs(expected[:, 0]).max() > 1e-3  # the gradient reached the first step


def test_h_perturb_gradient_equals_carry_gradient_of_split_sequence() -> None:
    """dL/dh_t = G_t + d/dh [loss of steps t+1.. started from the carry with h_t := h]."""
    layer = Recurrent(cell64("lstm", seed=40))
    x = jnp.asarray(inputs(41))
    g = jnp.asarray(np.random.default_rng(42).standard_normal((B, T, H)))

    def loss(eps: jax.Array) -> jax.Array:
        return jnp.sum(g * layer(x, h_perturb=eps)[0])

    dl_dh = np.asarray(jax.jit(jax.grad(loss))(jnp.zeros((B, T, H))))
    for t in (0, 3):
        _, carry_t = layer(x[:, : t + 1])

        def rest(h: jax.Array, t: int = t, carry_t: Any = carry_t) -> jax.Array:
            y2, _ = layer(x[:, t + 1 :], initial_carry=layer.cell.set_hidden(carry_t, h))
            return jnp.sum(g[:, t + 1 :] * y2)

        expected = g[:, t] + jax.jit(jax.grad(rest))(layer.cell.hidden(carry_t))
        np.testing.assert_allclose(dl_dh[:, t], np.asarray(expected), rtol=1e-11, atol=1e-12)
    # Nothing follows the last step: its hidden state only feeds its own output.
    np.testing.assert_allclose(dl_dh[:, T - 1], np.asarray(g[:, T - 1]), rtol=1e-12)


def test_h_perturb_gradient_matches_reference_finite_differences_bidirectional_stack() -> None:
    stack = stack64("lstm", 43, num_layers=2, bidirectional=True, merge="sum")
    x, lengths = inputs(44, t=4, b=2), np.array([4, 2])
    g = np.random.default_rng(45).standard_normal((2, 4, H))
    zeros = [(jnp.zeros((2, 4, H)), jnp.zeros((2, 4, H))) for _ in range(2)]

    def loss(eps: list[Any]) -> jax.Array:
        with perturbed(stack, eps):
            y, _ = stack(jnp.asarray(x), lengths=jnp.asarray(lengths))
        return jnp.sum(g * y)

    grads = to_np(jax.jit(jax.grad(loss))(zeros))
    params = stack_params(stack)
    flat = np.zeros((2, 2, 2, 4, H))  # layer, direction, B, T, H

    def ref_loss(e: np.ndarray) -> float:
        eps = [(e[i, 0], e[i, 1]) for i in range(2)]
        y, _, _ = ref.run_stack(
            "lstm", params, x, bidirectional=True, merge="sum", lengths=lengths, h_perturb=eps
        )
        return float(np.sum(g * y))

    fd = ref.finite_difference(ref_loss, flat)
    np.testing.assert_allclose(np.stack([np.stack(p) for p in grads]), fd, rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(grads[0][0][1, 2:], 0.0)  # padded steps get no gradient
    assert np.abs(grads[0][1][:, 0]).max() > 1e-4  # the reverse direction's probe is live


# -- dropout between layers --------------------------------------------------------------------


def test_dropout_between_layers() -> None:
    stack = stack64("lstm", 46, num_layers=2, dropout=0.5)
    x = jnp.asarray(inputs(47))
    y_eval, aux_eval = stack(x)
    y_eval_rng, _ = stack(x, rng=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(y_eval_rng), np.asarray(y_eval))  # rng ignored

    train = jax.jit(lambda key: stack(x, train=True, rng=key))
    y_a, aux_a = train(jax.random.key(0))
    y_a2, _ = train(jax.random.key(0))
    y_b, _ = train(jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(y_a2), np.asarray(y_a))  # same rng, same output
    assert not np.allclose(np.asarray(y_a), np.asarray(y_eval), atol=1e-3)
    assert not np.allclose(np.asarray(y_a), np.asarray(y_b), atol=1e-3)
    # Dropout sits between layers: the first layer's outputs are untouched.
    np.testing.assert_allclose(
        np.asarray(aux_a["hidden_states"][0]),
        np.asarray(aux_eval["hidden_states"][0]),
        rtol=1e-12,
        atol=1e-14,
    )
    with pytest.raises(ValueError, match="rng"):
        stack(x, train=True)


def test_dropout_absent_for_single_layer_or_zero_rate() -> None:
    x = jnp.asarray(inputs(48))
    single = stack64("gru", 49, num_layers=1, dropout=0.5)
    y, _ = single(x)
    y_train, _ = single(x, train=True, rng=jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(y_train), np.asarray(y))
    no_rate = stack64("gru", 50, num_layers=2)
    y, _ = no_rate(x)
    y_train, _ = no_rate(x, train=True)  # no rng needed when there is nothing to drop
    np.testing.assert_array_equal(np.asarray(y_train), np.asarray(y))
    with pytest.raises(ValueError, match="dropout"):
        stack64("gru", 0, dropout=1.0)
    with pytest.raises(ValueError, match="num_layers"):
        stack64("gru", 0, num_layers=0)


# -- step-by-step decoding ---------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["lstm", "gru_reset_before"])
def test_step_iterated_equals_call(kind: str) -> None:
    stack = stack64(kind, 51, num_layers=2)
    x = jnp.asarray(inputs(52))
    c0 = [to_jax(random_carry(kind, 53 + i)) for i in range(2)]
    y, aux = stack(x, initial_carry=c0)
    carry, ys = c0, []
    for t in range(T):
        carry, y_t = stack.step(carry, x[:, t])
        ys.append(y_t)
    assert_tree_close(jnp.stack(ys, axis=1), y, rtol=1e-12, atol=1e-14)
    assert_tree_close(carry, aux["final_carry"], rtol=1e-12, atol=1e-14)


def test_step_rejects_bidirectional() -> None:
    stack = stack64("gru", 54, bidirectional=True)
    with pytest.raises(ValueError, match="unidirectional"):
        stack.step(stack.initial_carry(B), jnp.zeros((B, F)))
