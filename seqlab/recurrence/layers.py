"""Recurrent layers: one direction (``Recurrent``), both (``Bidirectional``), stacked
(``RNNStack``).

A layer projects the inputs of *all* timesteps in one matmul (``cell.project``, as cuDNN
does), then runs only the recurrent half of each step over time on the engine that
``backend`` picks (``engines.py``: ``scan.py``, ``fast.py``, ``parallel.py``, ...). There is
no Python loop over time; compile time does not depend on the sequence length. Padded steps
(``lengths``) are inert; a reverse layer reads each example's valid prefix backwards.

The gradient-norm probe perturbs every hidden state through ``perturbed(stack, eps)``, a
context read while tracing, so no model signature carries probe arguments.
"""

from __future__ import annotations

import contextlib
import contextvars
import numbers
from collections.abc import Iterator
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells import CELLS, MIXERS, Carry, Cell, default_block, make_cell, make_mixer
from seqlab.config import DEFAULTS
from seqlab.errors import ConfigError, UsageError
from seqlab.recurrence.blocks import BLOCKS, InputProjection, ResidualBlock
from seqlab.recurrence.cudnn import run_layer
from seqlab.recurrence.engines import BACKENDS as BACKENDS  # re-exported: its old import path
from seqlab.recurrence.engines import ENGINES, resolve_backend
from seqlab.recurrence.mamba_block import MambaBlock

Array = jax.Array
D = DEFAULTS.model

_PERTURB: contextvars.ContextVar[dict[int, list[Any]] | None] = contextvars.ContextVar(
    "seqlab_perturb", default=None
)


@contextlib.contextmanager
def perturbed(stack: RNNStack, eps: list[Any]) -> Iterator[None]:
    """While tracing inside this block, ``stack`` adds ``eps[layer]`` (B, T, H) -- a
    ``(forward, backward)`` pair for a bidirectional layer -- to each h_t before it feeds step
    t+1 and the output; differentiating w.r.t. eps gives dL/dh_t for every t at once."""
    token = _PERTURB.set({**(_PERTURB.get() or {}), id(stack): eps})
    try:
        yield
    finally:
        _PERTURB.reset(token)


class Recurrent(nnx.Module):
    """One layer, one direction: hoisted input projection + an engine over time.

    ``backend`` is what was asked (``BACKENDS``); ``engine`` is what runs (``fast`` falls back
    to ``scan`` where the cell has no kernels, ``cudnn`` to ``fast`` where cuDNN cannot run
    the layer, said once in the log; ``cudnn`` does the input projection itself)."""

    def __init__(
        self,
        cell: Cell,
        *,
        reverse: bool = False,
        unroll: int = D.unroll,
        remat: bool = D.remat,
        backend: str = D.backend,
        chunk_size: int = D.chunk_size,
    ):
        self.engine = resolve_backend(cell, backend)  # fails here, not inside a trace
        for name, n, low in (("chunk_size", chunk_size, 0), ("unroll", unroll, 1)):
            if not isinstance(n, numbers.Integral) or n < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {n!r}")
        self.cell = cell
        self.reverse = reverse
        self.unroll = unroll
        self.remat = remat
        self.backend = backend
        self.chunk_size = chunk_size

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
        engine = self.engine
        if engine == "cudnn":  # x itself: cuDNN does the input projection
            kw = {"lengths": lengths, "reverse": self.reverse, "h_perturb": h_perturb}
            out = run_layer((self.cell,), x, carry, **kw)
            if out is not None:
                return out
            engine = resolve_backend(self.cell, "fast")  # run_layer said why
        xp = self.cell.project(x)
        return ENGINES[engine](
            self.cell,
            xp,
            carry,
            lengths=lengths,
            reverse=self.reverse,
            h_perturb=h_perturb,
            unroll=self.unroll,
            remat=self.remat,
            chunk=self.chunk_size,
        )

    def step(self, carry: Carry, x: Array) -> tuple[Carry, Array]:
        """One timestep (decoding): x (B, F) -> (carry, output (B, H))."""
        cell = self.cell
        return cell.step(cell.recurrent_params(), carry, cell.project(x))


class Bidirectional(nnx.Module):
    """A forward and a reverse layer over the same input, merged by ``concat`` or ``sum``.

    Carries (in and out) and probe perturbations are ``(forward, backward)`` pairs.
    """

    def __init__(self, forward: Recurrent, backward: Recurrent, merge: str = "concat"):
        if merge not in ("concat", "sum"):
            raise ConfigError(f"unknown merge {merge!r}; choose 'concat' or 'sum'")
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
        fwd, bwd = self.forward, self.backward
        cudnn = getattr(fwd, "engine", "") == getattr(bwd, "engine", "") == "cudnn"
        if cudnn and bwd.reverse and not fwd.reverse:
            init = self.initial_carry(x.shape[0]) if initial_carry is None else initial_carry
            out = run_layer((fwd.cell, bwd.cell), x, init, lengths=lengths, h_perturb=h_perturb)
            if out is not None:  # one bidirectional cuDNN call, outputs [forward, reverse]
                y, carry = out
                h = fwd.output_size
                return (y if self.merge == "concat" else y[..., :h] + y[..., h:]), carry
        cf, cb = (None, None) if initial_carry is None else initial_carry
        pf, pb = (None, None) if h_perturb is None else h_perturb
        yf, cf = self.forward(x, lengths=lengths, initial_carry=cf, h_perturb=pf)
        yb, cb = self.backward(x, lengths=lengths, initial_carry=cb, h_perturb=pb)
        y = jnp.concatenate([yf, yb], axis=-1) if self.merge == "concat" else yf + yb
        return y, (cf, cb)


def dropout_key(rng: Array, site: int) -> Array:
    """The dropout key of one dropout site in a model: the step's key folded with the site.
    Sites: 1..L-1 between stacked layers, ``OUTPUT_SITE`` after the top layer (the train step
    folds its key with the step first: ``seqlab.run.state``)."""
    return jax.random.fold_in(rng, site)


OUTPUT_SITE = 10_000


def resolve_block(block: str, cell: str) -> str:
    """``auto``: the mixer's ``DEFAULT_BLOCK`` (residual for linear recurrences, matrix
    states and attention; Mamba's own block for mamba; bare layers for the nonlinear cells).
    Mamba's block holds mamba only, and mamba needs a width-preserving block."""
    if block not in BLOCKS:
        raise ConfigError(f"unknown block {block!r}; choose one of {BLOCKS}")
    if (block == "mamba") != (cell == "mamba") and block != "auto":
        if cell == "mamba" and block == "residual":
            return block
        raise ConfigError(
            f"block={block!r} with cell={cell!r}: Mamba's block is for cell=mamba, and mamba "
            "runs in block=mamba or residual"
        )
    if block != "auto":
        return block
    if cell in MIXERS or cell in CELLS:  # each mixer says which block it runs in
        return default_block(cell)
    return "none"  # (make_cell names an unknown cell)


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
        num_layers: int = D.num_layers,
        *,
        bidirectional: bool = D.bidirectional,
        merge: str = "concat",
        dropout: float = D.dropout,
        unroll: int = D.unroll,
        remat: bool = D.remat,
        backend: str = D.backend,
        chunk_size: int = D.chunk_size,
        block: str = D.block,
        block_out: str = D.block_out,
        block_mlp: bool = D.block_mlp,
        cell_kwargs: dict[str, Any] | None = None,
        input_fan_in: int = 0,
        rngs: nnx.Rngs,
    ):
        """``input_fan_in``: how many of the ``in_features`` inputs are active at once, for
        the first layer's LeCun-scaled input kernel (1 for one-hot inputs; 0 = all of them,
        Flax's default); see ``Cell.rescale_input_fan_in``."""
        if num_layers < 1:
            raise ConfigError(f"num_layers must be >= 1, got {num_layers}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        kw = dict(cell_kwargs or {})
        opts = {"unroll": unroll, "remat": remat, "backend": backend, "chunk_size": chunk_size}
        self.block = resolve_block(block, cell)
        if self.block != "none" and bidirectional:
            raise ConfigError(f"{self.block} blocks are unidirectional; use block='none'")
        dtype = kw.get("param_dtype", jnp.float32)
        residual = self.block != "none"  # the block keeps the width: project the inputs
        self.input_proj = (
            InputProjection(in_features, hidden_size, param_dtype=dtype, rngs=rngs)
            if residual
            else None
        )
        if residual and input_fan_in:
            self.input_proj.rescale_input_fan_in(input_fan_in)
        in_features = hidden_size if residual else in_features
        layers = []
        size = in_features

        def new_cell(first: bool) -> Cell:
            c = make_cell(cell, size, hidden_size, rngs=rngs, **kw)
            if first and input_fan_in and not residual:
                c.rescale_input_fan_in(input_fan_in)
            return c

        if cell in MIXERS and not residual:
            raise ConfigError(f"{cell!r} runs in residual blocks; use block='auto' or 'residual'")

        def new_layer(first: bool) -> nnx.Module:  # a layer mixer, or a cell run over time
            if cell in MIXERS:
                return make_mixer(cell, size, hidden_size, rngs=rngs, **kw)
            return Recurrent(new_cell(first), **opts)

        for i in range(num_layers):
            fwd = new_layer(i == 0)
            if self.block == "residual":
                fwd = ResidualBlock(fwd, out=block_out, mlp=block_mlp, param_dtype=dtype, rngs=rngs)
            elif self.block == "mamba":
                fwd = MambaBlock(fwd, param_dtype=dtype, rngs=rngs)
            if bidirectional:
                bwd = Recurrent(new_cell(i == 0), reverse=True, **opts)
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

    @classmethod
    def build(
        cls,
        in_features: int,
        *,
        cell: str = D.cell,
        hidden_size: int = D.hidden_size,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
        **options: Any,
    ) -> RNNStack:
        """The stack a model embeds: ``options`` are this class's keyword options
        (num_layers, bidirectional, merge, dropout, unroll, remat, backend, cell_kwargs);
        ``param_dtype`` reaches every cell. The models forward their ``**stack`` here, so
        the stack's options and defaults are declared once."""
        kw = {"param_dtype": param_dtype, **(options.pop("cell_kwargs", None) or {})}
        return cls(cell, in_features, hidden_size, cell_kwargs=kw, rngs=rngs, **options)

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
    ) -> tuple[Array, dict[str, Any]]:
        if train and self.dropout_rate > 0 and rng is None:
            raise UsageError("dropout needs an rng when train=True")
        h_perturb = (_PERTURB.get() or {}).get(id(self))
        if self.input_proj is not None:
            x = self.input_proj(x)
        hidden_states, carries = [], []
        for i, layer in enumerate(self.layers):
            if i > 0 and train and self.dropout_rate > 0:
                x = self.dropout(x, deterministic=False, rngs=dropout_key(rng, i))
            c0 = None if initial_carry is None else initial_carry[i]
            p = None if h_perturb is None else h_perturb[i]
            x, c = layer(x, lengths=lengths, initial_carry=c0, h_perturb=p)
            hidden_states.append(x)
            carries.append(c)
        return x, {"hidden_states": hidden_states, "final_carry": carries}

    def step(self, carry: list[Carry], x: Array) -> tuple[list[Carry], Array]:
        """One timestep through every layer (decoding); x is (B, F). Unidirectional only."""
        if self.bidirectional:
            raise UsageError("step-by-step decoding needs a unidirectional stack")
        new = []
        if self.input_proj is not None:
            x = self.input_proj(x)
        for layer, c in zip(self.layers, carry, strict=True):
            c, x = layer.step(c, x)
            new.append(c)
        return new, x

    def last_output(self, y: Array, lengths: Array | None = None) -> Array:
        """Each example's output ``y`` (B, T, F) at its last valid step: what a
        unidirectional stack of any cell or block read out last (for bare nonlinear layers
        it equals ``top_hidden`` of the final carry)."""
        T = y.shape[1]
        last = jnp.full((y.shape[0],), T - 1) if lengths is None else jnp.maximum(lengths - 1, 0)
        return jnp.take_along_axis(y, last[:, None, None], axis=1)[:, 0]

    def top_hidden(self, carry: list[Carry]) -> Array:
        """The last layer's hidden state from a stack carry (forward, backward concatenated)."""
        c = carry[-1]
        if self.bidirectional:
            f, b = self.layers[-1].forward.cell, self.layers[-1].backward.cell
            return jnp.concatenate([f.hidden(c[0]), b.hidden(c[1])], axis=-1)
        return self.layers[-1].cell.hidden(c)
