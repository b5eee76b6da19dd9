"""``--mode speed``: a training step (and a forward-only loss) of every peer, timed
round-robin, with throughput and ratios to PyTorch.

After warm-up the peers run one repeat each in turn (the first rotating), so machine noise
hits all of them alike; both the median wall time and the median process CPU time are
reported, each as a ratio to PyTorch's (PyTorch's median / the peer's).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from seqlab_bench.footprint import peak_rss_during
from seqlab_bench.peers import build_peers
from seqlab_bench.timing import Clock, Timing, clock, round_robin, throughput
from seqlab_bench.workload import PASSES, Peer, Shape, make_tokens


def bench_speed(
    cell: str,
    shape: Shape,
    peers: Sequence[str],
    impls: Sequence[str],
    *,
    repeats: int,
    warmup: int,
    lr: float = 1e-3,
    unroll: int = 1,
    remat: bool = False,
    modes: Sequence[str] = PASSES,
    clock: Clock = clock,
) -> list[dict[str, Any]]:
    """One row per (pass, peer): timings, throughput, ratios to PyTorch, compile, memory."""
    tokens = make_tokens(shape)
    built = build_peers(
        cell, shape, tokens, peers, impls, lr=lr, unroll=unroll, remat=remat, modes=modes
    )
    rows = []
    for mode in modes:
        fns = {p.label: (p.train if mode == "train" else p.forward) for p in built}
        timings, peaks, losses = _time_pass(fns, repeats, warmup, clock)
        for p in built:
            rows.append(_row(cell, shape, mode, p, timings, peaks[p.label], losses[p.label]))
    return rows


def _time_pass(
    fns: dict[str, Callable[[], float]], repeats: int, warmup: int, clock: Clock
) -> tuple[dict[str, Timing], dict[str, float | None], dict[str, list[float]]]:
    """Warm-up calls, one step's RSS rise, the timed repeats and one last call per peer:
    (timings, peak RSS rise MiB, losses of the untimed calls)."""
    losses: dict[str, list[float]] = {label: [] for label in fns}
    for label, fn in fns.items():
        for _ in range(warmup):
            losses[label].append(fn())
    peaks = {label: peak_rss_during(fn)[0] for label, fn in fns.items()}
    timings = round_robin(fns, repeats, clock)
    for label, fn in fns.items():
        losses[label].append(fn())
    return timings, peaks, losses


def _row(
    cell: str,
    shape: Shape,
    mode: str,
    p: Peer,
    timings: dict[str, Timing],
    peak: float | None,
    losses: list[float],
) -> dict[str, Any]:
    """One ``results`` row of the JSON (keys: ``seqlab_bench.report.RESULT_KEYS``)."""
    t, torch_t = timings[p.label], timings.get("torch")
    return {
        "cell": cell,
        "peer": p.name,
        "impl": p.impl,
        "mode": mode,
        **shape.__dict__,
        **throughput(t, shape.batch, shape.length),
        "ratio_torch": torch_t.median_wall / t.median_wall if torch_t else None,
        "ratio_torch_cpu": torch_t.median_cpu / t.median_cpu if torch_t else None,
        "first_call_s": p.first_call_s[mode],
        "compile_s": p.compile_s[mode],
        "peak_rss_mib": peak,
        "xla_temp_mib": p.xla.get(mode, {}).get("temp_mib"),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1],
        "times_s": t.wall,
        "cpu_times_s": t.cpu,
    }
