"""The fast engine: a cell's own forward/backward kernels over time under ``jax.custom_vjp``.

``run_cell_fast`` has the semantics of ``seqlab.recurrence.scan.run_cell`` -- outputs, final
carry, and gradients w.r.t. the recurrent params, the projected inputs, the initial carry and
``h_perturb``; ``lengths``, ``reverse``, ``unroll``, ``remat`` -- equal up to float rounding.
It knows no cell: it asks ``cell.kernels()`` (``seqlab.cells.kernels.Kernels``) for the step
and its derivative, and ``cell.hidden``/``set_hidden`` for where h lives in the carry.

Why it is faster than differentiating the scan (measured in docs/BENCHMARKS.md):

* Autodiff of ``lax.scan`` accumulates the recurrent-weight gradient inside the backward
  loop (a small ``h_{t-1}^T dz_t`` matmul whose operand layout misses XLA:CPU's fast matmul
  path, plus a read-modify-write of the whole (H, G*H) gradient per step). Here the backward
  loop propagates only the carry's gradient -- a few multiply-adds and ONE recurrent matmul
  per step, against a ``W^T`` transposed once per call -- and emits the gate pre-activation
  gradients dz_t. The weight gradient is then ONE (H, T*B) x (T*B, G*H) matmul over the
  saved states (``Kernels.wgrad``), and the projected-input gradient is dz itself.
* The forward loop saves raw values (``res``); the backward's coefficients are formed inside
  the backward loop, where they fuse into the dz computation.
* The projected inputs are read one step at a time where they lie, (B, T, G*H), instead of
  being transposed to time-major first.

``remat=True`` saves only the carries per step and recomputes each step's ``res`` inside the
backward loop (one extra recurrent matmul per step), as ``jax.checkpoint`` does; the backward
loop also writes each step's projected-input gradient over that step's projected inputs (read
there for the last time), so the two share one (B, T, G*H) buffer.

Mixed precision (``Cell.dtype`` bfloat16/float16 over float32 parameters, carry and inputs):
the recurrent matmuls of both loops take their operands in the compute dtype and accumulate
in float32 (``matmul_operands``); the carry, the elementwise math and the weight-gradient
matmul after the backward loop stay float32.

When it does not apply -- a cell without kernels, or parameters, carry and inputs not all of
one float32/float64 dtype -- ``run_cell_fast`` runs the autodiff engine and says so once in
the log. Limitations: reverse mode only (``jax.grad``/``vjp``; not ``jax.jvp``, not second
order); ``jit`` and ``vmap`` work.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from functools import cache
from typing import Any

import jax
import jax.numpy as jnp

from seqlab.cells import Carry, Cell, Kernels
from seqlab.cells.kernels import matmul_operands
from seqlab.recurrence.scan import Loop, over_time, scan_core

Array = jax.Array
Params = dict[str, Array]
FAST_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))
#: compute dtypes (``Cell.dtype``) the kernels take over float32 arrays: matmuls only
MATMUL_DTYPES = (jnp.dtype(jnp.bfloat16), jnp.dtype(jnp.float16))
log = logging.getLogger("seqlab")
_said: set[str] = set()


def fast_unavailable(cell: Cell, dtypes: Any = None) -> str | None:
    """Why the fast engine cannot run ``cell`` (None when it can). ``dtypes``: the dtypes of
    the arrays it would get (default: the cell's parameter dtype)."""
    if not type(cell).has_fast_kernels() or cell.kernels() is None:
        return f"{type(cell).__name__} has no fast kernels for its step"
    dts = {jnp.dtype(d) for d in (dtypes or (cell.param_dtype,))}
    cdt = None if cell.dtype is None else jnp.dtype(cell.dtype)
    if cdt is not None and not (cdt in MATMUL_DTYPES and dts == {jnp.dtype(jnp.float32)}):
        dts.add(cdt)
    if len(dts) != 1 or next(iter(dts)) not in FAST_DTYPES:
        return (
            "its fast kernels run in one float32/float64 dtype (matmuls optionally in "
            f"bfloat16/float16 over float32), got {sorted(map(str, dts))}"
        )
    return None


def say_once(reason: str) -> None:
    """Logs that backend=fast falls back to the autodiff scan, once per reason."""
    if reason not in _said:
        _said.add(reason)
        log.warning("backend=fast: %s; running the autodiff scan (backend=scan)", reason)


# -- the scan with the custom backward -----------------------------------------------------


def _where(m: Array | None, new: Any, old: Any) -> Any:
    """Per example: ``new`` where m (B,), else ``old``."""
    if m is None:
        return new
    return jax.tree.map(lambda n, o: jnp.where(m[:, None], n, o), new, old)


def _shift(seq: Any, first: Any, rev: bool) -> Any:
    """The carry *entering* each step, from the carries leaving them (time-major)."""
    if rev:
        return jax.tree.map(lambda s, f: jnp.concatenate([s[1:], f[None]], 0), seq, first)
    return jax.tree.map(lambda s, f: jnp.concatenate([f[None], s[:-1]], 0), seq, first)


@cache
def _make_scan(
    kind: Kernels,
    hidden: Callable,
    with_hidden: Callable,
    rev: bool,
    unroll: int,
    remat: bool,
    dtype: Any = None,
) -> Callable[..., Any]:
    """f(params, carry, xp, mask, eps) -> (carry_T, hs): xp (B, T, G*H) as the layer made it
    (read one step at a time in place, never transposed); mask (T, B), eps (T, B, H) and
    hs (T, B, H), the carry's h after each step, are time-major. ``dtype``: the matmuls'."""

    def prep(p):
        return matmul_operands(kind.prep(p), dtype)

    def at(xp, t):
        return jax.lax.dynamic_index_in_dim(xp, t, 1, keepdims=False)

    def step(q, c, xp_t, m_t, e_t):
        new_c, h, res = kind.fwd(q, c, xp_t)
        if e_t is not None:
            h = h + e_t.astype(h.dtype)
            new_c = with_hidden(new_c, h)
        return _where(m_t, new_c, c), res

    def scan(body, init, xs, backward=False):
        return jax.lax.scan(body, init, xs, reverse=rev != backward, unroll=unroll)

    def primal(p, carry, xp, mask, eps):
        q = prep(p)

        def body(c, x):
            c, _ = step(q, c, at(xp, x["t"]), x["m"], x["e"])
            return c, hidden(c)

        return scan(body, carry, {"t": jnp.arange(xp.shape[1]), "m": mask, "e": eps})

    def fwd(p, carry, xp, mask, eps):
        q = prep(p)

        def body(c, x):
            c, res = step(q, c, at(xp, x["t"]), x["m"], x["e"])
            return c, (c, None if remat else res)  # remat: only the carries

        xs = {"t": jnp.arange(xp.shape[1]), "m": mask, "e": eps}
        carry_t, (cs, res) = scan(body, carry, xs)
        return (carry_t, hidden(cs)), (p, carry, xp, mask, eps, cs, res)

    def bwd(residuals, cts):
        p, carry0, xp, mask, eps, cs, res_seq = residuals
        q = prep(p)
        d_carry, d_hs = cts
        prev = _shift(cs, carry0, rev)  # the carry entering each step

        def body(c, x):
            d, buf = c
            dh = hidden(d) + x["dhs"]
            d = with_hidden(d, dh)
            res = kind.fwd(q, x["prev"], at(buf, x["t"]))[2] if remat else x["res"]
            d_prev, dxp = kind.bwd(q, res, x["prev"], x["cur"], d)
            m = x["m"]
            if m is not None:
                d_prev = _where(m, d_prev, d)
                dxp = jnp.where(m[:, None], dxp, jnp.zeros_like(dxp))
                dh = jnp.where(m[:, None], dh, jnp.zeros_like(dh))
            out = {"de": None if eps is None else dh}
            if remat:
                # xp_t has been read for the last time: its slot now holds dxp_t, so the
                # projected inputs and their gradient share one (B, T, G*H) buffer.
                out["wres"] = kind.wres(res)
                buf = jax.lax.dynamic_update_index_in_dim(buf, dxp.astype(buf.dtype), x["t"], 1)
            else:
                out["dxp"] = dxp
            return (d_prev, buf), out

        xs = {"dhs": d_hs, "m": mask, "prev": prev, "cur": cs, "t": jnp.arange(xp.shape[1])}
        if not remat:
            xs["res"] = res_seq
        buf0 = xp if remat else jnp.zeros((), xp.dtype)
        (d_carry0, buf), outs = scan(body, (d_carry, buf0), xs, backward=True)
        h_prev = hidden(prev)
        if remat:  # batch-major, like the buffer: transpose the H-wide operands, not dxp
            dxp_bt = buf
            wres = jax.tree.map(lambda a: jnp.swapaxes(a, 0, 1), outs["wres"])
            dp = kind.wgrad(p, jnp.swapaxes(h_prev, 0, 1), wres, dxp_bt)
        else:
            dp = kind.wgrad(p, h_prev, kind.wres(res_seq), outs["dxp"])
            dxp_bt = jnp.swapaxes(outs["dxp"], 0, 1)
        dp = {k: dp[k].astype(v.dtype) for k, v in p.items()}
        de = None if eps is None else outs["de"].astype(eps.dtype)
        return dp, d_carry0, dxp_bt, None, de

    f = jax.custom_vjp(primal)
    f.defvjp(fwd, bwd)
    return f


def fast_core(cell: Cell, xp: Array, carry: Carry, loop: Loop) -> tuple[Array, Carry]:
    """The cell's kernels over time under a custom VJP (see ``scan.over_time``); the
    autodiff core where they do not apply (said once in the log)."""
    params = cell.recurrent_params()
    why = fast_unavailable(cell, [a.dtype for a in jax.tree.leaves((params, carry, xp))])
    if why is not None:
        say_once(why)
        return scan_core(cell, xp, carry, loop)
    cls = type(cell)
    k = cell.kernels()
    dtype = None if cell.dtype is None else jnp.dtype(cell.dtype)
    scan = _make_scan(k, cls.hidden, cls.set_hidden, loop.reverse, loop.unroll, loop.remat, dtype)
    carry, hs = scan(params, carry, xp, loop.mask, loop.eps)
    return hs, carry


#: a drop-in for ``seqlab.recurrence.run_cell`` with a faster backward (see the module doc)
run_cell_fast = over_time(fast_core)
