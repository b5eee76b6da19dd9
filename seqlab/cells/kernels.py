"""The contract between a cell and the fast recurrence engine, plus helpers cells share.

A cell that has fast kernels returns a ``Kernels`` from ``Cell.kernels()``. The forward
kernel is the cell's *only* statement of its step math: ``Cell.step`` (decoding, sampling,
the autodiff engine) calls it too, so the fast and autodiff paths cannot drift apart. The
backward kernel is its hand-written derivative, checked against autodiff of the forward in
float64 for every cell (tests/test_fast.py).

Per-step arrays are (B, F); sequences given to ``wgrad`` are (T, B, F) (or batch-major
(B, T, F) -- ``wgrad`` contracts over both leading axes, so either order works).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

Array = jax.Array
Params = dict[str, Array]


class Kernels(NamedTuple):
    """A cell's step as pure functions, for ``seqlab.recurrence.fast``.

    prep(params) -> q: loop-invariant operands (kernel blocks and their transposes), made
        once per call from ``Cell.recurrent_params()``. Its 2-D entries are the recurrent
        matmuls' operands (``matmul_operands`` casts them to the compute dtype); fwd and
        bwd multiply by them through ``base.recurrent_matmul``.
    fwd(q, carry, xp) -> (new_carry, h, res): one step from the projected input, plus the
        raw values its backward needs (e.g. the LSTM's gate activations).
    bwd(q, res, prev, cur, d_new) -> (d_prev, dxp): prev/cur are the carries entering and
        leaving the step; d_new's dh already includes the step output's gradient.
    wres(res) -> what ``wgrad`` needs of res (per step or for the whole sequence).
    wgrad(params, h_prev, wres, dxp) -> the recurrent parameters' gradients from all steps
        at once (one big matmul instead of one small one per step).
    """

    prep: Callable[[Params], Params]
    fwd: Callable[..., Any]
    bwd: Callable[..., Any]
    wres: Callable[[tuple[Array, ...]], tuple[Array, ...]]
    wgrad: Callable[..., Params]


def cat(*xs: Array) -> Array:
    return jnp.concatenate(xs, axis=-1)


def split(x: Array, n: int) -> list[Array]:
    return jnp.split(x, n, axis=-1)


def sum_outer(a: Array, d: Array) -> Array:
    """sum over the two leading axes of a^T d for (T, B, H) and (T, B, K): one (H, K) matmul."""
    return jax.lax.dot_general(a, d, (((0, 1), (0, 1)), ((), ())))


def sigmoid_via_tanh(t: Array) -> Array:
    """sigmoid(x) from t = tanh(x / 2): one transcendental serves every gate of a cell
    (XLA:CPU fuses one tanh over all gates into one pass instead of one per gate)."""
    return 0.5 + 0.5 * t


def whole(p: Params) -> Params:
    """prep for one fused recurrent kernel: W and its transpose (for the backward)."""
    return {"w": p["w_h"], "t": p["w_h"].T}


def two_blocks(split_at: int) -> Callable[[Params], Params]:
    """prep for kernels whose second block multiplies a gated state: (H, a*H) and (H, rest)."""

    def prep(p: Params) -> Params:
        w = p["w_h"]
        cut = split_at * w.shape[0]
        w1, w2 = w[:, :cut], w[:, cut:]
        return {"w1": w1, "t1": w1.T, "w2": w2, "t2": w2.T}

    return prep


def matmul_operands(q: Params, dtype: Any) -> Params:
    """q with its matrices in the compute ``dtype`` (None: unchanged); vectors (biases,
    scales) keep the parameter dtype. With float32 parameters and ``dtype=bfloat16`` the
    recurrent matmuls run in bfloat16, accumulated in float32 (``recurrent_matmul``)."""
    if dtype is None:
        return q
    return {k: v.astype(dtype) if v.ndim == 2 else v for k, v in q.items()}


def no_res(res: tuple[Array, ...]) -> tuple[Array, ...]:
    return ()


def first_res(res: tuple[Array, ...]) -> tuple[Array, ...]:
    return (res[0],)


def wgrad_whole(p: Params, h_prev: Array, wres: tuple[Array, ...], dxp: Array) -> Params:
    return {"w_h": sum_outer(h_prev, dxp)}


def gated_wgrad(split_at: int) -> Callable[..., Params]:
    """dW for kernels whose second block multiplies ``gate * h_prev`` (gate in wres)."""

    def wgrad(p: Params, h_prev: Array, wres: tuple[Array, ...], dxp: Array) -> Params:
        (gate,) = wres
        d1, d2 = jnp.split(dxp, [split_at * gate.shape[-1]], axis=-1)
        return {"w_h": cat(sum_outer(h_prev, d1), sum_outer(gate * h_prev, d2))}

    return wgrad
