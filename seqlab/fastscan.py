"""A faster recurrence: ``run_cell`` with a hand-written backward pass (``jax.custom_vjp``).

``run_cell_fast`` has the semantics of ``seqlab.recurrence.run_cell`` -- outputs, final
carry, and gradients w.r.t. the recurrent params, the projected inputs, the initial carry
and ``h_perturb``; ``lengths``, ``reverse``, ``unroll``, ``remat`` -- equal up to float
rounding, for the built-in cells: rnn / irnn, lstm, gru (both conventions) and mgu. Anything
else (another cell, a subclass that overrides ``step``, mixed or non-float32/64 dtypes)
falls back to ``run_cell``.

Why it is faster than differentiating the scan (measured in docs/BENCHMARKS.md):

* Autodiff of ``lax.scan`` accumulates the recurrent-weight gradient inside the backward
  loop (a small ``h_{t-1}^T dz_t`` matmul whose operand layout misses XLA:CPU's fast matmul
  path, plus a read-modify-write of the whole (H, G*H) gradient per step). Here the
  backward loop propagates only dh (and dc) -- a few multiply-adds and ONE recurrent matmul
  per step, against a ``W^T`` transposed once per call -- and emits the gate pre-activation
  gradients dz_t. The weight gradient is then ONE (H, T*B) x (T*B, G*H) matmul over the
  saved states, and the projected-input gradient is dz itself.
* Every sigmoid is computed as ``(1 + tanh(x / 2)) / 2``, so an LSTM step applies one tanh
  to all 4H pre-activations: XLA:CPU fuses that into one pass instead of one per gate.
* The forward loop saves raw values (the LSTM's gate activations) in separate arrays; the
  backward's coefficients are formed inside the backward loop, where they fuse into the
  dz computation (concatenating coefficients in the forward loop costs more than it saves).
* The projected inputs are read one step at a time where they lie, (B, T, G*H), instead of
  being transposed to time-major first.

``remat=True`` saves only the carries per step and recomputes each step's gate values
inside the backward loop (one extra recurrent matmul per step), as ``jax.checkpoint`` does;
the backward loop also writes each step's projected-input gradient over that step's
projected inputs (read there for the last time), so the two share one (B, T, G*H) buffer.

Limitations: reverse mode only (``jax.grad``/``vjp``; not ``jax.jvp``, not second order);
``jit`` and ``vmap`` work.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from seqlab.cells import Carry, Cell, GRUCell, LSTMCell, MGUCell, RNNCell
from seqlab.recurrence import flip_sequences, length_mask, run_cell

Array = jax.Array
Params = dict[str, Array]
FAST_DTYPES = (jnp.dtype(jnp.float32), jnp.dtype(jnp.float64))

# Per-step arrays are (B, F). The projected inputs are read where they lie, (B, T, F); the
# sequences the loops produce are time-major, (T, B, F), as in ``run_cell``. ``q`` holds the
# loop-invariant operands (``prep``): recurrent kernel blocks ``w*`` (H, K) and their
# transposes ``t*`` (K, H) for the backward, made once per call.


def _cat(*xs: Array) -> Array:
    return jnp.concatenate(xs, axis=-1)


def _split(x: Array, n: int) -> list[Array]:
    return jnp.split(x, n, axis=-1)


def _sum_outer(a: Array, d: Array) -> Array:
    """sum over t, b of a[t, b]^T d[t, b] for (T, B, H) and (T, B, K): one (H, K) matmul."""
    return jax.lax.dot_general(a, d, (((0, 1), (0, 1)), ((), ())))


class Kind(NamedTuple):
    """A specialized cell, as pure functions of per-step (B, F) arrays.

    fwd(q, carry, xp) -> (new_carry, h, res): one step, plus the tuple of arrays its
    backward needs (raw values, e.g. the LSTM's gate activations: computing the backward's
    coefficients here would cost the forward loop more than the backward loop saves).
    bwd(q, res, prev, cur, d_new) -> (d_prev, dxp): prev/cur are the carries entering and
    leaving the step; d_new's dh already includes the step output's gradient.
    wres(res) -> what wgrad needs of res (per step, or for the whole sequence).
    wgrad(p, h_prev, wres, dxp) -> the parameter gradients from all steps at once.
    """

    prep: Callable[[Params], Params]
    fwd: Callable[..., Any]
    bwd: Callable[..., Any]
    wres: Callable[[tuple[Array, ...]], tuple[Array, ...]]
    wgrad: Callable[..., Params]
    tuple_carry: bool  # LSTM: (c, h)


def _whole(p: Params) -> Params:
    return {"w": p["w_h"], "t": p["w_h"].T}


def _none(res: tuple[Array, ...]) -> tuple[Array, ...]:
    return ()


def _wgrad_whole(p, h_prev, wres, dxp):
    return {"w_h": _sum_outer(h_prev, dxp)}


def _sigmoid_via_tanh(t: Array) -> Array:
    """sigmoid(x) from t = tanh(x / 2): one transcendental for every gate of a cell."""
    return 0.5 + 0.5 * t


@cache
def _rnn(activation: str) -> Kind:
    def fwd(q, h, xp):
        z = xp + h @ q["w"]
        if activation == "tanh":
            h = jnp.tanh(z)
            k = 1.0 - h * h
        elif activation == "relu":
            h = jax.nn.relu(z)
            k = (z > 0).astype(z.dtype)
        else:
            h, k = z, jnp.ones_like(z)
        return h, h, (k,)

    def bwd(q, res, prev, cur, dh):
        dz = dh * res[0]
        return dz @ q["t"], dz

    return Kind(_whole, fwd, bwd, _none, _wgrad_whole, False)


def _lstm_prep(p: Params) -> Params:
    """W, W^T and the per-row tanh argument scale: 1/2 for the sigmoid gates i, f, o."""
    w = p["w_h"]
    half = jnp.full((w.shape[0],), 0.5, w.dtype)
    return {**_whole(p), "scale": jnp.concatenate([half, half, 2 * half, half])}


def _lstm_fwd(q, carry, xp):
    c, h = carry
    # One tanh over all 4H pre-activations (sigmoid(x) = (1 + tanh(x/2)) / 2): XLA:CPU makes
    # it one fused pass instead of a fusion per gate.
    t = jnp.tanh((xp + h @ q["w"]) * q["scale"])
    i, f, g, o = _split(t, 4)
    i, f, o = _sigmoid_via_tanh(i), _sigmoid_via_tanh(f), _sigmoid_via_tanh(o)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (c, h), h, (t,)


def _lstm_bwd(q, res, prev, cur, d_new):
    i, f, g, o = _split(res[0], 4)
    i, f, o = _sigmoid_via_tanh(i), _sigmoid_via_tanh(f), _sigmoid_via_tanh(o)
    tc = jnp.tanh(cur[0])  # c after the step (at the valid steps the backward keeps)
    dc, dh = d_new
    dc = dc + dh * o * (1.0 - tc * tc)
    dz = _cat(
        dc * g * i * (1.0 - i),
        dc * prev[0] * f * (1.0 - f),
        dc * i * (1.0 - g * g),
        dh * tc * o * (1.0 - o),
    )
    return (dc * f, dz @ q["t"]), dz


LSTM = Kind(_lstm_prep, _lstm_fwd, _lstm_bwd, _none, _wgrad_whole, True)


def _gru_prep(p: Params) -> Params:
    return {**_whole(p), "b_hn": p["b_hn"]}


def _gru_fwd(q, h, xp):
    cut = [2 * h.shape[-1]]
    x_rz, x_n = jnp.split(xp, cut, axis=-1)
    h_rz, h_n = jnp.split(h @ q["w"], cut, axis=-1)
    rz = _sigmoid_via_tanh(jnp.tanh(0.5 * (x_rz + h_rz)))
    r, z = _split(rz, 2)
    hn = h_n + q["b_hn"]
    n = jnp.tanh(x_n + r * hn)
    h_new = (1.0 - z) * n + z * h
    return h_new, h_new, (rz, n, hn)


def _gru_bwd(q, res, h, cur, dh):
    rz, n, hn = res
    r, z = _split(rz, 2)
    dn = dh * (1.0 - z) * (1.0 - n * n)
    dr = dn * hn * r * (1.0 - r)
    dz = dh * (h - n) * z * (1.0 - z)
    return dh * z + _cat(dr, dz, dn * r) @ q["t"], _cat(dr, dz, dn)


def _first_half(res: tuple[Array, ...]) -> tuple[Array, ...]:
    """r (GRU) from the stacked [r; z] residual, per step or over time."""
    return (_split(res[0], 2)[0],)


def _gru_wgrad(p, h_prev, wres, dxp):
    (r,) = wres
    d_rz, d_n = jnp.split(dxp, [2 * r.shape[-1]], axis=-1)
    dn_r = d_n * r
    return {"w_h": _sum_outer(h_prev, _cat(d_rz, dn_r)), "b_hn": jnp.sum(dn_r, axis=(0, 1))}


GRU = Kind(_gru_prep, _gru_fwd, _gru_bwd, _first_half, _gru_wgrad, False)


def _two_blocks(split_at: int) -> Callable[[Params], Params]:
    """Kernels whose second block multiplies a gated state: (H, a*H) and (H, rest)."""

    def prep(p: Params) -> Params:
        w = p["w_h"]
        cut = split_at * w.shape[0]
        w1, w2 = w[:, :cut], w[:, cut:]
        return {"w1": w1, "t1": w1.T, "w2": w2, "t2": w2.T}

    return prep


def _gru_rb_fwd(q, h, xp):
    x_rz, x_n = jnp.split(xp, [2 * h.shape[-1]], axis=-1)
    rz = _sigmoid_via_tanh(jnp.tanh(0.5 * (x_rz + h @ q["w1"])))
    r, z = _split(rz, 2)
    n = jnp.tanh(x_n + (r * h) @ q["w2"])
    h_new = (1.0 - z) * n + z * h
    return h_new, h_new, (rz, n)


def _gru_rb_bwd(q, res, h, cur, dh):
    rz, n = res
    r, z = _split(rz, 2)
    dn = dh * (1.0 - z) * (1.0 - n * n)
    s = dn @ q["t2"]  # gradient w.r.t. r * h
    drz = _cat(s * h * r * (1.0 - r), dh * (h - n) * z * (1.0 - z))
    return dh * z + s * r + drz @ q["t1"], _cat(drz, dn)


def _gated_wgrad(split_at: int) -> Callable[..., Params]:
    """dW for kernels whose second block multiplies ``gate * h_prev`` (gate in wres)."""

    def wgrad(p, h_prev, wres, dxp):
        (gate,) = wres
        d1, d2 = jnp.split(dxp, [split_at * gate.shape[-1]], axis=-1)
        return {
            "w_h": jnp.concatenate([_sum_outer(h_prev, d1), _sum_outer(gate * h_prev, d2)], axis=-1)
        }

    return wgrad


GRU_RB = Kind(_two_blocks(2), _gru_rb_fwd, _gru_rb_bwd, _first_half, _gated_wgrad(2), False)


def _mgu_fwd(q, h, xp):
    x_f, x_n = _split(xp, 2)
    f = _sigmoid_via_tanh(jnp.tanh(0.5 * (x_f + h @ q["w1"])))
    n = jnp.tanh(x_n + (f * h) @ q["w2"])
    h_new = (1.0 - f) * h + f * n
    return h_new, h_new, (f, n)


def _mgu_bwd(q, res, h, cur, dh):
    f, n = res
    dn = dh * f * (1.0 - n * n)
    u = dn @ q["t2"]  # gradient w.r.t. f * h
    df = (dh * (n - h) + u * h) * f * (1.0 - f)
    return dh * (1.0 - f) + u * f + df @ q["t1"], _cat(df, dn)


def _gate(res: tuple[Array, ...]) -> tuple[Array, ...]:
    return (res[0],)


MGU = Kind(_two_blocks(1), _mgu_fwd, _mgu_bwd, _gate, _gated_wgrad(1), False)


def cell_kind(cell: Cell) -> Kind | None:
    """The specialized kernels for ``cell``, or None when ``run_cell`` must be used."""
    t = type(cell)
    if isinstance(cell, LSTMCell) and t.step is LSTMCell.step:
        return LSTM
    if isinstance(cell, GRUCell) and t.step is GRUCell.step:
        return GRU if cell.reset_after else GRU_RB
    if isinstance(cell, MGUCell) and t.step is MGUCell.step:
        return MGU
    rnn_ok = isinstance(cell, RNNCell) and t.step is RNNCell.step
    if rnn_ok and cell.activation in ("tanh", "relu", "identity"):
        return _rnn(cell.activation)
    return None


# -- the scan with the custom backward -----------------------------------------------------


def _hidden(kind: Kind, carry: Carry) -> Array:
    return carry[1] if kind.tuple_carry else carry


def _with_hidden(kind: Kind, carry: Carry, h: Array) -> Carry:
    return (carry[0], h) if kind.tuple_carry else h


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
def _make_scan(kind: Kind, rev: bool, unroll: int, remat: bool) -> Callable[..., Any]:
    """f(params, carry, xp, mask, eps) -> (carry_T, hs): xp (B, T, G*H) as the layer made it
    (read one step at a time in place, never transposed); mask (T, B), eps (T, B, H) and
    hs (T, B, H), the carry's h after each step, are time-major."""

    def at(xp, t):
        return jax.lax.dynamic_index_in_dim(xp, t, 1, keepdims=False)

    def step(q, c, xp_t, m_t, e_t):
        new_c, h, res = kind.fwd(q, c, xp_t)
        if e_t is not None:
            h = h + e_t.astype(h.dtype)
            new_c = _with_hidden(kind, new_c, h)
        return _where(m_t, new_c, c), res

    def scan(body, init, xs, backward=False):
        return jax.lax.scan(body, init, xs, reverse=rev != backward, unroll=unroll)

    def primal(p, carry, xp, mask, eps):
        q = kind.prep(p)

        def body(c, x):
            c, _ = step(q, c, at(xp, x["t"]), x["m"], x["e"])
            return c, _hidden(kind, c)

        return scan(body, carry, {"t": jnp.arange(xp.shape[1]), "m": mask, "e": eps})

    def fwd(p, carry, xp, mask, eps):
        q = kind.prep(p)

        def body(c, x):
            c, res = step(q, c, at(xp, x["t"]), x["m"], x["e"])
            return c, (c, None if remat else res)  # remat: only the carries

        xs = {"t": jnp.arange(xp.shape[1]), "m": mask, "e": eps}
        carry_t, (cs, res) = scan(body, carry, xs)
        return (carry_t, _hidden(kind, cs)), (p, carry, xp, mask, eps, cs, res)

    def bwd(residuals, cts):
        p, carry0, xp, mask, eps, cs, res_seq = residuals
        q = kind.prep(p)
        d_carry, d_hs = cts
        prev = _shift(cs, carry0, rev)  # the carry entering each step

        def body(c, x):
            d, buf = c
            dh = _hidden(kind, d) + x["dhs"]
            d = _with_hidden(kind, d, dh)
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
        h_prev = _hidden(kind, prev)
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


def run_cell_fast(
    cell: Cell,
    xp: Array,
    carry: Carry,
    *,
    lengths: Array | None = None,
    reverse: bool = False,
    h_perturb: Array | None = None,
    unroll: int = 1,
    remat: bool = False,
) -> tuple[Array, Carry]:
    """Drop-in for ``seqlab.recurrence.run_cell`` with a faster backward (see module doc)."""
    kind = cell_kind(cell)
    params = cell.recurrent_params()
    dtypes = {jnp.dtype(a.dtype) for a in jax.tree.leaves((params, carry, xp))}
    if kind is None or len(dtypes) != 1 or dtypes.pop() not in FAST_DTYPES:
        return run_cell(
            cell,
            xp,
            carry,
            lengths=lengths,
            reverse=reverse,
            h_perturb=h_perturb,
            unroll=unroll,
            remat=remat,
        )
    flip = reverse and lengths is not None
    if flip:
        xp = flip_sequences(xp, lengths)
        h_perturb = None if h_perturb is None else flip_sequences(h_perturb, lengths)
    mask = None if lengths is None else length_mask(lengths, xp.shape[1]).T
    eps = None if h_perturb is None else jnp.swapaxes(h_perturb, 0, 1)
    scan = _make_scan(kind, reverse and not flip, int(unroll), bool(remat))
    carry, hs = scan(params, carry, xp, mask, eps)
    if mask is not None:
        hs = jnp.where(mask[..., None], hs, jnp.zeros_like(hs))
    ys = jnp.swapaxes(hs, 0, 1)
    if flip:
        ys = flip_sequences(ys, lengths)
    return ys, carry
