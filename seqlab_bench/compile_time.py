"""``--mode compile``: trace+lower and XLA compile seconds of seqlab's training step at
several sequence lengths T.

The scan is not unrolled, so compile time should not grow with T; the ratio to the
shortest T shows whether it does (the ``optax`` cross-entropy form, for one, does).
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from seqlab_bench.peers import seqlab_model
from seqlab_bench.timing import timed
from seqlab_bench.workload import Shape, lm_step_fns

Sample = tuple[float, float, float]  # (trace+lower s, compile wall s, compile CPU s)


def lower_train_step(
    cell: str, shape: Shape, impl: str, loss: str = "take", **model_kw: Any
) -> tuple[Any, float]:
    """Traces and lowers seqlab's training step for abstract (B, T) tokens: (lowered, s).
    Nothing of size T is allocated, so any T can be compiled."""
    import jax
    import jax.numpy as jnp

    model = seqlab_model(cell, shape, backend=impl, **model_kw)
    _, train_step, params, opt_state = lm_step_fns(model, lambda m, x: m(x)[0], 1e-3, loss)
    tok = jax.ShapeDtypeStruct((shape.batch, shape.length), jnp.int32)
    jitted = jax.jit(train_step, donate_argnums=(0, 1))
    lowered, wall, _ = timed(lambda: jitted.lower(params, opt_state, tok, tok))
    return lowered, wall


def bench_compile(
    cell: str,
    shape: Shape,
    impls: Sequence[str],
    lengths: Sequence[int],
    *,
    repeats: int = 3,
    unroll: int = 1,
    losses: Sequence[str] = ("take",),
) -> list[dict[str, Any]]:
    """Trace+lower and XLA compile seconds of seqlab's training step at each T, interleaved
    (median of ``repeats``; every repeat builds a fresh model, so nothing is cached)."""

    def once(impl: str, loss: str, length: int) -> Sample:
        s = Shape(shape.batch, length, shape.hidden, shape.layers, shape.vocab)
        lowered, lower_s = lower_train_step(cell, s, impl, loss, unroll=unroll)
        _, compile_s, compile_cpu = timed(lowered.compile)
        return lower_s, compile_s, compile_cpu

    samples: dict[tuple[str, str, int], list[Sample]] = {
        (i, loss, t): [] for i in impls for loss in losses for t in lengths
    }
    for _ in range(repeats):
        for key in samples:
            samples[key].append(once(*key))
    rows = [_row(cell, shape, *key, s) for key, s in samples.items()]
    _add_ratio_to_shortest(rows)
    return rows


def _row(
    cell: str, shape: Shape, impl: str, loss: str, length: int, s: list[Sample]
) -> dict[str, Any]:
    """One ``compile`` row of the JSON: medians over the repeats."""
    lower = statistics.median(v[0] for v in s)
    comp = statistics.median(v[1] for v in s)
    return {
        "cell": cell,
        "impl": impl,
        "loss": loss,
        "length": length,
        "batch": shape.batch,
        "hidden": shape.hidden,
        "layers": shape.layers,
        "lower_s": lower,
        "compile_s": comp,
        "compile_cpu_s": statistics.median(v[2] for v in s),
        "total_s": lower + comp,
    }


def _add_ratio_to_shortest(rows: list[dict[str, Any]]) -> None:
    """Sets each row's ``ratio_to_shortest``: total time over that of the shortest T with
    the same impl and loss."""
    for key in {(r["impl"], r["loss"]) for r in rows}:
        mine = [r for r in rows if (r["impl"], r["loss"]) == key]
        base = min(mine, key=lambda r: r["length"])["total_s"]
        for r in mine:
            r["ratio_to_shortest"] = r["total_s"] / base
