"""Recurrence over time, cell-agnostic: the layers (``Recurrent``, ``Bidirectional``,
``RNNStack``) and the engines that run a cell's step over a sequence.

Engines (``backend``, resolved once per layer in ``engines.py``): ``scan`` differentiates
``lax.scan`` of ``cell.step`` by autodiff (``scan.py``; every JAX transform works); ``fast``
runs the cell's own forward/backward kernels under a ``custom_vjp`` (``fast.py``; reverse
mode only, faster). A cell without kernels runs ``scan`` whatever is asked.
"""

from seqlab.recurrence.engines import BACKENDS
from seqlab.recurrence.layers import Bidirectional, Recurrent, RNNStack
from seqlab.recurrence.scan import flip_sequences, length_mask, run_cell

__all__ = [
    "BACKENDS",
    "Bidirectional",
    "RNNStack",
    "Recurrent",
    "flip_sequences",
    "length_mask",
    "run_cell",
]
