"""The ``seqlab`` console script. A signal that arrives while seqlab and JAX are still being
imported (seconds) gets the same one line and status as one during a command, not Python's
KeyboardInterrupt traceback: this module imports nothing of seqlab's until its handlers are
in place, and hands the signals back before ``seqlab.tools.cli.main`` takes them over.

On Linux, the heavy commands (``HEAVY``) first re-execute themselves once with glibc's
``glibc.malloc.hugetlb=1`` tunable (``hugepage_env``): XLA:CPU allocates each step's
temporaries with ``malloc``, which above 32 MiB maps fresh pages every step, and on 4 KiB
pages the faults cost a (32, 100, 512) LSTM training step ~26,000 page faults and ~0.13 s of
system time; with transparent huge pages it is ~1,500 (docs/BENCHMARKS.md). The tunable is
read by the dynamic loader at start, so it cannot be set later. ``SEQLAB_HUGEPAGES=0`` turns
this off."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
HEAVY = frozenset({"train", "sweep", "tune", "study", "bench", "eval", "probe"})
TUNABLE = "glibc.malloc.hugetlb=1"
THP = "/sys/kernel/mm/transparent_hugepage/enabled"


def hugepage_env(
    env: dict[str, str], argv: list[str], libc: str, thp: str, platform: str = sys.platform
) -> dict[str, str] | None:
    """The environment to re-execute ``argv`` with (None: run as is). Only on Linux with
    glibc >= 2.35 (``libc``: ``os.confstr("CS_GNU_LIBC_VERSION")``), transparent huge pages
    not ``[never]`` (``thp``: the kernel's setting), a heavy command, and neither the tunable
    already set nor ``SEQLAB_HUGEPAGES=0``."""
    if platform != "linux" or env.get("SEQLAB_HUGEPAGES", "1") == "0" or "[never]" in thp:
        return None
    if "glibc.malloc.hugetlb" in env.get("GLIBC_TUNABLES", "") or not HEAVY & set(argv[1:2]):
        return None
    name, _, version = libc.partition(" ")
    try:
        major, minor = (int(v) for v in version.split(".")[:2])
    except ValueError:
        return None
    if name != "glibc" or (major, minor) < (2, 35):
        return None
    tunables = ":".join(t for t in (env.get("GLIBC_TUNABLES", ""), TUNABLE) if t)
    return {**env, "GLIBC_TUNABLES": tunables}


def this_system() -> tuple[str, str]:
    """(C library and version, the kernel's transparent-huge-page setting); "" where unknown."""
    try:
        libc = os.confstr("CS_GNU_LIBC_VERSION") or ""
    except (OSError, ValueError, AttributeError):
        libc = ""
    try:
        with open(THP) as f:
            return libc, f.read()
    except OSError:
        return libc, ""


def reexec_with_hugepages(argv: list[str]) -> None:
    """Replaces this process (same PID) with ``sys.orig_argv`` under ``hugepage_env`` when
    it applies; returns otherwise, and on any failure to exec."""
    libc, thp = this_system()
    env = hugepage_env(dict(os.environ), argv, libc, thp) if thp else None
    if env is not None:
        try:
            os.execve(sys.executable, list(sys.orig_argv), env)
        except OSError:
            return


def _starting(signum: int, frame: FrameType | None) -> None:
    what = "Ctrl-C (SIGINT)" if signum == signal.SIGINT else "SIGTERM"
    sys.stderr.write(
        f"seqlab: stopped by {what} while starting; nothing was written (re-run the same "
        "command to start again)\n"
    )
    sys.stderr.flush()
    os._exit(128 + signum)  # nothing is open yet: no teardown of a half-imported JAX


def main() -> int:
    """Imports the CLI under the start-up handlers, then runs it with the signals as found."""
    reexec_with_hugepages(sys.argv)
    found = {}
    for s in SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:  # ignored by the parent stays ignored
            found[s] = signal.signal(s, _starting)
    from seqlab.tools.cli import main as run

    for s, handler in found.items():
        signal.signal(s, handler)
    return run()
