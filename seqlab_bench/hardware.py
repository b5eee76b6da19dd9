"""The machine a measurement was taken on, recorded with every table: CPU model, cores,
memory, platform, library versions, compute threads and the load average.

Timings only compare across runs with the same hardware, threads and versions, so the
JSON carries all of them.
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import os
import platform
import sys
from typing import Any

VERSIONED = ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "seqlab")


#: the ISA extensions that decide which matmul kernels XLA and PyTorch pick on x86
ISA_PREFIXES = ("avx", "fma", "amx", "sse4")


def hardware() -> dict[str, Any]:
    """CPU model, its vector ISA flags (AVX2 vs AVX-512 changes the CPU tables), core count,
    total memory (GiB), platform string and the malloc tunables the process started with
    (``glibc.malloc.hugetlb=1`` from the ``seqlab`` entry changes page-fault time)."""
    model = platform.processor() or platform.machine()
    isa: list[str] = []
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = line.split(":", 1)[1].split()
                isa = sorted(x for x in flags if x.startswith(ISA_PREFIXES))
                break
    mem = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = round(int(f.readline().split()[1]) / 2**20, 1)
    return {
        "cpu_model": model,
        "cpu_flags": isa,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "platform": platform.platform(),
        "glibc_tunables": os.environ.get("GLIBC_TUNABLES", ""),
    }


def versions() -> dict[str, str]:
    """Python's and each library's version; reads installed metadata for modules not yet
    imported, so recording the versions imports nothing (PyTorch above all)."""
    out = {"python": platform.python_version()}
    for name in VERSIONED:
        mod = sys.modules.get(name)
        if mod is not None:
            out[name] = getattr(mod, "__version__", "?")
            continue
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def set_threads(n: int, pin: bool = True) -> dict[str, Any]:
    """Gives XLA n compute threads (0: library defaults); what was set, for the JSON.

    ``pin`` also restricts the whole process to n cores (``os.sched_setaffinity`` on every
    thread): XLA:CPU runs some matmuls on its own thread pool whatever the Eigen flag says,
    and on a shared machine spinning pool threads would be charged to the process CPU time.
    The Eigen flag only takes effect if XLA's backend is not initialized yet. PyTorch's
    threads are set beside its models (``seqlab_bench.peers.set_torch_threads``)."""
    out: dict[str, Any] = {"threads": n}
    if n <= 0:
        return out
    if pin and hasattr(os, "sched_setaffinity"):
        out["pinned_cpus"] = pin_to_cores(n)
    out["xla"] = _xla_threads(n)
    return out


def pin_to_cores(n: int) -> list[int]:
    """Restricts every thread of this process to the first n cores it may use."""
    cpus = sorted(os.sched_getaffinity(0))[:n]
    tids = os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else ["0"]
    for tid in tids:
        with contextlib.suppress(OSError):
            os.sched_setaffinity(int(tid), cpus)
    return cpus


def _xla_threads(n: int) -> str:
    """Makes XLA's Eigen pool single-threaded when n == 1 and it is still possible."""
    try:
        from jax._src import xla_bridge

        ready = xla_bridge.backends_are_initialized()
    except Exception:
        ready = True
    if not ready and n == 1:
        flag = "--xla_cpu_multi_thread_eigen=false"
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
        return "single-threaded Eigen (--xla_cpu_multi_thread_eigen=false)"
    return "library default" + (" (backend already initialized)" if ready else "")


def load_avg() -> str:
    """The 1/5/15-minute load average, as printed under every table."""
    return "/".join(f"{v:.2f}" for v in os.getloadavg())
