"""The sequence mixers, and the one registry configs pick them from by name (``model.cell``).

A sequence mixer is what a layer of the stack runs over time. Two kinds register here:

- ``CELLS``: recurrent cells (pure step math, ``base.Cell``); ``seqlab.recurrence`` wraps
  each in a ``Recurrent`` layer that runs it over time on an engine (scan, fast kernels,
  parallel scan). Adding one: a ``Cell`` subclass in its own file (see ``mgu.py``) and one
  line in ``CELLS``.
- ``MIXERS``: layer mixers that own their sequence form (``attention.py``). Adding one: an
  ``nnx.Module`` class in its own file built as ``cls(in_features, hidden_size, *, rngs,
  **options)``, with ``output_size``, ``initial_carry(batch_size)``, ``__call__(x, *,
  lengths, initial_carry, h_perturb) -> (y, carry)`` and, if it offers a step, ``step(carry,
  x_t) -> (carry, y_t)``; then one line in ``MIXERS`` (and its config keys in
  ``seqlab.models.build.CELL_OPTIONS``; widths it refuses, e.g. heads that must divide
  ``hidden_size``, in ``build.WIDTH_MULTIPLE`` so ``num_params``-matched sweeps skip them).

Both state ``PROVIDES`` and ``DEFAULT_BLOCK`` as class attributes. Code that runs models asks
``provides(name)`` (or a built layer's ``PROVIDES``), never the type:

- ``sequence``: the whole-sequence call above (every mixer);
- ``step``: one token at a time with a carry (generation, seq2seq decoding);
- ``parallel``: the sequence form is parallel over time (associative scan, attention);
- ``state``: a fixed-size recurrent state: the carry has the cell's ``hidden`` view and
  ``h_perturb`` perturbs it (the log-space dL/dh_t probe, a final state to read out);
- ``window``: the carry is a key/value window of the last ``window`` positions.

``default_block(name)`` is what ``model.block=auto`` gives (``residual`` or ``none``); a mixer
whose class sets ``BLOCK_MLP = True`` (attention) always gets the block's MLP sub-block.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from seqlab.cells.attention import CausalSelfAttention
from seqlab.cells.base import ACTIVATIONS, INIT_PRESETS, Carry, Cell, init_kernels
from seqlab.cells.deltanet import DeltaNetCell, GatedDeltaNetCell
from seqlab.cells.gru import GRUCell
from seqlab.cells.kernels import Kernels
from seqlab.cells.linear import LinearCell
from seqlab.cells.lru import LRUCell
from seqlab.cells.lstm import LSTMCell
from seqlab.cells.mamba import MambaCell
from seqlab.cells.mgu import MGUCell
from seqlab.cells.mingru import MinGRUCell, MinLSTMCell
from seqlab.cells.mlstm import MLSTMCell
from seqlab.cells.rglru import RGLRUCell
from seqlab.cells.rnn import IRNNCell, RNNCell
from seqlab.cells.slstm import SLSTMCell
from seqlab.errors import ConfigError

CELLS: dict[str, tuple[type[Cell], dict[str, Any]]] = {
    "rnn": (RNNCell, {}),
    "irnn": (IRNNCell, {}),
    "lstm": (LSTMCell, {}),
    "gru": (GRUCell, {"reset_after": True}),
    "gru_reset_before": (GRUCell, {"reset_after": False}),
    "mgu": (MGUCell, {}),
    # diagonal linear recurrences (parallel scan; residual blocks by default)
    "lru": (LRUCell, {}),
    "mingru": (MinGRUCell, {}),
    "minlstm": (MinLSTMCell, {}),
    "rglru": (RGLRUCell, {}),
    "mamba": (MambaCell, {}),  # S6, in Mamba's block (seqlab.recurrence.mamba_block)
    # nonlinear, exponential gating, block-diagonal heads (xLSTM)
    "slstm": (SLSTMCell, {}),
    # matrix states per head (autodiff scan)
    "mlstm": (MLSTMCell, {}),
    "deltanet": (DeltaNetCell, {}),
    "gated_deltanet": (GatedDeltaNetCell, {}),
}


#: layer mixers that run their own sequence form (the module doc says what they implement)
MIXERS: dict[str, tuple[type[nnx.Module], dict[str, Any]]] = {
    "attention": (CausalSelfAttention, {}),
}


def mixer_names() -> list[str]:
    """Every name ``model.cell`` takes: the cells and the layer mixers."""
    return sorted({**CELLS, **MIXERS})


def _mixer_class(name: str) -> type:
    entry = CELLS.get(name) or MIXERS.get(name)
    if entry is None:
        raise ConfigError(f"unknown sequence mixer {name!r}; choose one of {mixer_names()}")
    return entry[0]


def provides(name: str) -> frozenset[str]:
    """What the mixer ``name`` offers: a subset of sequence, step, parallel, state, window."""
    return frozenset(_mixer_class(name).PROVIDES)


def default_block(name: str) -> str:
    """The block ``model.block=auto`` puts the mixer ``name`` in: ``residual``, ``none`` or
    ``mamba`` (Mamba's own, for cell=mamba)."""
    return str(_mixer_class(name).DEFAULT_BLOCK)


def make_mixer(
    name: str, in_features: int, hidden_size: int, *, rngs: nnx.Rngs, **kwargs: Any
) -> nnx.Module:
    """Builds a registered layer mixer (``MIXERS``); ``kwargs`` override its defaults."""
    if name not in MIXERS:
        raise ConfigError(f"unknown layer mixer {name!r}; choose one of {sorted(MIXERS)}")
    cls, defaults = MIXERS[name]
    return cls(in_features, hidden_size, rngs=rngs, **{**defaults, **kwargs})


def make_cell(
    name: str, in_features: int, hidden_size: int, *, rngs: nnx.Rngs, **kwargs: Any
) -> Cell:
    """Builds a registered cell; ``kwargs`` override the registry defaults."""
    if name not in CELLS:
        raise ConfigError(f"unknown cell {name!r}; choose one of {sorted(CELLS)}")
    cls, defaults = CELLS[name]
    return cls(in_features, hidden_size, rngs=rngs, **{**defaults, **kwargs})


__all__ = [
    "ACTIVATIONS",
    "CELLS",
    "MIXERS",
    "CausalSelfAttention",
    "INIT_PRESETS",
    "Carry",
    "Cell",
    "GRUCell",
    "IRNNCell",
    "Kernels",
    "LRUCell",
    "LinearCell",
    "MinGRUCell",
    "MinLSTMCell",
    "RGLRUCell",
    "LSTMCell",
    "MGUCell",
    "RNNCell",
    "default_block",
    "init_kernels",
    "make_cell",
    "make_mixer",
    "mixer_names",
    "provides",
]
