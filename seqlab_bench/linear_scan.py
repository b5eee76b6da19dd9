"""``--mode linear``: the three engines of a linear recurrence (LRU, minGRU, minLSTM, RG-LRU)
side by side -- sequential (``backend=scan``), associative (``backend=parallel``) and
chunked (``backend=parallel``, ``--linear_chunk`` steps per chunk) -- on one layer's training step
(forward + backward of a sum-of-outputs loss over (B, T, H) inputs) at each T: tokens/s,
ratio to the sequential engine measured in the same run, XLA's memory plan of the step
(temporaries + arguments, MiB) and trace+compile seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from seqlab_bench.footprint import xla_memory
from seqlab_bench.timing import round_robin, throughput, timed

ENGINES = {"sequential": ("scan", 0), "associative": ("parallel", 0), "chunked": ("parallel", -1)}


def _step(cell: str, engine: str, batch: int, length: int, hidden: int, chunk: int) -> Any:
    """(compiled grad step, inputs, compile seconds) for one engine at one T."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from seqlab.cells import make_cell
    from seqlab.recurrence import Recurrent

    backend, c = ENGINES[engine]
    layer = Recurrent(
        make_cell(cell, hidden, hidden, rngs=nnx.Rngs(0)),
        backend=backend,
        chunk_size=chunk if c < 0 else c,
    )
    graphdef, params = nnx.split(layer)

    def loss(p: Any, x: jax.Array) -> jax.Array:
        y, _ = nnx.merge(graphdef, p)(x)
        return jnp.sum(y * y)

    x = jax.random.normal(jax.random.key(1), (batch, length, hidden))
    fn = jax.jit(jax.grad(loss))
    compiled, seconds, _ = timed(lambda: fn.lower(params, x).compile())
    return compiled, (params, x), seconds


def bench_linear(
    cells: Sequence[str],
    lengths: Sequence[int],
    *,
    batch: int,
    hidden: int,
    chunk: int,
    repeats: int,
) -> list[dict[str, Any]]:
    """One row per (cell, T, engine); the three engines of a (cell, T) timed round-robin."""
    rows = []
    for cell in cells:
        for length in lengths:
            built = {e: _step(cell, e, batch, length, hidden, chunk) for e in ENGINES}
            fns = {e: _runner(*built[e][:2]) for e in ENGINES}
            for f in fns.values():
                f()  # warm up
            times = round_robin(fns, repeats)
            base = times["sequential"].median_wall
            for e, (compiled, _, compile_s) in built.items():
                mem = xla_memory(compiled)
                rows.append(
                    {
                        "cell": cell,
                        "length": length,
                        "engine": e,
                        "chunk": chunk if e == "chunked" else 0,
                        **throughput(times[e], batch, length),
                        "ratio_to_sequential": base / times[e].median_wall,
                        "plan_mib": mem.get("temp_mib", 0) + mem.get("argument_mib", 0),
                        "compile_s": compile_s,
                    }
                )
    return rows


def _runner(compiled: Any, args: tuple) -> Any:
    import jax

    return lambda: jax.block_until_ready(compiled(*args))
