"""The autodiff engine: ``lax.scan`` of ``cell.step`` over time, differentiated by JAX.

Every JAX transform works through it (``jax.jvp``, Hessians, ``vmap``). Variable lengths: with
per-example ``lengths``, padded steps leave the carry unchanged and emit zeros, so the final
carry is the state at each example's last valid step. A reverse scan reads each example's
valid prefix backwards (padding stays at the end).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from seqlab.cells import Carry, Cell

Array = jax.Array


def flip_sequences(x: Array, lengths: Array) -> Array:
    """Reverses the first ``lengths[b]`` steps of each row of ``x`` (B, T, ...)."""
    t = jnp.arange(x.shape[1])[None, :]
    idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return jax.vmap(lambda row, i: row[i])(x, idx)


def length_mask(lengths: Array, max_len: int) -> Array:
    """(B, T) boolean: True at valid steps."""
    return jnp.arange(max_len)[None, :] < lengths[:, None]


class Loop(NamedTuple):
    """How an engine walks time: ``mask`` (T, B) and ``eps`` (T, B, H), time-major or None,
    the scan direction, its unroll factor, whether to rematerialize each step, and (parallel
    engine) the chunk length."""

    mask: Array | None
    eps: Array | None
    reverse: bool
    unroll: int
    remat: bool
    chunk: int = 0  # the parallel engine: steps per chunk (0 = all at once)


Core = Callable[[Cell, Array, Carry, Loop], tuple[Array, Carry]]


def over_time(core: Core) -> Callable[..., tuple[Array, Carry]]:
    """An engine's public form, shared by every engine: ``run(cell, xp, carry, *, lengths,
    reverse, h_perturb, unroll, remat) -> (outputs (B, T, H), final carry)``.

    ``core(cell, xp, carry, loop) -> (hs (T, B, H), carry)`` sees ``xp`` (B, T, G*H) with
    each example's valid prefix already reversed when ``reverse`` and ``lengths`` are both
    given (then ``loop.reverse`` is False). Padded steps' outputs are zeroed here.
    ``h_perturb`` (B, T, H), if given, is added to h_t inside the scan before it feeds step
    t+1 and the output; differentiating w.r.t. it gives dL/dh_t for every t in one backward
    pass (the gradient-norm probe)."""

    @functools.wraps(core)
    def run(
        cell: Cell,
        xp: Array,
        carry: Carry,
        *,
        lengths: Array | None = None,
        reverse: bool = False,
        h_perturb: Array | None = None,
        unroll: int = 1,
        remat: bool = False,
        chunk: int = 0,
    ) -> tuple[Array, Carry]:
        flip = reverse and lengths is not None
        if flip:
            xp = flip_sequences(xp, lengths)
            h_perturb = None if h_perturb is None else flip_sequences(h_perturb, lengths)
        mask = None if lengths is None else length_mask(lengths, xp.shape[1]).T
        eps = None if h_perturb is None else jnp.swapaxes(h_perturb, 0, 1)
        loop = Loop(mask, eps, reverse and not flip, int(unroll), bool(remat), int(chunk))
        hs, carry = core(cell, xp, carry, loop)
        if mask is not None:
            hs = jnp.where(mask[..., None], hs, jnp.zeros_like(hs))
        ys = jnp.swapaxes(hs, 0, 1)
        return (flip_sequences(ys, lengths) if flip else ys), carry

    return run


def scan_core(cell: Cell, xp: Array, carry: Carry, loop: Loop) -> tuple[Array, Carry]:
    """Scans ``cell.step`` over time, differentiated by autodiff (see ``over_time``)."""
    params = cell.recurrent_params()
    xs: dict[str, Array] = {"xp": jnp.swapaxes(xp, 0, 1), "mask": loop.mask, "eps": loop.eps}

    def body(c: Carry, x: dict[str, Array]) -> tuple[Carry, Array]:
        new_c, h = cell.step(params, c, x["xp"])
        if x["eps"] is not None:  # perturb the state; the output reads the perturbed state
            hid = cell.hidden(new_c)
            new_c = cell.set_hidden(new_c, hid + x["eps"].astype(hid.dtype))
            h = cell.output(params, new_c, x["xp"])
        if x["mask"] is not None:
            m = x["mask"]  # (B,), against carries of any rank (matrix states)
            keep = lambda n, o: jnp.where(m.reshape(-1, *(1,) * (n.ndim - 1)), n, o)
            new_c = jax.tree.map(keep, new_c, c)
        return new_c, h

    if loop.remat:
        body = jax.checkpoint(body)
    carry, hs = jax.lax.scan(body, carry, xs, reverse=loop.reverse, unroll=loop.unroll)
    return hs, carry


#: the autodiff engine: every JAX transform works through it
run_cell = over_time(scan_core)
