"""The exact gradient-norm probe: log10 g_t, g_t = ||dL/dh_t||, for every t, never underflowing.

Backpropagating through T steps multiplies T Jacobians; in float32 the product falls below
1e-38 (in float64 below 1e-308) long before T = 10,000, and plain autodiff
(``seqlab.run.probe.autodiff_grad_norms``) prints 0. Here every cotangent is a *scaled
vector*: a log-scale per example and a unit vector, x = exp(log) * unit. A vector-Jacobian
product is linear, so it is applied to the unit vector and the result renormalized, its
log-norm added to the scale; two cotangents are added at the larger of their scales, as
``logaddexp`` adds numbers. Nothing is approximated: it is the autodiff gradient up to float
rounding, at any T (tests/test_logprobe.py: 1e-7 relative for log10(g_1/g_T) at T = 10,000).

(1) Each layer of the model's ``rnn`` stack is run by a ``Tap`` that saves the carry entering
every step (memory: O(T) carries). (2) The task's loss is differentiated w.r.t. each layer's
outputs and final carry with the recurrence cut: each step's *direct* gradient, no product of
Jacobians. (3) Top layer down, a reverse scan per layer takes the VJP of one step at a time
(carry and output cotangents in scaled form, plus a zero perturbation of h_t whose cotangent
is dL/dh_t); the layer's input cotangents, scaled the same way, are the output cotangents of
the layer below. A bidirectional layer has one scan per direction (g_t is the forward one's).

Layers: ``Recurrent`` (its cell's ``step`` on the hoisted ``cell.project``, perturbed as the
scan engine does: ``set_hidden(carry, hidden(carry) + e)``, then ``cell.output``), a
``Bidirectional`` pair of them, and any other layer (a residual block, ...) through its own
call on one step, ``layer(x_t[:, None], lengths=valid_t, initial_carry=carry,
h_perturb=e_t[:, None])``, with ``layer.cell`` the cell whose state is measured. The stack
must pass each layer's output to the next unchanged (no dropout: the loss runs with
train=False).

The norm is over the cell's ``hidden(carry)`` view. For a complex state (the LRU's) that view
is [Re h, Im h], so g_t is the Euclidean norm of dL/dRe(h_t) and dL/dIm(h_t) together (a
complex view's cotangent z would give the same: |z|^2 = Re(z)^2 + Im(z)^2 per entry).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.errors import RunError
from seqlab.recurrence import Bidirectional, Recurrent, RNNStack
from seqlab.recurrence.scan import flip_sequences, length_mask

Array = jax.Array
Scaled = tuple[Array, Any]  # (log-scale per leading index, unit-norm pytree)


# -- scaled vectors: x = exp(log) * unit over the leading ``nd`` axes --------------------------
def _bcast(a: Array, leaf: Array) -> Array:
    return a.reshape(a.shape + (1,) * (leaf.ndim - a.ndim))


def _times(tree: Any, w: Array) -> Any:
    return jax.tree.map(lambda v: v * _bcast(w, v).astype(v.dtype), tree)


def unit(tree: Any, nd: int = 1) -> Scaled:
    """(log ||x||, x / ||x||) over all but the leading ``nd`` axes of all leaves (complex:
    |z|^2 = Re^2 + Im^2); a zero vector gives (-inf, 0). Divided by its largest entry first,
    so a vector near the float range's ends is measured without under- or overflow."""
    axes = lambda v: tuple(range(nd, v.ndim))
    leaves = jax.tree.leaves(tree)
    top = functools.reduce(jnp.maximum, [jnp.max(jnp.abs(v), axis=axes(v)) for v in leaves])
    ok = top > 0
    top = jnp.where(ok, top, 1)
    tree = _times(tree, 1 / top)
    sq = sum(jnp.sum(jnp.abs(v) ** 2, axis=axes(v)) for v in jax.tree.leaves(tree))
    n = jnp.sqrt(jnp.where(ok, sq, 1))
    return jnp.where(ok, jnp.log(top) + jnp.log(n), -jnp.inf), _times(tree, 1 / n)


def scale(tree: Any, log: Array, nd: int = 1) -> Scaled:
    """``exp(log) * tree`` as (log-scale, unit vector)."""
    ln, u = unit(tree, nd)
    return log + ln, u


def add(a: Scaled, b: Scaled, nd: int = 1) -> Scaled:
    """a + b in scaled form, added at the larger of their scales (as ``logaddexp`` does)."""
    m = jnp.maximum(a[0], b[0])
    m = jnp.where(jnp.isfinite(m), m, 0)
    wa, wb = jnp.exp(a[0] - m), jnp.exp(b[0] - m)
    return scale(jax.tree.map(jnp.add, _times(a[1], wa), _times(b[1], wb)), m, nd)


def split(log: Array) -> tuple[Array, Array]:
    """log = k + f with k an int32 and f in [0, 1) (k = 0, f = -inf for log = -inf). The
    recursion adds T small numbers to its scale: in one float32 each sum at |log| ~ 1000
    would round by ~1e-4; kept apart, k is exact and f keeps full precision."""
    ok = jnp.isfinite(log)
    k = jnp.floor(jnp.where(ok, log, 0))
    return k.astype(jnp.int32), jnp.where(ok, log - k, -jnp.inf)


def log_mean(logs: Array, axis: int = 0) -> Array:
    """log of the mean of exp(logs) along ``axis`` (the batch mean of g, in logs)."""
    return jax.nn.logsumexp(logs, axis=axis) - math.log(logs.shape[axis])


# -- one recurrence over time, as a per-step function ----------------------------------------
@dataclass
class Walk:
    """One direction of one layer: ``step(carry, u_t, e_t, m_t) -> (carry, y_t)`` over the
    per-step inputs ``u`` (B, T, ·), e_t a perturbation of the cell's hidden view, m_t the
    (B,) valid-step mask or None; ``to_input`` maps unit cotangents of ``u`` to cotangents of
    the layer's input (``cell.project``'s transpose, or None when u is the input)."""

    step: Callable[..., tuple[Any, Array]]
    u: Array
    carry0: Any
    reverse: bool
    hidden: Callable[[Any], Array]
    to_input: Callable[[Array], Array] | None = None
    saved: dict[str, Any] = field(default_factory=dict)


def _cell_walk(layer: Any, x: Array, carry0: Any) -> Walk:
    """A ``Recurrent`` layer: its cell's step on the hoisted projection, perturbed the way
    the scan engine perturbs it (the output reads the perturbed state)."""
    cell = layer.cell
    rp = cell.recurrent_params()
    output = getattr(cell, "output", None) or (lambda p, c, xp: cell.hidden(c))

    def step(c, xp_t, e_t, m_t):
        new_c, _ = cell.step(rp, c, xp_t)
        new_c = cell.set_hidden(new_c, cell.hidden(new_c) + e_t)
        y = output(rp, new_c, xp_t)
        if m_t is not None:
            new_c = jax.tree.map(lambda n, o: jnp.where(_bcast(m_t, n), n, o), new_c, c)
            y = jnp.where(m_t[:, None], y, jnp.zeros_like(y))
        return new_c, y

    if not jnp.issubdtype(x.dtype, jnp.inexact):  # token ids: the bottom layer; cotangents
        w_x = cell.w_x[...]  # of the one-hot input are those of onehot(x) @ w_x: du @ w_x^T
        to_onehot = lambda du: (jnp.matmul(du, w_x.T.astype(du.dtype)),)
        return Walk(step, cell.project(x), carry0, bool(layer.reverse), cell.hidden, to_onehot)
    xp, to_input = jax.vjp(cell.project, x)
    return Walk(step, xp, carry0, bool(layer.reverse), cell.hidden, to_input)


def _layer_walk(layer: Any, x: Array, carry0: Any) -> Walk:
    """Any other layer: its own call on one step (see the module doc)."""
    cell = getattr(layer, "cell", None)
    if cell is None:
        raise RunError(f"the probe cannot read the hidden state of a {type(layer).__name__}")

    def step(c, x_t, e_t, m_t):
        lengths = None if m_t is None else m_t.astype(jnp.int32)
        y, c = layer(x_t[:, None], lengths=lengths, initial_carry=c, h_perturb=e_t[:, None])
        return c, y[:, 0]

    return Walk(step, x, carry0, bool(getattr(layer, "reverse", False)), cell.hidden)


def _time_order(walk: Walk, a: Array, lengths: Array | None) -> Array:
    """(B, T, ...) into the walk's own time order (an involution)."""
    if not walk.reverse:
        return a
    return jnp.flip(a, 1) if lengths is None else flip_sequences(a, lengths)


def run_forward(walk: Walk, mask: Array | None, lengths: Array | None) -> tuple[Array, Any]:
    """Outputs (B, T, ·) and final carry; saves the carry entering each step."""
    u = jnp.swapaxes(_time_order(walk, walk.u, lengths), 0, 1)
    e0 = jnp.zeros_like(walk.hidden(walk.carry0))

    def body(c, xs):
        new_c, y = walk.step(c, xs[0], e0, xs[1])
        return new_c, (c, y)

    carry, (prev, ys) = jax.lax.scan(body, walk.carry0, (u, mask))
    walk.saved = {"u": u, "prev": prev, "mask": mask}
    return _time_order(walk, jnp.swapaxes(ys, 0, 1), lengths), carry


def run_backward(
    walk: Walk, dy: Scaled, dc: Scaled, lengths: Array | None, need_input: bool
) -> tuple[Array, Scaled | None]:
    """log g (B, T) of this walk and, if ``need_input``, the scaled cotangents of the layer's
    input (B, T, ·). ``dy``: the outputs' cotangents (B, T); ``dc``: the final carry's.

    The carry cotangent's scale is kept as ``split`` (k, f); each step works at the integer
    scale K nearest below the larger of it and the output cotangent's, and emits its logs as
    (K, log-norm), added only at the end."""
    s = walk.saved
    ly = jnp.swapaxes(_time_order(walk, dy[0], lengths), 0, 1)
    uy = jnp.swapaxes(_time_order(walk, dy[1], lengths), 0, 1)
    e0 = jnp.zeros_like(walk.hidden(walk.carry0))

    def body(state, xs):
        (k, f, uc), (prev, u_t, m_t, ly_t, uy_t) = state, xs
        top = jnp.maximum(k + f, ly_t)
        K = split(top)[0]
        wc, wy = jnp.exp((k - K) + f), jnp.exp(ly_t - K)
        cot = (_times(uc, wc), _times(uy_t, wy))
        if need_input:
            _, vjp = jax.vjp(lambda c, u, e: walk.step(c, u, e, m_t), prev, u_t, e0)
            d_prev, du, de = vjp(cot)
        else:
            _, vjp = jax.vjp(lambda c, e: walk.step(c, u_t, e, m_t), prev, e0)
            (d_prev, de), du = vjp(cot), None
        out = {"K": K, "g": unit(de)[0]}
        if need_input:
            out["du"] = unit(du)
        ln, u = unit(d_prev)
        kn, fn = split(ln)
        return (K + kn, fn, u), out

    k0, f0 = split(dc[0])
    xs = (s["prev"], s["u"], s["mask"], ly, uy)
    _, out = jax.lax.scan(body, (k0, f0, dc[1]), xs, reverse=True)
    back = lambda a: _time_order(walk, jnp.swapaxes(a, 0, 1), lengths)
    K = out["K"].astype(out["g"].dtype)
    log_g = back(K + out["g"])
    if not need_input:
        return log_g, None
    lu, uu = back(K + out["du"][0]), back(out["du"][1])
    if walk.to_input is None:
        return log_g, (lu, uu)
    (ux,) = walk.to_input(uu)
    return log_g, scale(ux, lu, 2)


# -- the layers of a stack, tapped -----------------------------------------------------------
def walks_of(layer: Any, x: Array, carry0: Any) -> list[Walk]:
    """A layer's recurrences: a bidirectional layer's two directions, else one."""
    if isinstance(layer, Bidirectional):
        return [_cell_walk(layer.forward, x, carry0[0]), _cell_walk(layer.backward, x, carry0[1])]
    if isinstance(layer, Recurrent):
        return [_cell_walk(layer, x, carry0)]
    return [_layer_walk(layer, x, carry0)]


class Tap:
    """Stands in for one layer of a copy of the stack (other attributes read through to it).
    Recording: runs the layer step by step, saving what the backward recursion needs. With
    ``_replay`` set to zero perturbations (of the outputs, of the final carry): returns the
    recorded outputs and final carry plus them, so their gradients are the direct ones."""

    def __init__(self, layer: Any, below: Tap | None):
        self._layer, self._below = layer, below
        self._replay: tuple[Array, Any] | None = None
        self._out: Any = None
        self._walks: list[Walk] = []

    def __getattr__(self, name: str) -> Any:  # the stack reads its layers' cells and sizes
        if "_layer" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["_layer"], name)

    def __call__(self, x, *, lengths=None, initial_carry=None, h_perturb=None):
        if self._below is not None and x is not self._below._out:
            raise RunError(
                "the probe needs each recurrent layer's output to feed the next layer "
                "unchanged; this stack transforms it in between"
            )
        if self._replay is not None:
            dy, dc = self._replay
            self._out = self._y + dy
            return self._out, jax.tree.map(jnp.add, self._carry, dc)
        x, layer, self._lengths = jax.lax.stop_gradient(x), self._layer, lengths
        c0 = layer.initial_carry(x.shape[0]) if initial_carry is None else initial_carry
        mask = None if lengths is None else length_mask(lengths, x.shape[1]).T
        self._walks = walks_of(layer, x, c0)
        ys, carries = zip(*[run_forward(w, mask, lengths) for w in self._walks], strict=True)
        if isinstance(layer, Bidirectional):
            self._y = jnp.concatenate(ys, -1) if layer.merge == "concat" else ys[0] + ys[1]
            self._carry = tuple(carries)
        else:
            self._y, self._carry = ys[0], carries[0]
        self._out = self._y
        return self._y, self._carry

    def _backprop(
        self, dy: Scaled, dcarry: Any, bottom_input: bool = False
    ) -> tuple[Array, Scaled | None]:
        """log g (B, T) of the (first) walk, and the input's scaled cotangents (None for the
        bottom layer unless ``bottom_input``: only the residual quantity needs it)."""
        if len(self._walks) == 1:
            parts, dcs = [dy], [dcarry]
        elif self._layer.merge == "concat":
            h = dy[1].shape[-1] // 2
            parts = [scale(dy[1][..., :h], dy[0], 2), scale(dy[1][..., h:], dy[0], 2)]
            dcs = list(dcarry)
        else:
            parts, dcs = [dy, dy], list(dcarry)
        need = self._below is not None or bottom_input
        res = [
            run_backward(w, d, unit(c), self._lengths, need)
            for w, d, c in zip(self._walks, parts, dcs, strict=True)
        ]
        if not need:
            return res[0][0], None
        return res[0][0], functools.reduce(lambda a, b: add(a, b, 2), [r[1] for r in res])


def find_stack(model: Any) -> RNNStack:
    """The recurrent stack the probe measures (a model's ``rnn``)."""
    stack = getattr(model, "rnn", None)
    if not isinstance(stack, RNNStack):
        raise RunError(
            f"{type(model).__name__} has no `rnn` stack to probe "
            "(the probe supports language models and many-to-one models)"
        )
    return stack


def tap_stack(model: Any) -> tuple[Any, list[Tap]]:
    """A copy of ``model`` whose stack's layers are taps (the model itself is untouched)."""
    find_stack(model)
    copy = nnx.merge(*nnx.split(model))
    stack = find_stack(copy)
    taps: list[Tap] = []
    for i in range(len(stack.layers)):
        taps.append(Tap(stack.layers[i], taps[-1] if taps else None))
        stack.layers[i] = taps[-1]
    return copy, taps


#: what the probe measures: ``state`` g_t = ||dL/dh_t|| of each layer's recurrent state;
#: ``residual`` ||dL/dx_t|| of each layer's input x_t (the residual stream of a block stack;
#: the one-hot vector for a bare bottom layer on tokens): defined for every sequence mixer
QUANTITIES = ("state", "residual")


def log10_grad_norms(
    model: Any, task: Any, batch: dict[str, Array], quantity: str = "state"
) -> Array:
    """(num_layers, T) array of log10 g_t (``QUANTITIES``), g averaged over the batch (forward
    direction of a bidirectional layer); -inf where g is exactly 0 (padded steps of every
    example). Needs mixers with a recurrent state (``provides``: state). Pure in the model's
    parameters: jit it."""
    if quantity not in QUANTITIES:
        raise ValueError(f"unknown probe quantity {quantity!r}; choose one of {QUANTITIES}")
    copy, taps = tap_stack(model)
    task.loss(copy, batch, carry=None)  # record: forward once, carries saved
    if any(t._out is None for t in taps):
        raise RunError("the probe's loss did not run the model's recurrent stack")
    deltas0 = [(jnp.zeros_like(t._y), jax.tree.map(jnp.zeros_like, t._carry)) for t in taps]

    def loss(deltas):
        for t, d in zip(taps, deltas, strict=True):
            t._replay = d
        _, (metrics, _) = task.loss(copy, batch, carry=None)
        return metrics["loss"][0]

    direct = jax.grad(loss)(deltas0)  # per-step gradients, the recurrence cut
    rows: list[Array] = []
    inputs: list[Array] = []  # log ||dL/dx|| (B, T) of each layer's input, top layer first
    above: Scaled | None = None
    for i, (t, (gy, gc)) in enumerate(zip(reversed(taps), reversed(direct), strict=True)):
        dy = unit(gy, 2)
        if above is not None:
            dy = add(dy, above, 2)
            inputs.append(dy[0])  # the total cotangent of this layer's output: the next
        bottom = quantity == "residual" and i == len(taps) - 1  # layer's input
        log_g, above = t._backprop(dy, gc, bottom_input=bottom)
        rows.append(log_mean(log_g, axis=0) / math.log(10))
    if quantity == "residual":
        inputs.append(above[0])
        rows = [log_mean(lg, axis=0) / math.log(10) for lg in inputs]
    return jnp.stack(rows[::-1])
