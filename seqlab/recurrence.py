"""Recurrence over time: one ``lax.scan`` per layer and direction, stacked and bidirectional.

A layer projects the inputs of *all* timesteps in one matmul (``cell.project``, as cuDNN
does), then scans only the recurrent matmul and nonlinearities (``cell.step``). There is no
Python loop over time; compile time does not depend on the sequence length.

Variable lengths: with per-example ``lengths``, padded steps leave the carry unchanged and
emit zeros, so the final carry is the state at each example's last valid step. A reverse
layer reads each example's valid prefix backwards (padding stays at the end).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells import Carry, Cell, make_cell

Array = jax.Array


def flip_sequences(x: Array, lengths: Array) -> Array:
    """Reverses the first ``lengths[b]`` steps of each row of ``x`` (B, T, ...)."""
    t = jnp.arange(x.shape[1])[None, :]
    idx = jnp.where(t < lengths[:, None], lengths[:, None] - 1 - t, t)
    return jax.vmap(lambda row, i: row[i])(x, idx)


def length_mask(lengths: Array, max_len: int) -> Array:
    """(B, T) boolean: True at valid steps."""
    return jnp.arange(max_len)[None, :] < lengths[:, None]


def run_cell(
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
    """Scans ``cell.step`` over projected inputs ``xp`` (B, T, G*H).

    ``h_perturb`` (B, T, H), if given, is added to h_t inside the scan before it feeds step
    t+1 and the output; differentiating w.r.t. it gives dL/dh_t for every t in one backward
    pass (the gradient-norm probe). Returns (outputs (B, T, H), final carry).
    """
    params = cell.recurrent_params()
    flip = reverse and lengths is not None
    if flip:
        xp = flip_sequences(xp, lengths)
        h_perturb = None if h_perturb is None else flip_sequences(h_perturb, lengths)
    xs: dict[str, Array] = {"xp": jnp.swapaxes(xp, 0, 1)}
    if lengths is not None:
        xs["mask"] = length_mask(lengths, xp.shape[1]).T
    if h_perturb is not None:
        xs["eps"] = jnp.swapaxes(h_perturb, 0, 1)

    def body(c: Carry, x: dict[str, Array]) -> tuple[Carry, Array]:
        new_c, h = cell.step(params, c, x["xp"])
        if "eps" in x:
            h = h + x["eps"].astype(h.dtype)
            new_c = cell.set_hidden(new_c, h)
        if "mask" in x:
            m = x["mask"][:, None]
            new_c = jax.tree.map(lambda n, o: jnp.where(m, n, o), new_c, c)
            h = jnp.where(m, h, jnp.zeros_like(h))
        return new_c, h

    if remat:
        body = jax.checkpoint(body)
    carry, ys = jax.lax.scan(body, carry, xs, reverse=reverse and not flip, unroll=unroll)
    ys = jnp.swapaxes(ys, 0, 1)
    if flip:
        ys = flip_sequences(ys, lengths)
    return ys, carry


BACKENDS = ("scan", "fast")


def get_runner(backend: str) -> Callable[..., tuple[Array, Carry]]:
    """``scan``: ``run_cell``, plain autodiff of ``lax.scan`` (every JAX transform works).
    ``fast``: ``seqlab.fastscan.run_cell_fast``, same values and gradients with a hand-written
    backward pass (reverse mode only), faster on CPU; see docs/BENCHMARKS.md."""
    if backend == "scan":
        return run_cell
    if backend == "fast":
        from seqlab.fastscan import run_cell_fast  # fastscan builds on this module

        return run_cell_fast
    raise ValueError(f"unknown recurrence backend {backend!r}; choose one of {BACKENDS}")


class Recurrent(nnx.Module):
    """One layer, one direction: hoisted input projection + scan (``backend``: BACKENDS)."""

    def __init__(
        self,
        cell: Cell,
        *,
        reverse: bool = False,
        unroll: int = 1,
        remat: bool = False,
        backend: str = "scan",
    ):
        get_runner(backend)  # fail at construction, not inside a trace
        self.cell = cell
        self.reverse = reverse
        self.unroll = unroll
        self.remat = remat
        self.backend = backend

    @property
    def output_size(self) -> int:
        return self.cell.hidden_size

    def initial_carry(self, batch_size: int) -> Carry:
        return self.cell.initial_carry(batch_size)

    def __call__(
        self,
        x: Array,
        *,
        lengths: Array | None = None,
        initial_carry: Carry | None = None,
        h_perturb: Array | None = None,
    ) -> tuple[Array, Carry]:
        carry = self.initial_carry(x.shape[0]) if initial_carry is None else initial_carry
        xp = self.cell.project(x)
        return get_runner(self.backend)(
            self.cell,
            xp,
            carry,
            lengths=lengths,
            reverse=self.reverse,
            h_perturb=h_perturb,
            unroll=self.unroll,
            remat=self.remat,
        )


class Bidirectional(nnx.Module):
    """A forward and a reverse layer over the same input, merged by ``concat`` or ``sum``.

    Carries (in and out) and probe perturbations are ``(forward, backward)`` pairs.
    """

    def __init__(self, forward: Recurrent, backward: Recurrent, merge: str = "concat"):
        if merge not in ("concat", "sum"):
            raise ValueError(f"unknown merge {merge!r}; choose 'concat' or 'sum'")
        self.forward = forward
        self.backward = backward
        self.merge = merge

    @property
    def output_size(self) -> int:
        h = self.forward.output_size
        return 2 * h if self.merge == "concat" else h

    def initial_carry(self, batch_size: int) -> Carry:
        return (self.forward.initial_carry(batch_size), self.backward.initial_carry(batch_size))

    def __call__(
        self,
        x: Array,
        *,
        lengths: Array | None = None,
        initial_carry: Carry | None = None,
        h_perturb: Any = None,
    ) -> tuple[Array, Carry]:
        cf, cb = (None, None) if initial_carry is None else initial_carry
        pf, pb = (None, None) if h_perturb is None else h_perturb
        yf, cf = self.forward(x, lengths=lengths, initial_carry=cf, h_perturb=pf)
        yb, cb = self.backward(x, lengths=lengths, initial_carry=cb, h_perturb=pb)
        y = jnp.concatenate([yf, yb], axis=-1) if self.merge == "concat" else yf + yb
        return y, (cf, cb)


class RNNStack(nnx.Module):
    """``num_layers`` recurrent layers (optionally bidirectional), dropout between layers.

    ``__call__`` returns ``(outputs, aux)``; aux holds ``hidden_states`` (each layer's
    outputs) and ``final_carry`` (a list, one carry per layer). ``initial_carry`` in has the
    same structure, so carries chain across calls (stateful truncated BPTT, decoding).
    """

    def __init__(
        self,
        cell: str,
        in_features: int,
        hidden_size: int,
        num_layers: int = 1,
        *,
        bidirectional: bool = False,
        merge: str = "concat",
        dropout: float = 0.0,
        unroll: int = 1,
        remat: bool = False,
        backend: str = "scan",
        cell_kwargs: dict[str, Any] | None = None,
        rngs: nnx.Rngs,
    ):
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        kw = dict(cell_kwargs or {})
        opts = {"unroll": unroll, "remat": remat, "backend": backend}
        layers = []
        size = in_features
        for _ in range(num_layers):
            fwd = Recurrent(make_cell(cell, size, hidden_size, rngs=rngs, **kw), **opts)
            if bidirectional:
                bwd = Recurrent(
                    make_cell(cell, size, hidden_size, rngs=rngs, **kw), reverse=True, **opts
                )
                layer: nnx.Module = Bidirectional(fwd, bwd, merge)
            else:
                layer = fwd
            layers.append(layer)
            size = layer.output_size
        self.layers = nnx.List(layers)
        self.bidirectional = bidirectional
        self.hidden_size = hidden_size
        self.output_size = size
        self.dropout = nnx.Dropout(dropout)
        self.dropout_rate = dropout

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    def initial_carry(self, batch_size: int) -> list[Carry]:
        return [layer.initial_carry(batch_size) for layer in self.layers]

    def __call__(
        self,
        x: Array,
        *,
        lengths: Array | None = None,
        initial_carry: list[Carry] | None = None,
        train: bool = False,
        rng: Array | None = None,
        h_perturb: list[Any] | None = None,
    ) -> tuple[Array, dict[str, Any]]:
        if train and self.dropout_rate > 0 and rng is None:
            raise ValueError("dropout needs an rng when train=True")
        hidden_states, carries = [], []
        for i, layer in enumerate(self.layers):
            if i > 0 and train and self.dropout_rate > 0:
                x = self.dropout(x, deterministic=False, rngs=jax.random.fold_in(rng, i))
            c0 = None if initial_carry is None else initial_carry[i]
            p = None if h_perturb is None else h_perturb[i]
            x, c = layer(x, lengths=lengths, initial_carry=c0, h_perturb=p)
            hidden_states.append(x)
            carries.append(c)
        return x, {"hidden_states": hidden_states, "final_carry": carries}

    def step(self, carry: list[Carry], x: Array) -> tuple[list[Carry], Array]:
        """One timestep through every layer (decoding); x is (B, F). Unidirectional only."""
        if self.bidirectional:
            raise ValueError("step-by-step decoding needs a unidirectional stack")
        new = []
        for layer, c in zip(self.layers, carry, strict=True):
            cell = layer.cell
            c, x = cell.step(cell.recurrent_params(), c, cell.project(x))
            new.append(c)
        return new, x

    def top_hidden(self, carry: list[Carry]) -> Array:
        """The last layer's hidden state from a stack carry (forward, backward concatenated)."""
        c = carry[-1]
        if self.bidirectional:
            f, b = self.layers[-1].forward.cell, self.layers[-1].backward.cell
            return jnp.concatenate([f.hidden(c[0]), b.hidden(c[1])], axis=-1)
        return self.layers[-1].cell.hidden(c)
