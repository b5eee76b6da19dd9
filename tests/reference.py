"""Float64 NumPy reference implementations of the cells and of the sequence runner.

Written directly from the equations in each cell file's docstring, one example and one
timestep at a time, with no vectorisation tricks and nothing imported from seqlab, so the
tests compare seqlab's fused/scanned implementation against an independent one.

Parameters use seqlab's fused layout (gate blocks side by side):

    w_x: (F, G*H), w_h: (H, G*H), b: (G*H,), and for the reset-after GRU b_hn: (H,)

Cell kinds (the registry names): ``rnn`` (tanh), ``irnn`` (relu), ``lstm`` (gates i, f, g, o;
carry (c, h)), ``gru`` (reset after the recurrent matmul), ``gru_reset_before`` (Cho 2014),
``mgu``. A batched carry is a (B, H) array, or a (c, h) tuple of them for the LSTM.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

Params = dict[str, np.ndarray]
Carry = Any  # np.ndarray, or (c, h) for the LSTM

KINDS = ("rnn", "irnn", "lstm", "gru", "gru_reset_before", "mgu")
NUM_GATES = {"rnn": 1, "irnn": 1, "lstm": 4, "gru": 3, "gru_reset_before": 3, "mgu": 2}


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(x, 0.0)


ACTIVATIONS = {"tanh": np.tanh, "relu": relu, "identity": lambda x: x}


def block(w: np.ndarray, k: int, hidden: int) -> np.ndarray:
    """Gate block ``k`` (columns k*H .. (k+1)*H) of a fused kernel or bias."""
    return w[..., k * hidden : (k + 1) * hidden]


def params_of(cell: Any) -> Params:
    """Copies a seqlab cell's parameters into float64 NumPy arrays (reads values only)."""
    p = {
        "w_x": np.asarray(cell.w_x[...], np.float64),
        "w_h": np.asarray(cell.w_h[...], np.float64),
        "b": np.asarray(cell.b[...], np.float64),
    }
    if hasattr(cell, "b_hn"):
        p["b_hn"] = np.asarray(cell.b_hn[...], np.float64)
    return p


# -- one step, one example ---------------------------------------------------------------------


def rnn_step(p: Params, h: np.ndarray, x: np.ndarray, activation: str = "tanh") -> np.ndarray:
    """h' = act(x W_x + h W_h + b)."""
    return ACTIVATIONS[activation](x @ p["w_x"] + h @ p["w_h"] + p["b"])


def lstm_step(
    p: Params, carry: tuple[np.ndarray, np.ndarray], x: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """i, f, g, o = split(x W_x + h W_h + b); c' = s(f) c + s(i) tanh(g); h' = s(o) tanh(c')."""
    c, h = carry
    H = h.shape[-1]
    pre = [
        x @ block(p["w_x"], k, H) + h @ block(p["w_h"], k, H) + block(p["b"], k, H)
        for k in range(4)
    ]
    i, f, g, o = pre
    c_new = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
    h_new = sigmoid(o) * np.tanh(c_new)
    return c_new, h_new


def gru_step(p: Params, h: np.ndarray, x: np.ndarray, reset_after: bool = True) -> np.ndarray:
    """Gate order r, z, n; h' = (1 - z) n + z h.

    reset after:  n = tanh(x W_xn + b_n + r * (h W_hn + b_hn))
    reset before: n = tanh(x W_xn + b_n + (r * h) W_hn)
    """
    H = h.shape[-1]
    wx, wh, b = p["w_x"], p["w_h"], p["b"]
    r = sigmoid(x @ block(wx, 0, H) + block(b, 0, H) + h @ block(wh, 0, H))
    z = sigmoid(x @ block(wx, 1, H) + block(b, 1, H) + h @ block(wh, 1, H))
    if reset_after:
        n = np.tanh(x @ block(wx, 2, H) + block(b, 2, H) + r * (h @ block(wh, 2, H) + p["b_hn"]))
    else:
        n = np.tanh(x @ block(wx, 2, H) + block(b, 2, H) + (r * h) @ block(wh, 2, H))
    return (1.0 - z) * n + z * h


def mgu_step(p: Params, h: np.ndarray, x: np.ndarray) -> np.ndarray:
    """f = s(x W_xf + h W_hf + b_f); n = tanh(x W_xn + b_n + (f h) W_hn); h' = (1-f) h + f n."""
    H = h.shape[-1]
    wx, wh, b = p["w_x"], p["w_h"], p["b"]
    f = sigmoid(x @ block(wx, 0, H) + h @ block(wh, 0, H) + block(b, 0, H))
    n = np.tanh(x @ block(wx, 1, H) + block(b, 1, H) + (f * h) @ block(wh, 1, H))
    return (1.0 - f) * h + f * n


def step(kind: str, p: Params, carry: Carry, x: np.ndarray) -> tuple[Carry, np.ndarray]:
    """One step of cell ``kind``: (new_carry, h). Works for one example or a batch."""
    if kind == "rnn":
        h = rnn_step(p, carry, x, "tanh")
        return h, h
    if kind == "irnn":
        h = rnn_step(p, carry, x, "relu")
        return h, h
    if kind == "lstm":
        c, h = lstm_step(p, carry, x)
        return (c, h), h
    if kind in ("gru", "gru_reset_before"):
        h = gru_step(p, carry, x, reset_after=kind == "gru")
        return h, h
    if kind == "mgu":
        h = mgu_step(p, carry, x)
        return h, h
    raise ValueError(f"unknown kind {kind!r}")


def hidden(kind: str, carry: Carry) -> np.ndarray:
    return carry[1] if kind == "lstm" else carry


def set_hidden(kind: str, carry: Carry, h: np.ndarray) -> Carry:
    return (carry[0], h) if kind == "lstm" else h


def zero_carry(kind: str, batch: int, hidden_size: int) -> Carry:
    z = np.zeros((batch, hidden_size))
    return (z, z.copy()) if kind == "lstm" else z


def _carry_row(carry: Carry, b: int) -> Carry:
    if isinstance(carry, tuple):
        return tuple(np.array(c[b], np.float64) for c in carry)
    return np.array(carry[b], np.float64)


def _stack_rows(rows: list[Carry]) -> Carry:
    if isinstance(rows[0], tuple):
        return tuple(np.stack([r[k] for r in rows]) for k in range(len(rows[0])))
    return np.stack(rows)


# -- sequences ---------------------------------------------------------------------------------


def run_layer(
    kind: str,
    p: Params,
    xs: np.ndarray,
    *,
    lengths: Sequence[int] | np.ndarray | None = None,
    reverse: bool = False,
    initial_carry: Carry | None = None,
    h_perturb: np.ndarray | None = None,
) -> tuple[np.ndarray, Carry]:
    """One layer, one direction over ``xs`` (B, T, F): (outputs (B, T, H), final carry).

    Each example ``b`` runs over its valid prefix ``xs[b, :lengths[b]]`` only (backwards when
    ``reverse``); outputs at padded steps are zero and the final carry is the state after the
    last valid step. ``h_perturb`` (B, T, H) is added to h_t at valid steps right after the
    step, before h_t is emitted and fed to the next step.
    """
    xs = np.asarray(xs, np.float64)
    B, T, _ = xs.shape
    H = p["w_h"].shape[0]
    lengths = np.full(B, T) if lengths is None else np.asarray(lengths)
    if initial_carry is None:
        initial_carry = zero_carry(kind, B, H)
    ys = np.zeros((B, T, H))
    finals = []
    for b in range(B):
        carry = _carry_row(initial_carry, b)
        L = int(lengths[b])
        order = range(L - 1, -1, -1) if reverse else range(L)
        for t in order:
            carry, h = step(kind, p, carry, xs[b, t])
            if h_perturb is not None:
                h = h + h_perturb[b, t]
                carry = set_hidden(kind, carry, h)
            ys[b, t] = h
        finals.append(carry)
    return ys, _stack_rows(finals)


def run_bidirectional(
    kind: str,
    p_fwd: Params,
    p_bwd: Params,
    xs: np.ndarray,
    *,
    merge: str = "concat",
    lengths: Sequence[int] | np.ndarray | None = None,
    initial_carry: tuple[Carry, Carry] | None = None,
    h_perturb: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, tuple[Carry, Carry]]:
    """Forward and reverse layer over the same input; outputs concatenated or summed."""
    cf, cb = (None, None) if initial_carry is None else initial_carry
    ef, eb = (None, None) if h_perturb is None else h_perturb
    yf, cf = run_layer(kind, p_fwd, xs, lengths=lengths, initial_carry=cf, h_perturb=ef)
    yb, cb = run_layer(
        kind, p_bwd, xs, lengths=lengths, reverse=True, initial_carry=cb, h_perturb=eb
    )
    if merge == "concat":
        y = np.concatenate([yf, yb], axis=-1)
    elif merge == "sum":
        y = yf + yb
    else:
        raise ValueError(f"unknown merge {merge!r}")
    return y, (cf, cb)


def run_stack(
    kind: str,
    layer_params: Sequence[Params | tuple[Params, Params]],
    xs: np.ndarray,
    *,
    bidirectional: bool = False,
    merge: str = "concat",
    lengths: Sequence[int] | np.ndarray | None = None,
    initial_carry: Sequence[Carry] | None = None,
    h_perturb: Sequence[Any] | None = None,
) -> tuple[np.ndarray, list[np.ndarray], list[Carry]]:
    """Layers applied in turn (no dropout): (top outputs, per-layer outputs, final carries).

    For a bidirectional stack each entry of ``layer_params`` is a (forward, backward) pair,
    and carries / perturbations are (forward, backward) pairs too.
    """
    x = np.asarray(xs, np.float64)
    outs, carries = [], []
    for i, p in enumerate(layer_params):
        c0 = None if initial_carry is None else initial_carry[i]
        e = None if h_perturb is None else h_perturb[i]
        if bidirectional:
            x, c = run_bidirectional(
                kind, p[0], p[1], x, merge=merge, lengths=lengths, initial_carry=c0, h_perturb=e
            )
        else:
            x, c = run_layer(kind, p, x, lengths=lengths, initial_carry=c0, h_perturb=e)
        outs.append(x)
        carries.append(c)
    return x, outs, carries


# -- analytic gradients and finite differences -------------------------------------------------


def rnn_tanh_hidden_grads(
    p: Params, xs: np.ndarray, h0: np.ndarray, dl_dy: np.ndarray
) -> np.ndarray:
    """Explicit BPTT for the tanh RNN with a loss linear in the outputs.

    With L = sum_t <dl_dy[:, t], h_t>, returns the total derivative dL/dh_t (B, T, H):
    delta_{T-1} = g_{T-1};  delta_t = g_t + (delta_{t+1} * (1 - h_{t+1}^2)) W_h^T.
    """
    B, T, _ = xs.shape
    hs, h = [], h0
    for t in range(T):
        h = np.tanh(xs[:, t] @ p["w_x"] + h @ p["w_h"] + p["b"])
        hs.append(h)
    delta = np.zeros_like(dl_dy)
    delta[:, T - 1] = dl_dy[:, T - 1]
    for t in range(T - 2, -1, -1):
        delta[:, t] = dl_dy[:, t] + (delta[:, t + 1] * (1.0 - hs[t + 1] ** 2)) @ p["w_h"].T
    return delta


def finite_difference(fn: Any, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of a scalar ``fn`` w.r.t. every entry of the float64 array ``x``."""
    x = np.array(x, np.float64)
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for k in range(flat.size):
        old = flat[k]
        flat[k] = old + eps
        up = fn(x)
        flat[k] = old - eps
        down = fn(x)
        flat[k] = old
        gflat[k] = (up - down) / (2 * eps)
    return grad
