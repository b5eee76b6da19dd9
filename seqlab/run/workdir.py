"""The workdir of a training run: checked before anything is written in it, held by one
``seqlab train`` at a time, and never silently started over.

- ``prepare_workdir``: a directory that can be written, with room to spare.
- ``WorkdirLock``: ``WORKDIR/.lock`` names the pid and host training there, under an
  ``flock``; a second process stops at once with one line naming them. The kernel drops an
  flock when its process dies, so the lock a killed run left never blocks: the next run
  takes it over and says so in one log line. A multi-process run: process 0 holds it.
- ``earlier_results``: what a fresh start would overwrite (metrics.jsonl rows,
  samples.jsonl, config.json, results.json); ``seqlab.run.resume`` refuses to start over
  on top of it when it has no readable checkpoint behind it.
- ``claim``: all of the above around one run, which ends with one line (``write_failed``)
  when the disk fills up under it.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import socket
import time
from collections.abc import Iterator

import jax

from seqlab.errors import RunError
from seqlab.run.checkpoint import CheckpointWriteError, complete_steps

LOCK = ".lock"
CHECKPOINTS = "checkpoints"
MIN_FREE = 50 * 2**20
DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS)  # never a read error
log = logging.getLogger("seqlab")


@contextlib.contextmanager
def claim(workdir: str, process_index: int = 0) -> Iterator[None]:
    """Holds ``workdir`` for one training run: checked, locked (by process 0), released
    however the run ends. A write that fails for want of space, or a checkpoint that could
    not be written, ends the run as one RunError line (``write_failed``)."""
    prepare_workdir(workdir)
    lock = WorkdirLock(workdir) if process_index == 0 else None
    if lock is not None:
        lock.acquire()
    try:
        check_checkpoints_dir(workdir)
        yield
    except CheckpointWriteError as e:
        what = f"checkpoint step {e.step} in {e.directory}"
        raise RunError(write_failed(what, e.reason, workdir, e.step)) from e
    except OSError as e:
        if e.errno not in DISK_FULL:
            raise
        what = e.filename or f"the run's files in {workdir}"
        raise RunError(write_failed(what, e.strerror or str(e), workdir)) from e
    finally:
        if lock is not None:
            lock.release()


def not_a_directory(workdir: str) -> str | None:
    """ "WORKDIR is a file" or "WORKDIR is under a file (PATH)" when a file stands where the
    workdir or one of its parents should be; None otherwise."""
    path = os.path.abspath(workdir)
    while True:
        if os.path.lexists(path) and not os.path.isdir(path):
            if path == os.path.abspath(workdir):
                return f"{workdir} is a file"
            return f"{workdir} is under a file ({path})"
        if os.path.dirname(path) == path:
            return None
        path = os.path.dirname(path)


def prepare_workdir(workdir: str) -> None:
    """Fails early, before any training, if the workdir cannot be written."""
    if blocked := not_a_directory(workdir):
        raise RunError(
            f"--workdir {blocked}, not a directory, so it is not writable; pick another --workdir"
        )
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test.{jax.process_index()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise RunError(
            f"workdir {workdir} is not writable ({e.strerror}); pick another --workdir"
        ) from e
    free = os.statvfs(workdir)
    if free.f_bavail * free.f_frsize < MIN_FREE:
        raise RunError(
            f"workdir {workdir} has less than 50 MiB free; free space or pick another --workdir"
        )


def check_checkpoints_dir(workdir: str) -> None:
    """Refuses (nothing written) a ``checkpoints`` that is a file, or that is missing from
    a workdir holding an earlier run's results."""
    path = os.path.join(workdir, CHECKPOINTS)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise RunError(
            f"{path} is a file, not a checkpoint directory; nothing was changed: move it "
            "aside, or use a new --workdir"
        )
    if not os.path.lexists(path) and (left := earlier_results(workdir)):
        raise RunError(restart_refused(workdir, left, f"{CHECKPOINTS}/ is missing"))


def earlier_results(workdir: str) -> str:
    """What a fresh start in ``workdir`` would overwrite, in words ("metrics from a
    previous run (7 rows), samples.jsonl, config.json"); "" for nothing."""
    found = []
    with contextlib.suppress(OSError), open(os.path.join(workdir, "metrics.jsonl")) as f:
        rows = sum(1 for line in f if line.strip())
        if rows:
            found.append(f"metrics from a previous run ({rows} rows)")
    for name in ("samples.jsonl", "config.json", "results.json"):
        if os.path.lexists(os.path.join(workdir, name)):
            found.append(name)
    return ", ".join(found)


def restart_refused(workdir: str, left: str, why: str) -> str:
    return (
        f"{workdir} has {left} but no readable checkpoint ({why}); nothing was changed: use a "
        f"new --workdir, or move {workdir} aside to start over"
    )


def write_failed(what: str, reason: str, workdir: str, failed_step: int | None = None) -> str:
    """The one line a run ends with when the disk fills up under it: what, why, the free
    space, and the last complete checkpoint (a failed write never touches it)."""
    free = "?"
    with contextlib.suppress(OSError):
        free = f"{shutil.disk_usage(workdir).free / 2**20:.1f} MiB"
    steps = [s for s in complete_steps(os.path.join(workdir, CHECKPOINTS)) if s != failed_step]
    last = (
        f"the last complete checkpoint, step {steps[-1]}, is intact"
        if steps
        else "no checkpoint was complete yet"
    )
    return (
        f"could not write {what}: {reason} ({free} free); {last}; free some space and re-run "
        "the same command to resume"
    )


class WorkdirLock:
    """``WORKDIR/.lock``: an flock on a file naming its holder (command, pid, host, start
    time). ``command``: what holds it, ``seqlab train`` or ``seqlab sweep`` (a sweep's
    directory has the same one-process rule as a workdir)."""

    def __init__(self, workdir: str, command: str = "seqlab train"):
        self.workdir, self.path = workdir, os.path.join(workdir, LOCK)
        self.command = command
        self.fd: int | None = None

    def __enter__(self) -> WorkdirLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def acquire(self) -> None:
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                self._flock(fd)
            except BaseException:
                os.close(fd)
                raise
            if _same_file(fd, self.path):
                break
            os.close(fd)  # its holder removed it as we opened it: take the new one
        previous = _holder(fd)
        if previous:
            log.warning(
                "%s: the %s that held it (%s) is no longer running; taking over its lock",
                self.workdir,
                previous.get("command", "seqlab train"),
                _describe(previous),
            )
        me = {
            "command": self.command,
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.ctime(),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(me) + "\n").encode(), 0)
        self.fd = fd

    def _flock(self, fd: int) -> None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            holder = _holder(fd)
        except OSError:  # a filesystem without flock: the recorded pid has to do
            holder = _holder(fd)
            if not _alive(holder):
                return
        what = holder.get("command", "seqlab train")
        raise RunError(
            f"{self.workdir} is in use by another {what} ({_describe(holder)}); wait "
            f"for it to finish or stop it, or use another --workdir"
        )

    def release(self) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            os.unlink(self.path)  # before the flock goes: see acquire's _same_file
        os.close(self.fd)
        self.fd = None


def lock_holder(workdir: str) -> dict | None:
    """Who holds ``workdir``'s lock now (its recorded holder, ``{}`` when it wrote nothing
    yet), or None when no live process does: a lock file a killed process left is not held.
    Read-only: it never takes the lock, so it cannot get in a starting run's way."""
    path = os.path.join(workdir, LOCK)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        holder, inode = _holder(fd), os.fstat(fd).st_ino
    finally:
        os.close(fd)
    held = _flocked(inode)
    if held is None:  # no /proc/locks: the recorded pid has to do
        held = _alive(holder)
    return holder if held else None


def _flocked(inode: int) -> bool | None:
    """Whether some process holds an flock on the file with this inode (Linux's
    /proc/locks); None when that cannot be told."""
    try:
        with open("/proc/locks") as f:
            lines = f.read().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        if len(parts) > 5 and parts[1] == "FLOCK" and parts[5].rsplit(":", 1)[-1] == str(inode):
            return True
    return False


def _holder(fd: int) -> dict:
    with contextlib.suppress(OSError, ValueError):
        holder = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
        return holder if isinstance(holder, dict) else {}
    return {}


def _describe(holder: dict) -> str:
    if not holder:
        return "a process that has not written its name yet"
    since = f", since {holder['since']}" if holder.get("since") else ""
    return f"pid {holder.get('pid')} on host {holder.get('host')}{since}"


def _alive(holder: dict) -> bool:
    """Whether the recorded holder may still run (another host's process cannot be
    checked: it may)."""
    if not holder:
        return False
    if holder.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(holder["pid"]), 0)
    except ProcessLookupError:
        return False
    except (OSError, KeyError, TypeError, ValueError):
        return True
    return True


def _same_file(fd: int, path: str) -> bool:
    try:
        a, b = os.fstat(fd), os.stat(path)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
