"""``--mode scaling``: attention against the recurrences as T grows -- one char-LM training
step (``workload.jax_peer``: one-hot input -> one mixer layer -> logits -> cross-entropy ->
backward -> Adam) of each of ``--scaling_cells`` at each of ``--scaling_lengths``, side by
side: ms/step, tokens/s and XLA's planned temporaries (``compiled.memory_analysis()``), with
each quantity's growth per doubling of T (2 = linear in T, 4 = quadratic).

Attention (``seqlab.cells.attention``, a pre-norm Transformer block with its MLP) attends
over the whole sequence (window = T), so its (T, T) scores make time and memory quadratic
in T; an LSTM (``backend=scan``) and a linear recurrence (``backend=parallel``, its
parallel-over-T form) are linear in T. The models differ in parameters (the params column):
the point is the growth with T, not one T's ratio.

``jax.nn.dot_product_attention`` has more than one implementation on a GPU only: ``xla``
everywhere, ``cudnn`` (fused, flash-style) on NVIDIA GPUs. ``--attention_impl`` lists the ones
to time; on a CPU only ``xla`` exists, and asking for ``cudnn`` there is refused up front.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator, Sequence
from typing import Any

from seqlab_bench.peers import seqlab_model, seqlab_peer
from seqlab_bench.tables import Row, fmt, key, markdown_table
from seqlab_bench.timing import round_robin, throughput
from seqlab_bench.workload import Peer, Shape, jax_peer, make_tokens

ATTENTION_IMPLS = ("xla", "cudnn")
HEADS = 4  # attention heads, seqlab's default (config.model.num_heads): head width H / 4
CPU_NOTE = (
    "on CPU jax.nn.dot_product_attention has only implementation='xla' (cudnn needs an NVIDIA GPU)"
)


def available_attention_impls() -> tuple[str, ...]:
    """The ``jax.nn.dot_product_attention`` implementations this platform offers."""
    import jax

    return ATTENTION_IMPLS if jax.default_backend() == "gpu" else ("xla",)


@contextlib.contextmanager
def attention_implementation(impl: str) -> Iterator[None]:
    """While tracing inside this block, ``jax.nn.dot_product_attention`` (which
    ``CausalSelfAttention`` calls) runs with ``implementation=impl``; the compiled step keeps
    it. Scoped to the benchmark, so the cell itself stays platform-neutral."""
    import jax

    original = jax.nn.dot_product_attention
    jax.nn.dot_product_attention = functools.partial(original, implementation=impl)
    try:
        yield
    finally:
        jax.nn.dot_product_attention = original


def _params(model: Any) -> int:
    """The model's parameter count."""
    import jax
    from flax import nnx

    return sum(int(p.size) for p in jax.tree.leaves(nnx.state(model, nnx.Param)))


def scaling_peer(cell: str, shape: Shape, tokens: Any, impl: str) -> tuple[Peer, int]:
    """(the compiled training step of one mixer, its parameter count); ``impl``: the attention
    implementation, or the recurrence backend."""
    from seqlab.cells import MIXERS

    if cell in MIXERS:
        # full causal attention over T, in seqlab's default heads (config model.num_heads)
        kw = {"cell_kwargs": {"num_heads": HEADS, "window": shape.length}}
        model = seqlab_model(cell, shape, **kw)
        with attention_implementation(impl):
            peer = jax_peer("seqlab", impl, model, lambda m, x: m(x)[0], tokens, 1e-3, ("train",))
        return peer, _params(model)
    model = seqlab_model(cell, shape)
    n = _params(model)
    return seqlab_peer(cell, shape, tokens, impl=impl, model=model, modes=("train",)), n


def backends(cell: str, attention_impls: Sequence[str]) -> list[str]:
    """The implementations a cell is timed with: attention's listed ones, ``parallel`` for a
    linear recurrence, ``scan`` for a nonlinear one."""
    from seqlab.cells import CELLS, MIXERS
    from seqlab.cells.linear import LinearCell

    if cell in MIXERS:
        return list(attention_impls)
    return ["parallel" if issubclass(CELLS[cell][0], LinearCell) else "scan"]


def bench_scaling(
    cells: Sequence[str],
    lengths: Sequence[int],
    *,
    batch: int,
    hidden: int,
    vocab: int = 65,
    repeats: int = 3,
    warmup: int = 1,
    attention_impls: Sequence[str] = ("xla",),
) -> list[Row]:
    """One row per (mixer, T); the mixers of one T are timed round-robin together."""
    rows: list[Row] = []
    for length in lengths:
        shape = Shape(batch, length, hidden, 1, vocab)
        tokens = make_tokens(shape)
        built: dict[str, tuple[str, str, Peer, int]] = {}
        for cell in cells:
            for impl in backends(cell, attention_impls):
                peer, n = scaling_peer(cell, shape, tokens, impl)
                built[f"{cell}-{impl}"] = (cell, impl, peer, n)
        for _, _, peer, _ in built.values():
            for _ in range(warmup):
                peer.train()
        timings = round_robin({k: v[2].train for k, v in built.items()}, repeats)
        for label, (cell, impl, peer, n) in built.items():
            t = throughput(timings[label], batch, length)
            rows.append(
                {
                    "cell": cell,
                    "impl": impl,
                    "length": length,
                    "batch": batch,
                    "hidden": hidden,
                    "params": n,
                    "ms_per_step": 1e3 * t["median_s"],
                    "cpu_ms_per_step": 1e3 * t["median_cpu_s"],
                    "tokens_per_s": t["tokens_per_s"],
                    "xla_temp_mib": peer.xla.get("train", {}).get("temp_mib"),
                    "compile_s": peer.compile_s["train"],
                    "times_s": timings[label].wall,
                }
            )
    add_growth(rows)
    return rows


def add_growth(rows: list[Row]) -> None:
    """Each row's ``time_growth`` and ``mem_growth``: its CPU ms/step (the process's CPU time:
    less disturbed than wall time by other jobs on a shared machine) and XLA temp MiB over the
    same mixer's at the previous T, per doubling of T ((ratio)^(1 / log2(T / T_prev)))."""
    last: dict[tuple[str, str], Row] = {}
    for r in sorted(rows, key=lambda r: r["length"]):
        prev = last.get((r["cell"], r["impl"]))
        r["time_growth"] = r["mem_growth"] = None
        if prev is not None:
            doublings = math.log2(r["length"] / prev["length"])
            ratio = r["cpu_ms_per_step"] / prev["cpu_ms_per_step"]
            r["time_growth"] = ratio ** (1 / doublings)
            if r["xla_temp_mib"] and prev["xla_temp_mib"]:
                r["mem_growth"] = (r["xla_temp_mib"] / prev["xla_temp_mib"]) ** (1 / doublings)
        last[(r["cell"], r["impl"])] = r


SCALING = [
    ("mixer", lambda r: f"{r['cell']} ({r['impl']})"),
    ("T", key("length")),
    ("params", key("params", ",d")),
    ("tokens/s", key("tokens_per_s", ",.0f")),
    ("ms/step", key("ms_per_step", ".1f")),
    ("CPU ms/step", key("cpu_ms_per_step", ".1f")),
    ("x per 2T (CPU time)", key("time_growth", ".2f")),
    ("XLA temp MiB", key("xla_temp_mib", ".1f")),
    ("x per 2T (temp)", key("mem_growth", ".2f")),
    ("compile s", lambda r: fmt(r.get("compile_s"), ".1f")),
]


def scaling_table(rows: Sequence[Row]) -> str:
    """``--mode scaling``: one line per (mixer, T), grouped by mixer."""
    order = sorted(rows, key=lambda r: (r["cell"], r["impl"], r["length"]))
    return markdown_table(SCALING, order)
