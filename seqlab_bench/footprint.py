"""What one step costs in memory: the rise of the process RSS high-water mark, and XLA's
planned buffers of a compiled executable (which needs no run, so it works for sizes that
would not fit)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def proc_status(key: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM), or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_during(fn: Callable[[], Any]) -> tuple[float | None, float | None]:
    """(MiB by which the RSS high-water mark rises over the RSS while fn runs, that
    high-water mark in MiB); (None, None) where the peak cannot be reset (not Linux)."""
    if not reset_peak():
        return None, None
    before = proc_status("VmRSS")  # read after the reset: it can drop there
    fn()
    peak = proc_status("VmHWM")
    if before is None or peak is None:
        return None, None
    return max(peak - before, 0) / 1024, peak / 1024


def xla_memory(compiled: Any) -> dict[str, float]:
    """XLA's buffer plan of a compiled executable, in MiB ({} where the backend has none)."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend/version implements it
        return {}
    if m is None:
        return {}
    names = ("temp", "argument", "output", "alias", "generated_code")
    return {f"{n}_mib": getattr(m, f"{n}_size_in_bytes", 0) / 2**20 for n in names}
