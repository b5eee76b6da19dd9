"""Cells: equations vs the NumPy reference, gradients, init presets, registry, Flax parity."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.test_util import check_grads

from seqlab.cells import CELLS, INIT_PRESETS, Cell, make_cell
from seqlab.cells.base import recurrent_matmul
from seqlab.recurrence import RNNStack

try:
    from tests import reference as ref
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    import reference as ref

KINDS = ref.KINDS
F64 = {"param_dtype": jnp.float64}
F, H, B = 4, 4, 2  # F == H: a 2-layer stack reuses the shapes compiled for single cells


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def cell64(name: str, in_features: int = F, hidden: int = H, seed: int = 0, **kw: Any) -> Cell:
    return make_cell(name, in_features, hidden, rngs=nnx.Rngs(seed), param_dtype=jnp.float64, **kw)


def randomize(cell: Cell, seed: int = 0, scale: float = 0.6) -> Cell:
    """Replaces every parameter with N(0, scale^2) so biases and b_hn are non-trivial."""
    rng = np.random.default_rng(seed)
    for name in ("w_x", "w_h", "b", "b_hn"):
        if hasattr(cell, name):
            var = getattr(cell, name)
            var[...] = jnp.asarray(scale * rng.standard_normal(var[...].shape))
    return cell


def random_carry(kind: str, rng: np.random.Generator, batch: int = B, hidden: int = H) -> Any:
    if kind == "lstm":
        return (rng.standard_normal((batch, hidden)), 0.5 * rng.standard_normal((batch, hidden)))
    return 0.5 * rng.standard_normal((batch, hidden))


def to_jax(tree: Any) -> Any:
    return jax.tree.map(jnp.asarray, tree)


def assert_tree_close(a: Any, b: Any, **kw: Any) -> None:
    la, lb = jax.tree.leaves(a), jax.tree.leaves(b)
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(la, lb, strict=True):
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), **kw)


def flat_params(cell: Cell) -> dict[str, jax.Array]:
    return {"w_x": cell.w_x[...], "b": cell.b[...], **cell.recurrent_params()}


def step_scalar(cell: Cell, weights: dict[str, np.ndarray]):
    """A scalar function of one step (new carry and output) over (params, carry, x)."""

    def f(p: dict[str, jax.Array], carry: Any, x: jax.Array) -> jax.Array:
        rec = {k: v for k, v in p.items() if k not in ("w_x", "b")}
        new_carry, h = cell.step(rec, carry, x @ p["w_x"] + p["b"])
        c_last = jax.tree.leaves(new_carry)[0]  # c for the LSTM, h otherwise
        return jnp.sum(weights["h"] * h) + jnp.sum(weights["c"] * c_last**2)

    return f


def ref_step_scalar(kind: str, weights: dict[str, np.ndarray]):
    def f(p: ref.Params, carry: Any, x: np.ndarray) -> float:
        new_carry, h = ref.step(kind, p, carry, x)
        c_last = new_carry[0] if kind == "lstm" else new_carry
        return float(np.sum(weights["h"] * h) + np.sum(weights["c"] * c_last**2))

    return f


# -- equations ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.slow
def test_step_matches_reference(kind: str) -> None:
    cell = randomize(cell64(kind), seed=1)
    rng = np.random.default_rng(2)
    carry, x = random_carry(kind, rng), rng.standard_normal((B, F))
    new_carry, h = cell.step(cell.recurrent_params(), to_jax(carry), cell.project(jnp.asarray(x)))
    ref_carry, ref_h = ref.step(kind, ref.params_of(cell), carry, x)
    assert h.dtype == jnp.float64
    np.testing.assert_allclose(np.asarray(h), ref_h, rtol=1e-12, atol=1e-13)
    assert_tree_close(new_carry, ref_carry, rtol=1e-12, atol=1e-13)
    # The hidden accessor agrees with the output of the step.
    np.testing.assert_array_equal(np.asarray(cell.hidden(new_carry)), np.asarray(h))


@pytest.mark.parametrize("kind", KINDS)
def test_step_matches_reference_over_several_steps(kind: str) -> None:
    """Errors that vanish from a zero carry (e.g. a wrong recurrent block) show up here."""
    cell = randomize(cell64(kind), seed=3)
    p = ref.params_of(cell)
    rng = np.random.default_rng(4)
    carry = ref.zero_carry(kind, B, H)
    jcarry = cell.initial_carry(B)
    for _ in range(4):
        x = rng.standard_normal((B, F))
        carry, h = ref.step(kind, p, carry, x)
        jcarry, jh = cell.step(cell.recurrent_params(), jcarry, cell.project(jnp.asarray(x)))
        np.testing.assert_allclose(np.asarray(jh), h, rtol=1e-12, atol=1e-13)
    assert_tree_close(jcarry, carry, rtol=1e-12, atol=1e-13)


def test_gru_conventions_differ() -> None:
    """Reset-before and reset-after are different functions of the same weights."""
    after = randomize(cell64("gru"), seed=5)
    after.b_hn[...] = jnp.zeros(H)
    before = cell64("gru_reset_before")
    for name in ("w_x", "w_h", "b"):
        getattr(before, name)[...] = getattr(after, name)[...]
    rng = np.random.default_rng(6)
    h0, x = jnp.asarray(random_carry("gru", rng)), jnp.asarray(rng.standard_normal((B, F)))
    _, ya = after.step(after.recurrent_params(), h0, after.project(x))
    _, yb = before.step(before.recurrent_params(), h0, before.project(x))
    assert not np.allclose(np.asarray(ya), np.asarray(yb), atol=1e-3)
    assert "b_hn" not in before.recurrent_params() and not hasattr(before, "b_hn")


# -- gradients ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.slow
def test_step_gradients_check_grads(kind: str) -> None:
    cell = randomize(cell64(kind), seed=7)
    rng = np.random.default_rng(8)
    weights = {"h": rng.standard_normal((B, H)), "c": rng.standard_normal((B, H))}
    carry, x = random_carry(kind, rng), rng.standard_normal((B, F))
    if kind == "irnn":  # keep relu pre-activations away from the kink for finite differences
        x = np.abs(x)
        cell.w_x[...] = jnp.abs(cell.w_x[...])
        cell.b[...] = jnp.abs(cell.b[...]) + 0.5
        carry = np.abs(carry)
    f = jax.jit(step_scalar(cell, weights))
    check_grads(f, (flat_params(cell), to_jax(carry), jnp.asarray(x)), order=1, eps=1e-4)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.slow
def test_step_gradients_match_reference_finite_differences(kind: str) -> None:
    cell = randomize(cell64(kind), seed=9)
    rng = np.random.default_rng(10)
    weights = {"h": rng.standard_normal((B, H)), "c": rng.standard_normal((B, H))}
    carry, x = random_carry(kind, rng), rng.standard_normal((B, F))
    if kind == "irnn":
        x = np.abs(x)
        cell.w_x[...] = jnp.abs(cell.w_x[...])
        cell.b[...] = jnp.abs(cell.b[...]) + 0.5
        carry = np.abs(carry)
    p = ref.params_of(cell)
    g_p, g_c, g_x = jax.grad(step_scalar(cell, weights), argnums=(0, 1, 2))(
        flat_params(cell), to_jax(carry), jnp.asarray(x)
    )
    fr = ref_step_scalar(kind, weights)
    assert set(g_p) == set(p)
    for name in p:
        fd = ref.finite_difference(lambda v, name=name: fr({**p, name: v}, carry, x), p[name])
        np.testing.assert_allclose(np.asarray(g_p[name]), fd, rtol=1e-6, atol=1e-8, err_msg=name)
    if kind == "lstm":
        fd_c = ref.finite_difference(lambda v: fr(p, (v, carry[1]), x), carry[0])
        fd_h = ref.finite_difference(lambda v: fr(p, (carry[0], v), x), carry[1])
        np.testing.assert_allclose(np.asarray(g_c[0]), fd_c, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(np.asarray(g_c[1]), fd_h, rtol=1e-6, atol=1e-8)
    else:
        fd_c = ref.finite_difference(lambda v: fr(p, v, x), carry)
        np.testing.assert_allclose(np.asarray(g_c), fd_c, rtol=1e-6, atol=1e-8)
    fd_x = ref.finite_difference(lambda v: fr(p, carry, v), x)
    np.testing.assert_allclose(np.asarray(g_x), fd_x, rtol=1e-6, atol=1e-8)


def test_irnn_gradient_is_zero_where_relu_is_off() -> None:
    cell = cell64("irnn")
    cell.w_h[...] = jnp.eye(H)
    h0 = jnp.zeros((1, H))
    xp = jnp.asarray([[-1.0, 2.0, -0.5, 3.0]])
    g = jax.grad(lambda xp: jnp.sum(cell.step(cell.recurrent_params(), h0, xp)[1]))(xp)
    np.testing.assert_array_equal(np.asarray(g), [[0.0, 1.0, 0.0, 1.0]])


# -- init presets ------------------------------------------------------------------------------


def gate_blocks(w: jax.Array, gates: int) -> list[np.ndarray]:
    return np.split(np.asarray(w), gates, axis=-1)


@pytest.mark.parametrize("kind", KINDS)
def test_char_rnn_init_is_uniform_small(kind: str) -> None:
    Fc, Hc = 16, 16
    cell = cell64(kind, Fc, Hc, init="char_rnn")
    for name in ("w_x", "w_h"):
        w = np.asarray(getattr(cell, name)[...])
        assert np.all(np.abs(w) <= 0.08), name
        assert w.max() > 0.07 and w.min() < -0.07, name  # spans the range: not all zero
        assert abs(w.std() - 0.08 / np.sqrt(3)) < 0.01, name  # std of U(-a, a) is a/sqrt(3)
    b = np.asarray(cell.b[...])
    if kind == "lstm":
        i, f, g, o = gate_blocks(b, 4)
        np.testing.assert_array_equal(f, np.ones(Hc))
        rest = np.concatenate([i, g, o])
        assert np.all(np.abs(rest) <= 0.08) and np.abs(rest).max() > 0.05
    else:
        assert np.all(np.abs(b) <= 0.08) and np.abs(b).max() > 0.05
    if kind == "gru":
        b_hn = np.asarray(cell.b_hn[...])
        assert np.all(np.abs(b_hn) <= 0.08) and np.abs(b_hn).max() > 0.04


@pytest.mark.parametrize("kind", KINDS)
def test_default_init(kind: str) -> None:
    cell = cell64(kind)
    gates = ref.NUM_GATES[kind]
    if kind == "irnn":  # the irnn registry entry defaults to the irnn preset
        assert cell.init == "irnn"
        cell = make_cell("rnn", F, H, rngs=nnx.Rngs(0), activation="relu", **F64)
    assert cell.init == "default"
    blocks = gate_blocks(cell.w_h[...], gates)
    for k, w in enumerate(blocks):
        np.testing.assert_allclose(w.T @ w, np.eye(H), atol=1e-12, err_msg=f"block {k}")
    for k in range(1, gates):  # each gate gets its own orthogonal matrix
        assert not np.allclose(blocks[0], blocks[k])
    b = np.asarray(cell.b[...])
    if kind == "lstm":
        expected = np.zeros(4 * H)
        expected[H : 2 * H] = 1.0
        np.testing.assert_array_equal(b, expected)
    else:
        np.testing.assert_array_equal(b, np.zeros(gates * H))
    if kind == "gru":
        np.testing.assert_array_equal(np.asarray(cell.b_hn[...]), np.zeros(H))


def test_default_input_kernel_is_lecun_normal() -> None:
    Fd = 256
    w_x = np.asarray(cell64("rnn", Fd, H).w_x[...])
    assert abs(w_x.mean()) < 0.02
    assert abs(w_x.std() * np.sqrt(Fd) - 1.0) < 0.1  # LeCun normal: var = 1 / fan_in
    # Truncated at two std of the underlying normal, whose std is 1 / (0.8796 sqrt(fan_in)).
    assert np.abs(w_x).max() < 2.0 / 0.87962566 / np.sqrt(Fd) * 1.0001


@pytest.mark.parametrize("name", ["lstm", "mingru", "lru"])
@pytest.mark.slow
def test_rescale_input_fan_in_scales_the_same_draws(name: str) -> None:
    """fan_in=1 (a one-hot input's one active feature): the same draws times sqrt(in), so
    rows of unit variance; fixed-scale presets are left alone."""
    vocab = 65
    a, b = cell64(name, vocab, H), cell64(name, vocab, H)
    b.rescale_input_fan_in(1)
    np.testing.assert_allclose(b.w_x[...], a.w_x[...] * np.sqrt(vocab), rtol=1e-12)
    np.testing.assert_array_equal(b.b[...], a.b[...])
    if name == "lstm":  # LeCun with fan-in 1: std 1 (65 x 128 draws)
        assert abs(np.asarray(b.w_x[...]).std() - 1.0) < 0.05
        fixed = cell64(name, vocab, H, init="char_rnn")
        before = np.asarray(fixed.w_x[...])
        fixed.rescale_input_fan_in(1)
        np.testing.assert_array_equal(fixed.w_x[...], before)
    with pytest.raises(ValueError, match="fan_in must be >= 1"):
        b.rescale_input_fan_in(0)


@pytest.mark.parametrize("name", ["rnn", "lstm", "gru"])
@pytest.mark.slow
def test_torch_preset_is_pytorchs_default_init(name: str) -> None:
    """PyTorch: every weight U(+-1/sqrt(H)); the folded bias is b_ih + b_hh, two such draws."""
    hidden = 256
    gates = {"forget_bias": 0.0} if name == "lstm" else {}
    cell = cell64(name, 64, hidden, init="torch", **gates)
    k = hidden**-0.5
    for w in (np.asarray(cell.w_x[...]), np.asarray(cell.w_h[...])):
        assert np.abs(w).max() <= k and abs(w.std() - k / np.sqrt(3)) < 0.05 * k
    b = np.asarray(cell.b[...])
    if name == "lstm":  # forget_bias=0 sets the forget block; the others are random
        b = np.delete(b, np.s_[hidden : 2 * hidden])
    assert np.abs(b).max() <= 2 * k and abs(b.std() - k * np.sqrt(2 / 3)) < 0.1 * k


@pytest.mark.parametrize("forget_bias", [0.0, 2.5])
@pytest.mark.parametrize("init", [i for i in INIT_PRESETS if i != "chrono"])
def test_lstm_forget_bias_respected(init: str, forget_bias: float) -> None:
    cell = cell64("lstm", init=init, forget_bias=forget_bias)
    i, f, g, o = gate_blocks(cell.b[...], 4)
    np.testing.assert_array_equal(f, np.full(H, forget_bias))
    default = cell64("lstm", init=init)  # same seed: only the forget block differs
    di, _, dg, do = gate_blocks(default.b[...], 4)
    np.testing.assert_array_equal(np.concatenate([i, g, o]), np.concatenate([di, dg, do]))


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before"])
@pytest.mark.slow
def test_chrono_gate_biases(kind: str) -> None:
    """Tallec and Ollivier 2018: the keep-gate bias ~ log(U[1, T_max - 1]) (LSTM: forget,
    with the input gate at minus it; GRU: the update gate z of h' = (1 - z) n + z h)."""
    t_max = 500
    cell = make_cell(kind, F, 400, rngs=nnx.Rngs(3), init="chrono", chrono_max_len=t_max)
    blocks = gate_blocks(cell.b[...], cell.num_gates)
    keep = np.asarray(blocks[1])
    assert keep.min() >= 0.0 and keep.max() <= np.log(t_max - 1) + 1e-6
    # uniform in [1, T_max - 1] after exp: its mean is T_max / 2
    assert abs(np.exp(keep).mean() - t_max / 2) < 0.1 * t_max
    if kind == "lstm":
        np.testing.assert_array_equal(np.asarray(blocks[0]), -keep)
    else:
        assert np.all(np.asarray(blocks[0]) == 0) and np.all(np.asarray(blocks[2]) == 0)
    with pytest.raises(ValueError, match="chrono_max_len >= 2"):
        make_cell(kind, F, H, rngs=nnx.Rngs(0), init="chrono")


def test_gate_options_belong_to_their_cells() -> None:
    gru = make_cell("gru", F, H, rngs=nnx.Rngs(0), carry_bias=2.0)
    np.testing.assert_array_equal(np.asarray(gate_blocks(gru.b[...], 3)[1]), 2.0)
    for kind, option in [("gru", "forget_bias"), ("rnn", "carry_bias"), ("mgu", "forget_bias")]:
        with pytest.raises((ValueError, TypeError), match=option):
            make_cell(kind, F, H, rngs=nnx.Rngs(0), **{option: 1.0})
    with pytest.raises(ValueError, match="chrono"):
        make_cell("rnn", F, H, rngs=nnx.Rngs(0), init="chrono")


def test_irnn_cell_and_preset() -> None:
    cell = cell64("irnn")
    assert cell.activation == "relu" and cell.init == "irnn"
    np.testing.assert_array_equal(np.asarray(cell.w_h[...]), np.eye(H))
    np.testing.assert_array_equal(np.asarray(cell.b[...]), np.zeros(H))
    w_x = np.asarray(cell64("irnn", 16, 16).w_x[...])
    assert 0 < np.abs(w_x).max() < 0.01 and abs(w_x.std() - 0.001) < 0.0003
    # relu: negative pre-activations are cut, positive ones pass; identity recurrence keeps h.
    h0 = jnp.asarray([[1.0, 2.0, 0.0, 0.5]])
    xp = jnp.asarray([[0.0, -5.0, -1.0, 2.0]])
    _, h = cell.step(cell.recurrent_params(), h0, xp)
    np.testing.assert_array_equal(np.asarray(h), [[1.0, 0.0, 0.0, 2.5]])
    # The plain rnn keeps tanh under the irnn preset; gated cells get identity blocks.
    rnn = cell64("rnn", init="irnn")
    assert rnn.activation == "tanh"
    _, h_tanh = rnn.step(rnn.recurrent_params(), h0, xp)
    np.testing.assert_allclose(np.asarray(h_tanh), np.tanh(np.asarray(h0 + xp)), rtol=1e-12)
    lstm = cell64("lstm", init="irnn")
    for w in gate_blocks(lstm.w_h[...], 4):
        np.testing.assert_array_equal(w, np.eye(H))


def test_unknown_preset_raises() -> None:
    with pytest.raises(ValueError, match=r"unknown init preset 'nope'.*char_rnn"):
        cell64("lstm", init="nope")


def test_unknown_cell_raises() -> None:
    with pytest.raises(ValueError, match=r"unknown cell 'transformer'.*lstm"):
        cell64("transformer")
    with pytest.raises(ValueError, match=r"unknown cell"):
        RNNStack("transformer", F, H, rngs=nnx.Rngs(0))


def test_unknown_activation_raises_at_construction() -> None:
    with pytest.raises(ValueError, match=r"unknown activation 'softsign'.*tanh"):
        cell64("rnn", activation="softsign")


def test_invalid_sizes_raise() -> None:
    with pytest.raises(ValueError, match=">= 1"):
        cell64("gru", 0, H)
    with pytest.raises(ValueError, match=">= 1"):
        cell64("lstm", F, 0)


# -- registry ----------------------------------------------------------------------------------


def test_registry_names() -> None:
    assert set(CELLS) >= set(KINDS)


@pytest.mark.parametrize("name", sorted(CELLS))
@pytest.mark.slow
def test_every_registered_cell_runs_in_a_stack(name: str) -> None:
    stack = RNNStack(name, F, H, num_layers=1, cell_kwargs=F64, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(0), (B, 5, F), jnp.float64)
    lengths = jnp.asarray([5, 3])
    y, aux = stack(x, lengths=lengths)
    assert y.shape == (B, 5, H) and y.dtype == jnp.float64
    assert np.all(np.isfinite(np.asarray(y)))
    assert np.abs(np.asarray(y[:, :3])).max() > 0
    np.testing.assert_array_equal(np.asarray(y[1, 3:]), 0.0)
    init = stack.initial_carry(B)
    assert jax.tree.structure(aux["final_carry"]) == jax.tree.structure(init)
    for a, b in zip(jax.tree.leaves(aux["final_carry"]), jax.tree.leaves(init), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    if name in KINDS:  # the registry entry builds the cell the name promises
        p = ref.params_of(stack.layers[0].cell)
        y_ref, c_ref = ref.run_layer(name, p, np.asarray(x), lengths=np.asarray(lengths))
        np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-12, atol=1e-13)
        assert_tree_close(aux["final_carry"][0], c_ref, rtol=1e-12, atol=1e-13)


class LeakyCell(Cell):
    """A cell defined only in this test: h' = (1 - a) h + a tanh(x W_x + h W_h + b)."""

    num_gates = 1

    def __init__(self, in_features: int, hidden_size: int, *, leak: float = 0.5, **kw: Any):
        self.leak = leak
        super().__init__(in_features, hidden_size, **kw)

    def step(self, params: dict[str, jax.Array], carry: Any, xp: jax.Array) -> tuple[Any, Any]:
        n = jnp.tanh(xp + recurrent_matmul(carry, params["w_h"]))
        h = (1.0 - self.leak) * carry + self.leak * n
        return h, h


def test_adding_a_cell_is_one_registry_entry(monkeypatch: pytest.MonkeyPatch) -> None:
    with monkeypatch.context() as m:
        m.setitem(CELLS, "leaky", (LeakyCell, {"leak": 0.25}))
        cell = cell64("leaky")
        assert isinstance(cell, LeakyCell) and cell.leak == 0.25
        assert cell64("leaky", leak=0.75).leak == 0.75  # kwargs override registry defaults
        stack = RNNStack("leaky", F, H, num_layers=2, cell_kwargs=F64, rngs=nnx.Rngs(1))
        x = np.random.default_rng(0).standard_normal((B, 4, F))
        y, _ = stack(jnp.asarray(x))
        # Manual computation of the two-layer leaky recurrence.
        inp = x
        for layer in stack.layers:
            p = ref.params_of(layer.cell)
            h, outs = np.zeros((B, H)), []
            for t in range(inp.shape[1]):
                n = np.tanh(inp[:, t] @ p["w_x"] + h @ p["w_h"] + p["b"])
                h = 0.75 * h + 0.25 * n
                outs.append(h)
            inp = np.stack(outs, axis=1)
        np.testing.assert_allclose(np.asarray(y), inp, rtol=1e-12, atol=1e-13)
    assert "leaky" not in CELLS
    with pytest.raises(ValueError, match="unknown cell"):
        cell64("leaky")


# -- parity with Flax's NNX cells --------------------------------------------------------------


def run_our_cell(cell: Cell, x: np.ndarray, carry: Any) -> tuple[np.ndarray, Any]:
    ys = []
    params = cell.recurrent_params()
    for t in range(x.shape[1]):
        carry, h = cell.step(params, carry, cell.project(jnp.asarray(x[:, t])))
        ys.append(h)
    return np.stack([np.asarray(y) for y in ys], axis=1), carry


def flax_kwargs() -> dict[str, Any]:
    return {"dtype": jnp.float64, "param_dtype": jnp.float64, "rngs": nnx.Rngs(3)}


@pytest.mark.parametrize("flax_cls", ["OptimizedLSTMCell", "LSTMCell"])
def test_lstm_matches_flax(flax_cls: str) -> None:
    ours = randomize(cell64("lstm"), seed=11)
    theirs = getattr(nnx, flax_cls)(F, H, **flax_kwargs())
    if flax_cls == "OptimizedLSTMCell":
        theirs.dense_i.kernel[...] = ours.w_x[...]
        theirs.dense_h.kernel[...] = ours.w_h[...]
        theirs.dense_h.bias[...] = ours.b[...]
    else:  # one Linear per gate: input kernels ii, if_, ig, io; hidden hi, hf, hg, ho (+ bias)
        wx, wh, b = (gate_blocks(getattr(ours, n)[...], 4) for n in ("w_x", "w_h", "b"))
        for k, g in enumerate("ifgo"):
            getattr(theirs, "i" + g + ("_" if g == "f" else "")).kernel[...] = wx[k]
            getattr(theirs, "h" + g).kernel[...] = wh[k]
            getattr(theirs, "h" + g).bias[...] = b[k]
    rng = np.random.default_rng(12)
    x = rng.standard_normal((B, 6, F))
    c0 = to_jax(random_carry("lstm", rng))
    y_ref, c_ref = run_our_cell(ours, x, c0)
    c_flax, y_flax = nnx.RNN(theirs, return_carry=True)(jnp.asarray(x), initial_carry=c0)
    np.testing.assert_allclose(np.asarray(y_flax), y_ref, rtol=1e-12, atol=1e-13)
    assert_tree_close(c_flax, c_ref, rtol=1e-12, atol=1e-13)


def test_gru_reset_after_matches_flax() -> None:
    ours = randomize(cell64("gru"), seed=13)
    ours.b_hn[...] = jnp.zeros(H)  # Flax's GRUCell has no bias inside r * (h W_hn)
    theirs = nnx.GRUCell(F, H, **flax_kwargs())
    theirs.dense_i.kernel[...] = ours.w_x[...]
    theirs.dense_i.bias[...] = ours.b[...]
    theirs.dense_h.kernel[...] = ours.w_h[...]
    rng = np.random.default_rng(14)
    x = rng.standard_normal((B, 6, F))
    h0 = jnp.asarray(random_carry("gru", rng))
    y_ref, c_ref = run_our_cell(ours, x, h0)
    c_flax, y_flax = nnx.RNN(theirs, return_carry=True)(jnp.asarray(x), initial_carry=h0)
    np.testing.assert_allclose(np.asarray(y_flax), y_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.asarray(c_flax), np.asarray(c_ref), rtol=1e-12, atol=1e-13)


def test_simple_rnn_matches_flax() -> None:
    ours = randomize(cell64("rnn"), seed=15)
    theirs = nnx.SimpleCell(F, H, **flax_kwargs())
    theirs.dense_i.kernel[...] = ours.w_x[...]
    theirs.dense_i.bias[...] = ours.b[...]
    theirs.dense_h.kernel[...] = ours.w_h[...]
    rng = np.random.default_rng(16)
    x = rng.standard_normal((B, 6, F))
    h0 = jnp.asarray(random_carry("rnn", rng))
    y_ref, c_ref = run_our_cell(ours, x, h0)
    c_flax, y_flax = nnx.RNN(theirs, return_carry=True)(jnp.asarray(x), initial_carry=h0)
    np.testing.assert_allclose(np.asarray(y_flax), y_ref, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(np.asarray(c_flax), np.asarray(c_ref), rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("dtype", [None, jnp.bfloat16])
@pytest.mark.slow
def test_integer_ids_project_as_one_hot_rows(dtype: Any) -> None:
    """project(ids) == project(one_hot(ids)), values and w_x/b gradients; ids outside the
    vocabulary give the zero row a one-hot of them gives."""
    V = 11
    cell = make_cell("lstm", V, 5, dtype=dtype, rngs=nnx.Rngs(0))
    ids = jnp.asarray(np.random.default_rng(0).integers(-2, V + 2, (3, 7)), jnp.int32)
    onehot = jax.nn.one_hot(ids, V)
    np.testing.assert_allclose(cell.project(ids), cell.project(onehot), rtol=1e-6, atol=1e-6)
    oob = (ids < 0) | (ids >= V)
    assert bool(oob.any())
    np.testing.assert_array_equal(
        np.asarray(cell.project(ids))[np.asarray(oob)],
        np.broadcast_to(np.asarray(cell.b[...]), (int(oob.sum()), cell.b.shape[0])),
    )

    def grads(x):
        g = nnx.grad(lambda c: jnp.sum(jnp.sin(c.project(x))))(cell)
        return g["w_x"][...], g["b"][...]

    tol = 1e-5 if dtype is None else 2e-2  # bf16: the matmul's transpose rounds sums in bf16
    for a, b in zip(grads(ids), grads(onehot), strict=True):
        np.testing.assert_allclose(
            np.asarray(a, np.float32), np.asarray(b, np.float32), rtol=tol, atol=tol
        )
