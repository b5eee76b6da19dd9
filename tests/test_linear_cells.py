"""The linear recurrences (LRU, minGRU, minLSTM, RG-LRU) against float64 NumPy references
written from each paper's equations, on every engine: the sequential scan, the associative
scan, the chunked scan; with a nonzero initial state, lengths and reverse; gradients equal
across engines and against finite differences of the reference."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.cells import make_cell
from seqlab.recurrence import Recurrent

LINEAR = ("lru", "mingru", "minlstm", "rglru")
F, H, B, T = 3, 4, 3, 9
LENGTHS = np.array([9, 5, 1])


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def g(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x + 0.5, sigmoid(x))


def ref_step(kind: str, p: dict[str, np.ndarray], h: np.ndarray, x: np.ndarray):
    """One step of each paper's recurrence, straight from its equations: (h', y)."""
    k = x @ p["w_x"] + p["b"]
    if kind == "mingru":  # Feng et al. 2024, eq. (minGRU) with g
        k_z, k_h = np.split(k, 2, axis=-1)
        z = sigmoid(k_z)
        h = (1 - z) * h + z * g(k_h)
        return h, h
    if kind == "minlstm":
        k_f, k_i, k_h = np.split(k, 3, axis=-1)
        f, i = sigmoid(k_f), sigmoid(k_i)
        h = f / (f + i) * h + i / (f + i) * g(k_h)
        return h, h
    if kind == "rglru":  # De et al. 2024: a_t = a^(c r_t), a = sigmoid(Lambda), c = 8
        k_r, k_i, v = np.split(k, 3, axis=-1)
        a_t = sigmoid(p["a_param"]) ** (8.0 * sigmoid(k_r))
        h = a_t * h + np.sqrt(1 - a_t**2) * (sigmoid(k_i) * v)
        return h, h
    # Orvieto et al. 2023: lambda = exp(-exp(nu) + i exp(theta)), y = Re(C h) + D x
    lam = np.exp(-np.exp(p["nu_log"]) + 1j * np.exp(p["theta_log"]))
    bx = k[..., :H] + 1j * k[..., H : 2 * H]
    h = lam * h + np.exp(p["gamma_log"]) * bx
    y = np.real(h @ (p["c_re"] + 1j * p["c_im"])) + k[..., 2 * H :]
    return h, y


def ref_run(kind, p, xs, h0, lengths, reverse=False):
    """(outputs (B, T, H), final state): padded steps inert and zero, reverse reads each
    valid prefix backwards."""
    ys = np.zeros((B, T, H))
    h_last = np.array(h0)
    for b in range(B):
        h = np.array(h0[b])
        order = range(lengths[b])
        for t in reversed(order) if reverse else order:
            h, ys[b, t] = ref_step(kind, p, h, xs[b, t])
        h_last[b] = h
    return ys, h_last


def make(kind: str, seed: int = 0) -> Any:
    cell = make_cell(kind, F, H, rngs=nnx.Rngs(seed), param_dtype=jnp.float64)
    rng = np.random.default_rng(seed)  # biases away from zero, so every term matters
    cell.b = nnx.Param(jnp.asarray(0.3 * rng.standard_normal(cell.b[...].shape)))
    return cell


def params_np(cell: Any) -> dict[str, np.ndarray]:
    p = {"w_x": np.asarray(cell.w_x[...]), "b": np.asarray(cell.b[...])}
    return p | {k: np.asarray(v) for k, v in cell.recurrent_params().items()}


def h0_for(cell: Any, seed: int) -> jax.Array:
    rng = np.random.default_rng(seed)
    h0 = 0.3 + 0.5 * rng.random((B, H))  # nonzero (positive: valid for every cell)
    if jnp.iscomplexobj(cell.initial_carry(1)):
        h0 = h0 + 1j * 0.4 * rng.standard_normal((B, H))
    return jnp.asarray(h0)


ENGINES = [("scan", 0), ("parallel", 0), ("parallel", 4)]  # sequential, associative, chunked


@pytest.mark.parametrize("kind", LINEAR)
@pytest.mark.parametrize("reverse", [False, True])
@pytest.mark.slow
def test_matches_the_papers_equations_on_every_engine(kind: str, reverse: bool) -> None:
    cell = make(kind, seed=LINEAR.index(kind))
    xs = np.random.default_rng(1).standard_normal((B, T, F))
    h0 = h0_for(cell, 2)
    y_ref, h_ref = ref_run(kind, params_np(cell), xs, np.asarray(h0), LENGTHS, reverse)
    for backend, chunk in ENGINES:
        layer = Recurrent(cell, backend=backend, chunk_size=chunk, reverse=reverse)
        assert layer.engine == backend
        y, h = layer(jnp.asarray(xs), lengths=jnp.asarray(LENGTHS), initial_carry=h0)
        np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(np.asarray(h), h_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("kind", LINEAR)
@pytest.mark.slow
def test_gradients_agree_across_engines_and_with_finite_differences(kind: str) -> None:
    cell = make(kind, seed=5)
    xs = jnp.asarray(np.random.default_rng(6).standard_normal((B, T, F)))
    h0 = h0_for(cell, 7)
    w = jnp.asarray(np.random.default_rng(8).standard_normal((B, T, H)))
    graphdef, params, rest = nnx.split(cell, nnx.Param, ...)

    def loss(p, x, h, backend, chunk):
        layer = Recurrent(nnx.merge(graphdef, p, rest), backend=backend, chunk_size=chunk)
        y, c = layer(x, lengths=jnp.asarray(LENGTHS), initial_carry=h)
        return jnp.sum(w * jnp.sin(y)) + jnp.sum(jnp.abs(c) ** 2)

    grads = {e: jax.grad(loss, argnums=(0, 1, 2))(params, xs, h0, *e) for e in ENGINES}
    for e in ENGINES[1:]:
        for a, b in zip(jax.tree.leaves(grads[e]), jax.tree.leaves(grads[ENGINES[0]]), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-11)
    # d loss / d x at a few entries, against central differences of the NumPy reference
    p_np = params_np(cell)

    def ref_loss(x: np.ndarray) -> float:
        y, c = ref_run(kind, p_np, x, np.asarray(h0), LENGTHS)
        return float(np.sum(np.asarray(w) * np.sin(y)) + np.sum(np.abs(c) ** 2))

    x_np, gx = np.asarray(xs), np.asarray(grads[("parallel", 0)][1])
    for idx in [(0, 0, 0), (1, 3, 2), (2, 0, 1), (0, 8, 2)]:
        e = np.zeros_like(x_np)
        e[idx] = 1e-6
        fd = (ref_loss(x_np + e) - ref_loss(x_np - e)) / 2e-6
        np.testing.assert_allclose(gx[idx], fd, rtol=1e-5, atol=1e-8)
    assert np.all(gx[2, 1:] == 0)  # padded steps get no gradient


@pytest.mark.parametrize("kind", ("mingru", "minlstm"))
@pytest.mark.slow
def test_log_space_equals_linear_space(kind: str) -> None:
    """The positive cells combine in log space; a (zero) probe perturbation switches the
    engine to linear space: the numbers agree."""
    cell = make(kind, seed=9)
    xs = jnp.asarray(np.random.default_rng(10).standard_normal((B, 64, F)) * 3)
    layer = Recurrent(cell, backend="parallel")
    y_log, h_log = layer(xs, initial_carry=h0_for(cell, 11))
    y_lin, h_lin = layer(xs, initial_carry=h0_for(cell, 11), h_perturb=jnp.zeros((B, 64, H)))
    np.testing.assert_allclose(np.asarray(y_log), np.asarray(y_lin), rtol=1e-10)
    np.testing.assert_allclose(np.asarray(h_log), np.asarray(h_lin), rtol=1e-10)


@pytest.mark.parametrize("kind", LINEAR)
@pytest.mark.slow
def test_padding_is_inert(kind: str) -> None:
    cell = make(kind, seed=12)
    layer = Recurrent(cell, backend="parallel", chunk_size=4)
    x = np.random.default_rng(13).standard_normal((1, 5, F))
    garbage = np.concatenate([x, 100 * np.ones((1, 6, F))], axis=1)
    y_short, h_short = layer(jnp.asarray(x))
    y_pad, h_pad = layer(jnp.asarray(garbage), lengths=jnp.asarray([5]))
    np.testing.assert_allclose(np.asarray(y_pad[:, :5]), np.asarray(y_short), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(h_pad), np.asarray(h_short), rtol=1e-12)
    assert np.all(np.asarray(y_pad[:, 5:]) == 0)


def test_chunked_compile_size_does_not_grow_with_t() -> None:
    cell = make("rglru", seed=14)

    def size(t: int, chunk: int) -> int:
        layer = Recurrent(cell, backend="parallel", chunk_size=chunk)
        f = jax.jit(lambda x: layer(x)[0])
        return len(f.lower(jnp.zeros((2, t, F))).as_text())

    assert size(4096, 64) == pytest.approx(size(256, 64), rel=0.02)
    # one associative scan over all of T grows with log T only (about 2x from 2^6 to 2^12)
    assert size(4096, 0) < 2.5 * size(64, 0)


def test_fast_picks_the_platforms_faster_engine() -> None:
    cell = make("mingru")
    expected = "scan" if jax.default_backend() == "cpu" else "parallel"
    assert Recurrent(cell, backend="fast").engine == expected
    with pytest.raises(ValueError, match="for linear recurrences"):
        Recurrent(make_cell("gru", F, H, rngs=nnx.Rngs(0)), backend="parallel")


def test_complex_state_probe_view_round_trips() -> None:
    cell = make("lru")
    h = h0_for(cell, 15)
    view = cell.hidden(h)
    assert view.shape == (B, 2 * H) and view.dtype == jnp.float64
    np.testing.assert_array_equal(np.asarray(cell.set_hidden(None, view)), np.asarray(h))


def test_linear_cells_reject_options_they_do_not_have() -> None:
    with pytest.raises(ValueError, match="has its own initialization"):
        make_cell("mingru", F, H, rngs=nnx.Rngs(0), init="char_rnn")
    with pytest.raises(ValueError, match="takes no options"):
        make_cell("mingru", F, H, rngs=nnx.Rngs(0), r_min=0.5)
    with pytest.raises(ValueError, match="r_min <= r_max"):
        make_cell("rglru", F, H, rngs=nnx.Rngs(0), r_min=0.99, r_max=0.9)
    cell = make_cell("lru", F, H, rngs=nnx.Rngs(0), r_min=0.5, r_max=0.6)
    mod = np.exp(-np.exp(np.asarray(cell.nu_log[...])))
    assert np.all((mod >= 0.5 - 1e-6) & (mod <= 0.6 + 1e-6))  # the ring
