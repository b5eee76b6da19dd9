"""XLA flags for the test session: compile fast, run the same math.

Most of the suite's time on a CPU is XLA compiling tiny programs (seconds each) that then run
for milliseconds. ``--xla_backend_optimization_level=0`` and
``--xla_llvm_disable_expensive_passes`` skip LLVM's optimization passes, which roughly halves
that (test_e2e_linear.py: 160 s -> 83 s on a 2-core AVX2 VM). They change the generated
machine code, not the computation: XLA's HLO passes (fusion, layout) still run, and without
fast-math LLVM may not reorder floating-point arithmetic at any level, so every numeric
assertion holds as at full optimization. Matmuls run in the same libraries either way.

Applied only where JAX is pinned to the CPU; ``SEQLAB_TEST_FULL_XLA_OPT=1`` turns it off (to
run the suite as users' programs are compiled).
"""

from __future__ import annotations

import os

FAST_COMPILE = ("--xla_backend_optimization_level=0", "--xla_llvm_disable_expensive_passes=true")


def enabled(environ: os._Environ | dict[str, str] = os.environ) -> bool:
    return environ.get("JAX_PLATFORMS") == "cpu" and environ.get("SEQLAB_TEST_FULL_XLA_OPT") != "1"


def xla_flags(*extra: str) -> str:
    """``XLA_FLAGS`` for a subprocess a test starts: the session's compile flags, then
    ``extra`` (e.g. ``--xla_force_host_platform_device_count=4``)."""
    return " ".join((*FAST_COMPILE, *extra) if enabled() else extra)


def apply() -> None:
    """Adds the flags to this process's ``XLA_FLAGS`` (read when JAX's CPU backend starts, so
    call it before any test runs a computation), which the tests' subprocesses inherit."""
    if not enabled():
        return
    have = os.environ.get("XLA_FLAGS", "").split()
    os.environ["XLA_FLAGS"] = " ".join([*have, *(f for f in FAST_COMPILE if f not in have)])
