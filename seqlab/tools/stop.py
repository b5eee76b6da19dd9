"""Ctrl-C (SIGINT) and SIGTERM in any ``seqlab`` command: the work stops where it is and the
command ends with one line and the shell's status for that signal, 128 + its number (130,
143). Files are written whole or not at all (``seqlab.run.writers.atomic_open``), so nothing
is left half-written. ``seqlab train`` checkpoints first and exits 75 (its loop takes the
signals over while it trains); a second signal stops it at once, with this line.

A signal becomes an exception in the main thread (KeyboardInterrupt, ``Stopped``). Python
drops an exception raised where it cannot propagate (a garbage-collector callback such as
JAX's, a ``__del__``, a weakref callback) and hands it to ``sys.unraisablehook``: there the
signal's exception is taken back silently and the signal delivered again a moment later, once
the main thread is back in ordinary code. A signal the parent process ignores stays
ignored."""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

SIGNALS = (signal.SIGINT, signal.SIGTERM)
#: seconds before a signal whose exception may have been dropped is delivered again
REDELIVER_S = 0.5


class Stopped(BaseException):
    """SIGTERM, raised as KeyboardInterrupt is for SIGINT (a BaseException, so that no
    ``except Exception`` on the way swallows it)."""


class Stop:
    """Installed around one command by ``seqlab.tools.cli.main``."""

    def __init__(self) -> None:
        self.old: dict[int, object] = {}
        self.old_hook: Any = None
        self.handled = False

    @classmethod
    def install(cls) -> Stop:
        stop = cls()
        wanted = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for s in SIGNALS:
                if signal.getsignal(s) is wanted[s]:  # SIG_IGN (nohup, `&`) stays
                    stop.old[s] = signal.signal(s, stop._handle)
        if stop.old:
            stop.old_hook, sys.unraisablehook = sys.unraisablehook, stop._unraisable
        return stop

    def uninstall(self) -> None:
        self.handled = True
        for s, h in self.old.items():
            signal.signal(s, h)
        if self.old_hook is not None:
            sys.unraisablehook, self.old_hook = self.old_hook, None
        self.old = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt if signum == signal.SIGINT else Stopped

    def _unraisable(self, info: Any) -> None:
        """A signal's exception dropped where it was raised: deliver the signal again."""
        e = info.exc_value
        if isinstance(e, (KeyboardInterrupt, Stopped)) and not self.handled:
            signum = signal.SIGTERM if isinstance(e, Stopped) else signal.SIGINT
            timer = threading.Timer(REDELIVER_S, self._again, args=(signum,))
            timer.daemon = True
            timer.start()
            return
        (self.old_hook or sys.__unraisablehook__)(info)

    def _again(self, signum: int) -> None:
        if not self.handled and self.old:
            os.kill(os.getpid(), signum)

    def said(self, name: str, e: BaseException, *, process_exit: bool = False) -> int:
        """The one line for a command stopped by ``e``; returns its exit status.
        ``process_exit`` (the ``seqlab`` process itself, not a caller of ``main``): the process
        then ends with that status as soon as it exits, skipping the interpreter's teardown,
        which can crash while JAX's threads are still busy with the interrupted work (every
        file was closed as the exception unwound)."""
        self.handled = True
        if process_exit:
            atexit.register(_exit_now, _status(e))
        term = isinstance(e, Stopped)
        what = "SIGTERM" if term else "Ctrl-C (SIGINT)"
        again = "to resume" if name in ("train", "sweep", "probe", "tune") else "to start again"
        print(
            f"seqlab {name}: stopped by {what}; no file was left half-written (re-run the "
            f"same command {again})",
            file=sys.stderr,
        )
        return _status(e)


def _status(e: BaseException) -> int:
    return 128 + int(signal.SIGTERM if isinstance(e, Stopped) else signal.SIGINT)


def _exit_now(status: int) -> None:
    """The last word of a stopped process (the first atexit handler to run)."""
    for f in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            f.flush()
    os._exit(status)
