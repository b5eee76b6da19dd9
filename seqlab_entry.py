"""The ``seqlab`` console script. A signal that arrives while seqlab and JAX are still being
imported (seconds) gets the same one line and status as one during a command, not Python's
KeyboardInterrupt traceback: this module imports nothing of seqlab's until its handlers are
in place, and hands the signals back before ``seqlab.tools.cli.main`` takes them over."""

from __future__ import annotations

import os
import signal
import sys
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


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
    found = {}
    for s in SIGNALS:
        if signal.getsignal(s) is not signal.SIG_IGN:  # ignored by the parent stays ignored
            found[s] = signal.signal(s, _starting)
    from seqlab.tools.cli import main as run

    for s, handler in found.items():
        signal.signal(s, handler)
    return run()
