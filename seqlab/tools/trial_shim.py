"""Runs one tune trial's command and passes it exactly one SIGTERM when the worker that
started it dies or asks it to stop.

Run by path (``python trial_shim.py PARENT_PID CMD...``, no seqlab import, starts in
milliseconds). Linux's parent-death signal (``PR_SET_PDEATHSIG``) is sent each time a
process is re-parented, and a killed multi-threaded worker re-parents its children once per
dying thread: several signals in a row, and ``seqlab train`` reads a second signal as "stop
now, without a checkpoint". The shim takes them all and forwards the first, so the trial
checkpoints and exits (75)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys

PR_SET_PDEATHSIG = 1


def main(argv: list[str]) -> int:
    parent, cmd = int(argv[0]), argv[1:]
    child: subprocess.Popen | None = None
    sent = False

    def stop(signum, frame):  # noqa: ARG001 (a signal handler's signature)
        nonlocal sent
        if child is not None and not sent and child.poll() is None:
            sent = True
            child.send_signal(signal.SIGTERM)

    for s in (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1):
        signal.signal(s, stop)
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, int(signal.SIGUSR1))
    child = subprocess.Popen(cmd)
    if os.getppid() != parent:  # the worker died before the parent-death signal was armed
        stop(signal.SIGUSR1, None)
    while True:
        try:
            return child.wait()
        except InterruptedError:
            continue


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
