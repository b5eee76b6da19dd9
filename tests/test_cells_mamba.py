"""Mamba's S6 against a float64 NumPy reference of Gu & Dao's recurrence (Algorithm 2,
zero-order hold for A), with and without negative eigenvalues, on the sequential, parallel
and chunked engines; gradients against finite differences; its block: one call equals
step-by-step decoding and two chained halves, padding never enters the conv window."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.cells import make_cell
from seqlab.recurrence import RNNStack
from tests.cell_check import (
    B,
    T,
    check_engines,
    check_gradients,
    check_probe,
    params_np,
    random_carry,
    softplus,
)

H, N = 4, 3
ENGINES = [("scan", 0), ("parallel", 0), ("parallel", 3)]


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def make(negative: bool, seed: int = 0):
    cell = make_cell(
        "mamba",
        H,
        H,
        rngs=nnx.Rngs(seed),
        param_dtype=jnp.float64,
        state_size=N,
        negative_eigenvalues=negative,
    )
    rng = np.random.default_rng(seed)
    cell.b = nnx.Param(jnp.asarray(0.5 * rng.standard_normal(cell.b[...].shape)))
    cell.dt_bias = nnx.Param(jnp.asarray(rng.uniform(-1, 1, H)))  # Delta ~ 1: A matters
    return cell


def ref_step_for(negative: bool, p: dict):
    def step(h, u):
        z = u @ p["w_x"] + p["b"]
        r = p["dt_w"].shape[0]
        delta = softplus(z[:r] @ p["dt_w"] + p["dt_bias"])
        b_t, c_t = z[r : r + N], z[r + N :]
        a = np.exp(delta[:, None] * -np.exp(p["a_log"]))  # exp(Delta A), A = -exp(A_log)
        if negative:
            a = 2 * a - 1
        h = a * h.reshape(H, N) + (delta * u)[:, None] * b_t[None, :]
        return h.reshape(-1), h @ c_t + p["d_skip"] * u

    return step


@pytest.mark.parametrize("negative", [False, True])
@pytest.mark.slow
def test_matches_s6_on_every_engine(negative: bool) -> None:
    cell = make(negative, seed=1)
    xs = np.random.default_rng(2).standard_normal((B, T, H))
    step = ref_step_for(negative, params_np(cell))
    check_engines(cell, step, xs, random_carry(cell, 3), ENGINES, reverse=negative)


@pytest.mark.slow
def test_gradients_agree_across_engines_and_with_finite_differences() -> None:
    cell = make(True, seed=4)
    xs = np.random.default_rng(5).standard_normal((B, T, H))
    step = ref_step_for(True, params_np(cell))
    idxs = [(0, 0, 0), (1, 3, 2), (0, 6, 3)]
    check_gradients(cell, step, xs, random_carry(cell, 6), ENGINES, idxs)


def test_negative_eigenvalues_span_minus_one_to_one() -> None:
    for negative in (False, True):
        cell = make(negative)
        xs = jnp.asarray(np.random.default_rng(7).standard_normal((64, H)) * 3)
        a, _ = cell.coefficients(cell.recurrent_params(), cell.project(xs))
        a = np.asarray(a)
        assert np.all(np.abs(a) < 1)
        assert (a.min() < -0.5) == negative and (a.min() >= 0) == (not negative)


def test_probe_and_num_params() -> None:
    cell = make(False)
    check_probe(cell, np.random.default_rng(8).standard_normal((B, T, H)), backend="parallel")
    n = sum(int(x.size) for x in jax.tree.leaves(nnx.state(cell, nnx.Param)))
    r = 1  # dt rank ceil(H / 16)
    assert n == (H + 1) * (r + 2 * N) + H * N + r * H + H + H


@pytest.mark.slow
def test_block_sequence_equals_decoding_and_chained_halves() -> None:
    stack = RNNStack(
        "mamba",
        3,
        H,
        2,
        cell_kwargs={"param_dtype": jnp.float64, "state_size": N},
        backend="scan",
        rngs=nnx.Rngs(0),
    )
    assert stack.block == "mamba"
    x = jnp.asarray(np.random.default_rng(9).standard_normal((2, T, 3)))
    y, aux = stack(x)
    c, step = stack.initial_carry(2), nnx.jit(lambda s, c, x: s.step(c, x))
    for t in range(T):
        c, yt = step(stack, c, x[:, t])
        np.testing.assert_allclose(np.asarray(yt), np.asarray(y[:, t]), rtol=1e-10, atol=1e-12)
    y1, a1 = stack(x[:, :3])
    y2, a2 = stack(x[:, 3:], initial_carry=a1["final_carry"])
    np.testing.assert_allclose(np.asarray(jnp.concatenate([y1, y2], 1)), np.asarray(y), rtol=1e-10)
    for a, b in zip(
        jax.tree.leaves(a2["final_carry"]), jax.tree.leaves(aux["final_carry"]), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
    # padding: the final carry (state and conv window) is the short sequence's own
    garbage = x.at[:, 4:].set(100.0)
    y_pad, a_pad = stack(garbage, lengths=jnp.asarray([4, 4]))
    y_short, a_short = stack(x[:, :4])
    np.testing.assert_allclose(np.asarray(y_pad[:, :4]), np.asarray(y_short), rtol=1e-10)
    assert np.all(np.asarray(y_pad[:, 4:]) == 0)
    for a, b in zip(
        jax.tree.leaves(a_pad["final_carry"]), jax.tree.leaves(a_short["final_carry"]), strict=True
    ):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


def test_mamba_needs_its_width() -> None:
    with pytest.raises(ValueError, match="in_features"):
        make_cell("mamba", 3, H, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="Mamba's block"):
        RNNStack("gru", 3, H, block="mamba", rngs=nnx.Rngs(0))
