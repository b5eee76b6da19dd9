"""Ctrl-C (SIGINT) and SIGTERM in any ``seqlab`` command: the work stops where it is and the
command ends with one line and the shell's status for that signal, 128 + its number (130,
143). Files are written whole or not at all (``seqlab.run.writers.atomic_open``), so nothing
is left half-written. ``seqlab train`` checkpoints first and exits 75 (its loop takes the
signals over while it trains); a second signal stops it at once, with this line.

A signal becomes an exception in the main thread (KeyboardInterrupt, ``Stopped``). Python
drops an exception raised where it cannot propagate (a garbage-collector callback such as
JAX's, a ``__del__``): a signal that arrives there is delivered again a moment later, once
the main thread is back in ordinary code. A signal the parent process ignores stays ignored."""

from __future__ import annotations

import atexit
import contextlib
import gc
import os
import signal
import sys
import threading
from types import FrameType

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
        self.handled = False

    @classmethod
    def install(cls) -> Stop:
        stop = cls()
        wanted = {signal.SIGINT: signal.default_int_handler, signal.SIGTERM: signal.SIG_DFL}
        with contextlib.suppress(ValueError):  # not the main thread: leave signals alone
            for s in SIGNALS:
                if signal.getsignal(s) is wanted[s]:  # SIG_IGN (nohup, `&`) stays
                    stop.old[s] = signal.signal(s, stop._handle)
        return stop

    def uninstall(self) -> None:
        self.handled = True
        for s, h in self.old.items():
            signal.signal(s, h)
        self.old = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if _dropped_here(frame):  # raised here, it would be lost: deliver it again soon
            timer = threading.Timer(REDELIVER_S, self._again, args=(signum,))
            timer.daemon = True
            timer.start()
            return
        raise KeyboardInterrupt if signum == signal.SIGINT else Stopped

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


def _dropped_here(frame: FrameType | None) -> bool:
    """Whether an exception raised in ``frame`` would be dropped: it runs inside a
    garbage-collector callback or a ``__del__``."""
    callbacks = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    while frame is not None:
        if frame.f_code.co_name == "__del__" or frame.f_code in callbacks:
            return True
        frame = frame.f_back
    return False
