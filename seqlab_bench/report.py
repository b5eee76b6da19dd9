"""The ``--json`` report: its documented keys (docs/BENCHMARKS.md) and the environment
recorded once per run beside the measurements."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from seqlab_bench.hardware import hardware, versions

# Keys of one row of ``results`` in the JSON.
RESULT_KEYS = (
    "cell",
    "peer",
    "impl",
    "mode",
    "batch",
    "length",
    "hidden",
    "layers",
    "vocab",
    "median_s",
    "median_cpu_s",
    "tokens_per_s",
    "us_per_step",
    "cpu_us_per_step",
    "ratio_torch",
    "ratio_torch_cpu",
    "first_call_s",
    "compile_s",
    "peak_rss_mib",
    "xla_temp_mib",
    "step_gflop",
    "gflops_per_s",
    "peak_fraction",
    "loss_first",
    "loss_last",
    "times_s",
    "cpu_times_s",
)
# Top-level keys of the JSON.
JSON_KEYS = (
    "command",
    "hardware",
    "load_avg",
    "versions",
    "settings",
    "timer",
    "memory_method",
    "peak",
    "results",
    "compile",
    "memory",
    "generate",
    "probe",
    "scaling",
)
TIMER_NOTE = (
    "median over round-robin repeats after warm-up; wall = time.perf_counter, "
    "cpu = time.process_time (all threads of this process)"
)
MEMORY_NOTE = (
    "peak_rss_mib: rise of the process RSS high-water mark (VmHWM, reset through "
    "/proc/self/clear_refs) over the RSS before one training step, after warm-up (0 when "
    "the step reuses memory the allocator kept; use --mode memory for fresh processes); "
    "xla_temp_mib: XLA's planned temporary buffers (compiled.memory_analysis())"
)


def new_report(argv: Sequence[str], settings: dict[str, Any]) -> dict[str, Any]:
    """The report before any measurement: command, machine, versions, settings, and empty
    result lists that each mode fills."""
    return {
        "command": ["seqlab", "bench", *argv],
        "hardware": hardware(),
        "load_avg": {"start": os.getloadavg()},
        "versions": versions(),
        "settings": settings,
        "timer": TIMER_NOTE,
        "memory_method": MEMORY_NOTE,
        "peak": None,
        "results": [],
        "compile": [],
        "memory": [],
        "generate": None,
        "probe": [],
        "scaling": [],
    }


def write_report(report: dict[str, Any], path: str) -> None:
    """Stamps the final load average and writes the report as JSON."""
    report["load_avg"]["end"] = os.getloadavg()
    with open(path, "w") as f:
        json.dump(report, f, indent=1)
