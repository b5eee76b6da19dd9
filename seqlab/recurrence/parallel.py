"""The parallel engine for linear recurrences h_t = a_t * h_{t-1} + b_t (``LinearCell``):
``jax.lax.associative_scan`` over time, or, with ``chunk > 0``, a sequential ``lax.scan``
over chunks of that many steps with an associative scan inside (memory bounded by the
chunk instead of T). Same semantics as the sequential engine (``scan.py``): lengths (padded
steps get a = 1, b = 0, so they leave the state alone), reverse, an initial state in and the
final state out, and the probe's perturbation, which for a linear recurrence is simply added
to b_t. Cells with ``log_space`` combine in log space (b_t > 0): h_t = A_t h_0 +
exp(logsumexp_s(log b_s + sum_{s<r<=t} log a_r)), with A_t = prod_{r<=t} a_r kept apart, so
any initial state works.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqlab.cells.base import Array, Carry
from seqlab.cells.linear import LinearCell
from seqlab.recurrence.scan import Loop, over_time


def _combine(x: tuple[Array, Array], y: tuple[Array, Array]) -> tuple[Array, Array]:
    """(a1, b1) then (a2, b2): h -> a2 (a1 h + b1) + b2."""
    return x[0] * y[0], y[0] * x[1] + y[1]


def _combine_log(x: tuple[Array, Array], y: tuple[Array, Array]) -> tuple[Array, Array]:
    return x[0] + y[0], jnp.logaddexp(y[0] + x[1], y[1])


def _states(a: Array, b: Array, h0: Array, log: bool) -> Array:
    """h_1..h_T (T, ...) from coefficients (T, ...) (logs when ``log``) and h_0."""
    if log:
        la, lb = jax.lax.associative_scan(_combine_log, (a, b), axis=0)
        return jnp.exp(lb) + jnp.exp(la) * h0
    aa, bb = jax.lax.associative_scan(_combine, (a, b), axis=0)
    return bb + aa * h0


def _coefficients(cell: LinearCell, params: dict, xs: Array, loop: Loop) -> tuple:
    """(a, b, log) for time-major projected inputs, padded steps made inert."""
    log = cell.log_space and loop.eps is None  # a perturbation may make b_t negative
    a, b = (cell.log_coefficients if log else cell.coefficients)(params, xs)
    a = jnp.broadcast_to(a, b.shape)
    if loop.eps is not None:
        b = b + cell.set_hidden(None, loop.eps).astype(b.dtype)
    if loop.mask is not None:
        m = loop.mask[..., None]
        a = jnp.where(m, a, jnp.zeros_like(a) if log else jnp.ones_like(a))
        b = jnp.where(m, b, jnp.full_like(b, -jnp.inf) if log else jnp.zeros_like(b))
    return a, b, log


def parallel_core(cell: LinearCell, xp: Array, carry: Carry, loop: Loop) -> tuple[Array, Carry]:
    """The states of every step at once (see the module doc and ``scan.over_time``)."""
    params = cell.recurrent_params()
    xs = jnp.swapaxes(xp, 0, 1)  # (T, B, F)
    a, b, log = _coefficients(cell, params, xs, loop)
    if loop.reverse:
        a, b = jnp.flip(a, 0), jnp.flip(b, 0)
    T = a.shape[0]
    chunk = loop.chunk if 0 < loop.chunk < T else T
    pad = -T % chunk
    if pad:  # inert steps at the end: the state passes through them unchanged
        fill_a = jnp.zeros if log else jnp.ones
        a = jnp.concatenate([a, fill_a((pad, *a.shape[1:]), a.dtype)])
        fill_b = jnp.full((pad, *b.shape[1:]), -jnp.inf if log else 0, b.dtype)
        b = jnp.concatenate([b, fill_b])
    n = a.shape[0] // chunk

    def body(h: Array, ab: tuple[Array, Array]) -> tuple[Array, Array]:
        hs = _states(ab[0], ab[1], h, log)
        return hs[-1], hs

    if loop.remat:
        body = jax.checkpoint(body)
    split = lambda x: x.reshape(n, chunk, *x.shape[1:])
    h0 = carry.astype(jnp.result_type(carry, b))
    carry, hs = jax.lax.scan(body, h0, (split(a), split(b)))
    hs = hs.reshape(n * chunk, *hs.shape[2:])[:T]
    if loop.reverse:
        hs = jnp.flip(hs, 0)
    return cell.output(params, hs, xs), carry


#: the parallel engine's public form (the keywords of ``seqlab.recurrence.run_cell``, plus
#: ``chunk``)
run_linear = over_time(parallel_core)
