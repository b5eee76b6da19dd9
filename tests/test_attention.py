"""Causal self-attention (seqlab/cells/attention.py) against a float64 NumPy reference written
from its equations, a finite-difference gradient check, and the key/value window carry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.cells import CausalSelfAttention, default_block, mixer_names, provides
from tests.reference import finite_difference


def np_rotary(x: np.ndarray, pos: np.ndarray, base: float = 10_000.0) -> np.ndarray:
    """RoFormer's rotation of channel pairs (i, i + d/2) by pos * base^(-2i/d); x (T, d)."""
    d = x.shape[-1]
    out = np.empty_like(x)
    for t in range(x.shape[0]):
        for i in range(d // 2):
            a = pos[t] * base ** (-2.0 * i / d)
            c, s = np.cos(a), np.sin(a)
            out[t, i] = x[t, i] * c - x[t, i + d // 2] * s
            out[t, i + d // 2] = x[t, i] * s + x[t, i + d // 2] * c
    return out


def np_attention(
    x: np.ndarray, w: np.ndarray, b: np.ndarray, heads: int, window: int, rotate: bool = True
):
    """softmax(q k^T / sqrt(d) + mask) v per head, one example x (T, F); mask: j <= t and
    j > t - window (else -inf); ``rotate``: rotary q and k (else as projected)."""
    T = x.shape[0]
    H = w.shape[1] // 3
    d = H // heads
    qkv = x @ w + b
    pos = np.arange(T)
    out = np.zeros((T, H))
    for n in range(heads):
        q, k = qkv[:, n * d : (n + 1) * d], qkv[:, H + n * d : H + (n + 1) * d]
        if rotate:
            q, k = np_rotary(q, pos), np_rotary(k, pos)
        v = qkv[:, 2 * H + n * d : 2 * H + (n + 1) * d]
        mask = np.array([[0.0 if t - window < j <= t else -np.inf for j in range(T)] for t in pos])
        s = q @ k.T / np.sqrt(d) + mask
        p = np.exp(s - s.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        out[:, n * d : (n + 1) * d] = p @ v
    return out


def make(F=5, H=8, heads=2, window=4, dtype=jnp.float64, seed=0):
    return CausalSelfAttention(
        F, H, num_heads=heads, window=window, param_dtype=dtype, rngs=nnx.Rngs(seed)
    )


def params(m):
    return np.asarray(m.qkv.kernel[...]), np.asarray(m.qkv.bias[...])


# jax.nn.dot_product_attention takes its softmax in float32 whatever the input type (its
# _dot_product_attention_core), so float64 agreement is to float32's rounding, 1e-6 relative.
TOL = {"rtol": 2e-6, "atol": 1e-7}


@pytest.mark.parametrize("window", [3, 16])  # a sliding window inside T, and the full prefix
@pytest.mark.slow
def test_matches_numpy_reference_float64(window):
    with jax.enable_x64(True):
        m = make(window=window)
        x = np.random.default_rng(0).normal(size=(2, 7, 5))
        y, _ = m(jnp.asarray(x))
        w, b = params(m)
        for i in range(2):
            ref = np_attention(x[i], w, b, heads=2, window=window)
            np.testing.assert_allclose(np.asarray(y[i]), ref, **TOL)


@pytest.mark.slow
def test_gradient_matches_finite_differences_of_the_reference():
    """jax.grad of the module against central differences of the float64 NumPy reference,
    w.r.t. the inputs and the q/k/v kernel."""
    with jax.enable_x64(True):
        m = make(F=3, H=4, heads=1, window=3)
        x = np.random.default_rng(1).normal(size=(1, 4, 3))
        r = np.random.default_rng(2).normal(size=(1, 4, 4))
        w, b = params(m)
        gx = jax.grad(lambda xx: jnp.sum(m(xx)[0] * r))(jnp.asarray(x))
        fx = lambda xx: float(np.sum(np_attention(xx[0], w, b, 1, 3) * r[0]))
        np.testing.assert_allclose(np.asarray(gx), finite_difference(fx, x), **TOL)
        graphdef, state = nnx.split(m)
        f = lambda st: jnp.sum(nnx.merge(graphdef, st)(jnp.asarray(x))[0] * r)
        gw = jax.grad(f)(state)["qkv"]["kernel"][...]
        fw = lambda ww: float(np.sum(np_attention(x[0], ww, b, 1, 3) * r[0]))
        np.testing.assert_allclose(np.asarray(gw), finite_difference(fw, w), **TOL)


@pytest.mark.slow
def test_steps_and_chunks_equal_one_sequence_past_the_window():
    """Token by token through the cache, and a prime then chunks, give the full sequence
    form's outputs, also beyond the window (where it slides)."""
    m = make(dtype=jnp.float32, window=4)
    x = jax.random.normal(jax.random.key(0), (2, 11, 5))
    full, last = m(x)
    carry, steps = m.initial_carry(2), []
    for t in range(11):
        carry, y = m.step(carry, x[:, t])
        steps.append(y)
    np.testing.assert_allclose(np.stack(steps, 1), full, rtol=1e-5, atol=1e-5)
    y1, c = m(x[:, :6])
    y2, c = m(x[:, 6:], initial_carry=c)
    np.testing.assert_allclose(np.concatenate([y1, y2], 1), full, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(c), jax.tree.leaves(last), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_lengths_leave_the_window_after_the_last_valid_token():
    m = make(dtype=jnp.float32, window=3)
    x = jax.random.normal(jax.random.key(1), (2, 6, 5))
    _, c = m(x, lengths=jnp.array([6, 4]))
    _, short = m(x[1:, :4])
    assert int(c["pos"][1]) == 4
    np.testing.assert_allclose(c["k"][1], short["k"][0], rtol=1e-6, atol=1e-6)


def test_rejects_bad_shapes_and_perturbations():
    with pytest.raises(ValueError, match="even head width"):
        make(H=6, heads=2)
    with pytest.raises(ValueError, match="window >= 1"):
        make(window=0)
    with pytest.raises(ValueError, match="no recurrent state"):
        make(dtype=jnp.float32)(jnp.zeros((1, 2, 5)), h_perturb=jnp.zeros((1, 2, 8)))


def test_registry_answers_for_attention_and_cells():
    assert "attention" in mixer_names() and "lstm" in mixer_names()
    assert provides("attention") >= {"sequence", "step", "parallel", "window"}
    assert "state" not in provides("attention") and "state" in provides("lstm")
    assert default_block("attention") == "residual" and default_block("lstm") == "none"
    assert default_block("lru") == "residual"


@pytest.mark.slow
def test_learned_positions_match_the_reference_without_rotation():
    """positions=learned: q, k, v from (x + P[p]) W + b, no rotary; the table is (window, F)
    drawn N(0, 0.02); a step-by-step decode equals the sequence form; rotary stays default."""
    assert make().positions == "rotary" and not hasattr(make(), "pos_table")
    with jax.enable_x64(True):
        m = CausalSelfAttention(
            5, 8, num_heads=2, window=16, positions="learned", param_dtype=jnp.float64,
            rngs=nnx.Rngs(0),
        )  # fmt: skip
        table = np.asarray(m.pos_table[...])
        assert table.shape == (16, 5) and 0.005 < table.std() < 0.05
        m.pos_table[...] = jnp.asarray(np.random.default_rng(3).normal(size=(16, 5)))
        x = np.random.default_rng(0).normal(size=(2, 7, 5))
        y, _ = m(jnp.asarray(x))
        w, b = params(m)
        table = np.asarray(m.pos_table[...])
        for i in range(2):
            ref = np_attention(x[i] + table[:7], w, b, heads=2, window=16, rotate=False)
            np.testing.assert_allclose(np.asarray(y[i]), ref, **TOL)
        carry, steps = m.initial_carry(2), []
        for t in range(7):
            carry, s = m.step(carry, jnp.asarray(x[:, t]))
            steps.append(s)
        np.testing.assert_allclose(np.stack(steps, 1), y, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="positions must be one of"):
        CausalSelfAttention(5, 8, num_heads=2, window=4, positions="alibi", rngs=nnx.Rngs(0))
