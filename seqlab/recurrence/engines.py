"""Which engine runs a cell over time: the engines (``ENGINES``), what ``backend`` may ask
for (``BACKENDS``), and ``resolve_backend``, which turns the ask into the engine that runs
(falling back, said once in the log, where the cell or the platform cannot run it). The
layers (``layers.py``) call it once, when built, so a bad backend fails there and not inside
a trace.
"""

from __future__ import annotations

from collections.abc import Callable

import jax

from seqlab.cells import Carry, Cell
from seqlab.cells.linear import LinearCell
from seqlab.errors import ConfigError
from seqlab.recurrence.chunked import run_chunked
from seqlab.recurrence.cudnn import cudnn_unavailable, say_fallback
from seqlab.recurrence.fast import fast_unavailable, run_cell_fast, say_once
from seqlab.recurrence.parallel import run_linear
from seqlab.recurrence.scan import run_cell

Array = jax.Array

#: Engines over time: ``scan`` differentiates ``lax.scan`` of ``cell.step`` (every JAX
#: transform works); ``fast`` runs a nonlinear cell's hand-written backward (reverse mode
#: only, faster; see docs/BENCHMARKS.md); ``parallel`` is a linear cell's associative scan.
ENGINES: dict[str, Callable[..., tuple[Array, Carry]]] = {
    "scan": run_cell,
    "fast": run_cell_fast,
    "parallel": run_linear,
    "chunked": run_chunked,  # a delta-rule cell's chunked parallel form (``chunked.py``)
}
#: what ``backend`` (``config.model.backend``) may ask for: ``scan`` the sequential autodiff
#: engine (every cell); ``parallel`` a linear cell's associative scan (``chunk_size``);
#: ``fast`` the fastest exact engine for the cell here: a nonlinear cell's kernels, and for a
#: linear cell the parallel scan on GPU/TPU but the sequential scan on CPU, where it measured
#: faster to run and 10x faster to compile (docs/BENCHMARKS.md); ``cudnn`` the LSTM through
#: cuDNN (``cudnn.py``; on a CUDA GPU, float32), else ``fast``
BACKENDS = ("scan", "fast", "parallel", "cudnn")


def resolve_backend(cell: Cell, backend: str) -> str:
    """The engine that will run ``cell`` (see ``BACKENDS``); a nonlinear cell without fast
    kernels, or with parameters they do not take, runs ``scan``, and ``cudnn`` where cuDNN
    cannot run it runs ``fast`` (each said once in the log)."""
    if backend not in BACKENDS:
        raise ConfigError(f"unknown recurrence backend {backend!r}; choose one of {BACKENDS}")
    if backend == "cudnn":
        why = cudnn_unavailable(cell)
        if why is None:
            return backend
        say_fallback(why)
        backend = "fast"
    if isinstance(cell, LinearCell):
        if backend == "fast":
            return "scan" if jax.default_backend() == "cpu" else "parallel"
        return backend
    if backend == "parallel" and "parallel" in cell.PROVIDES:  # a matrix state's chunked form
        return "chunked"
    if backend == "parallel":
        raise ConfigError(
            f"backend='parallel' is for linear recurrences; {type(cell).__name__} is not one"
        )
    why = fast_unavailable(cell) if backend == "fast" else None
    if why is not None:
        say_once(why)
        return "scan"
    return backend
