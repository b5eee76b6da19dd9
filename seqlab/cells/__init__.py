"""Recurrent cells and the registry configs pick them from by name.

Adding a cell: write a ``Cell`` subclass in its own file (see ``mgu.py``: its step math as
fast kernels, or just a ``step``) and add one line to ``CELLS``.
"""

from __future__ import annotations

from typing import Any

from flax import nnx

from seqlab.cells.base import ACTIVATIONS, INIT_PRESETS, Carry, Cell, init_kernels
from seqlab.cells.gru import GRUCell
from seqlab.cells.kernels import Kernels
from seqlab.cells.linear import LinearCell
from seqlab.cells.lru import LRUCell
from seqlab.cells.lstm import LSTMCell
from seqlab.cells.mgu import MGUCell
from seqlab.cells.mingru import MinGRUCell, MinLSTMCell
from seqlab.cells.rglru import RGLRUCell
from seqlab.cells.rnn import IRNNCell, RNNCell

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
}


def make_cell(
    name: str, in_features: int, hidden_size: int, *, rngs: nnx.Rngs, **kwargs: Any
) -> Cell:
    """Builds a registered cell; ``kwargs`` override the registry defaults."""
    if name not in CELLS:
        raise ValueError(f"unknown cell {name!r}; choose one of {sorted(CELLS)}")
    cls, defaults = CELLS[name]
    return cls(in_features, hidden_size, rngs=rngs, **{**defaults, **kwargs})


__all__ = [
    "ACTIVATIONS",
    "CELLS",
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
    "init_kernels",
    "make_cell",
]
