"""The physical limit: a training step's FLOPs from its shapes, and the peak a core reaches.

``step_flops`` counts the dense matmuls of the benchmarked char-LM step (workload.py) for
the classic gated cells, whose work is matmuls: per token and layer the recurrent matmul
``h @ W_h`` (H x G*H), the input matmul of every layer above the first (H x G*H) and the
output projection (H x V), 2 FLOPs per multiply-add. The first layer's one-hot input is a
table lookup (a peer that multiplies a one-hot vector does V-wide work that is not needed),
so it counts 0. A training step is the forward plus, for every matmul, the gradient of its
input and of its weight: 3x the forward. Element-wise gate math and Adam are left out (a
few percent at H >= 128): the figure is a lower bound on the work done.

``matmul_peak`` measures what this process's cores reach on a large float32 matmul in
XLA, in the same run and on the same threads as the benchmark: the denominator of
"fraction of peak". Measuring beats a datasheet figure, which would need the clock the
core actually runs at and whether it has one or two FMA units per cycle.
"""

from __future__ import annotations

import time
from typing import Any

from seqlab_bench.workload import Shape

#: the size of the peak-measuring matmul: large enough for XLA's best kernel, small enough
#: for a second of work on one core (2 * 1536^3 = 7.2 GFLOP per call)
PEAK_N = 1536


def gates(cell: str) -> int | None:
    """The fused matmul's width in units of H for a classic cell; None for cells whose work
    is not mostly that matmul (the linear recurrences)."""
    from seqlab.cells import CELLS, LinearCell

    if cell not in CELLS:
        return None
    cls, _ = CELLS[cell]
    return None if issubclass(cls, LinearCell) else int(cls.num_gates)


def step_flops(cell: str, shape: Shape, mode: str = "train") -> float | None:
    """Matmul FLOPs of one step on the whole batch (``mode``: train or forward); None where
    the cell's work is not counted."""
    g = gates(cell)
    if g is None:
        return None
    h, layers = shape.hidden, shape.layers
    per_token = layers * 2 * h * g * h  # recurrent matmuls
    per_token += (layers - 1) * 2 * h * g * h  # input matmuls above the first layer
    per_token += 2 * h * shape.vocab  # output projection
    forward = per_token * shape.batch * shape.length
    return float(forward * (3 if mode == "train" else 1))


def matmul_peak(n: int = PEAK_N, repeats: int = 5) -> dict[str, Any]:
    """GFLOP/s of the best of ``repeats`` (n x n) @ (n x n) float32 matmuls in XLA, on the
    threads the benchmark runs with (set before this is called)."""
    import jax
    import jax.numpy as jnp

    a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    mm = jax.jit(jnp.matmul)
    mm(a, b).block_until_ready()
    best = float("inf")
    for _ in range(max(1, repeats)):
        t0 = time.perf_counter()
        mm(a, b).block_until_ready()
        best = min(best, time.perf_counter() - t0)
    return {"n": n, "best_s": best, "gflops_per_s": 2 * n**3 / best / 1e9}


def achieved(row: dict[str, Any], peak_gflops: float | None) -> dict[str, Any]:
    """``gflops_per_s`` (the step's counted FLOPs over its median wall time) and
    ``peak_fraction`` (of the measured matmul peak) for one speed row."""
    shape = Shape(row["batch"], row["length"], row["hidden"], row["layers"], row["vocab"])
    flops = step_flops(row["cell"], shape, row["mode"])
    median = row.get("median_s")
    if flops is None or not median:
        return {"step_gflop": None, "gflops_per_s": None, "peak_fraction": None}
    rate = flops / median / 1e9
    return {
        "step_gflop": flops / 1e9,
        "gflops_per_s": rate,
        "peak_fraction": rate / peak_gflops if peak_gflops else None,
    }
