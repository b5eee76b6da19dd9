"""Wall and CPU clocks, round-robin timing and throughput: how every mode measures time.

Peers are timed one call each in turn (the first rotating) so that machine noise hits them
alike; the process CPU time (``time.process_time``) stays meaningful when other processes
share the cores.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Clock = Callable[[], tuple[float, float]]


def clock() -> tuple[float, float]:
    """(wall seconds, process CPU seconds)."""
    return time.perf_counter(), time.process_time()


@dataclass
class Timing:
    """Every repeat's wall and CPU seconds of one timed function."""

    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


def timed(fn: Callable[[], Any], clock: Clock = clock) -> tuple[Any, float, float]:
    """Runs fn once: (its result, wall seconds, CPU seconds)."""
    w0, c0 = clock()
    out = fn()
    w1, c1 = clock()
    return out, w1 - w0, c1 - c0


def round_robin(
    fns: dict[str, Callable[[], Any]], repeats: int, clock: Clock = clock
) -> dict[str, Timing]:
    """Times each fn ``repeats`` times, one call of each in turn, rotating the first."""
    names = list(fns)
    out = {n: Timing() for n in names}
    for r in range(repeats):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            _, wall, cpu = timed(fns[n], clock)
            out[n].wall.append(wall)
            out[n].cpu.append(cpu)
    return out


def throughput(t: Timing, batch: int, length: int) -> dict[str, float]:
    """tokens/s = B*T / median wall time; microseconds per timestep (wall and CPU)."""
    return {
        "median_s": t.median_wall,
        "median_cpu_s": t.median_cpu,
        "tokens_per_s": batch * length / t.median_wall,
        "us_per_step": t.median_wall / length * 1e6,
        "cpu_us_per_step": t.median_cpu / length * 1e6,
    }
