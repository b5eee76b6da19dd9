"""Local sweeps: a config file's ``get_sweep(arg)`` expanded into runs, N at a time.

Each point is an ordinary ``seqlab train`` process in its own sub-workdir named from its
overrides, so every point resumes like any run. ``status.json`` in a sub-workdir records how
its last attempt ended; re-running the sweep skips finished points and retries failed ones.
One failing point is recorded with its error and the rest go on.

What a sweep is (its points, and their W&B spec) is ``seqlab.tools.sweep_space``.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from seqlab.errors import UsageError
from seqlab.tools.sweep_space import (  # noqa: F401  (configs import them from here)
    cells_by_lengths,
    product,
    wandb_sweep_yaml,
    zip_,
)


def point_name(overrides: dict[str, Any]) -> str:
    """A directory name from overrides: ``cell-gru_seq_len-200`` (leaf names, sanitized)."""
    parts = [f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in overrides.items()]
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", "_".join(parts)) or "default"


def load_sweep(config_path: str, arg: str | None) -> list[dict[str, Any]]:
    """The override dicts of ``config_path``'s ``get_sweep(arg)``; whatever goes wrong in
    the file (it raises, exits, yields a non-dict) is one UsageError naming it."""
    from seqlab.tools.flags import config_problem

    path = config_path.split(":", 1)[0]
    if problem := config_problem(["--config", config_path]):
        raise UsageError(problem)
    spec = importlib.util.spec_from_file_location("_seqlab_sweep_config", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except (Exception, SystemExit) as e:  # noqa: BLE001 (a user's file: any failure is one line)
        raise UsageError(f"cannot load {path}: {_what(e)}") from None
    if not callable(getattr(module, "get_sweep", None)):
        raise UsageError(f"{path} defines no get_sweep(arg); add one yielding override dicts")
    points = _points(module.get_sweep, f"{path}:get_sweep({arg!r})", arg)
    if not points:
        raise UsageError(f"{path}:get_sweep({arg!r}) yielded no points")
    names = [point_name(p) for p in points]
    if len(set(names)) != len(names):
        raise UsageError("two sweep points map to the same directory name; make them differ")
    return points


def _points(get_sweep: Any, where: str, arg: str | None) -> list[dict[str, Any]]:
    """Every point ``get_sweep(arg)`` yields, each checked to be {dotted key: value}."""
    points: list[dict[str, Any]] = []
    try:
        for p in get_sweep(arg):
            if not isinstance(p, dict) or not all(isinstance(k, str) and k for k in p):
                raise UsageError(
                    f"{where} yielded {p!r} as point {len(points) + 1}; yield dicts of "
                    "overrides, e.g. {'model.cell': 'gru'}"
                )
            points.append(p)
    except UsageError:
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001 (a user's generator: one line)
        after = f" after {len(points)} point(s)" if points else ""
        raise UsageError(f"{where} failed{after}: {_what(e)}") from None
    return points


def _what(e: BaseException) -> str:
    if isinstance(e, SystemExit):
        return f"it called sys.exit({e.code!r})"  # a SystemExit is no exit for seqlab
    from seqlab.errors import SeqlabError

    text = " ".join(str(e).split())
    return text if isinstance(e, SeqlabError) and text else f"{type(e).__name__}: {text}"


def check_points(
    config: str,
    points: list[dict[str, Any]],
    extra: Sequence[str] = (),
    parallel: int = 1,
    *,
    memory: bool = True,
) -> None:
    """Builds every point's config as its ``seqlab train`` will (the file, the point's
    overrides, then ``extra``), validates it, makes its task and checks its memory, in this
    process and before any point runs: a bad point is one UsageError naming it and its key."""
    from seqlab.errors import SeqlabError
    from seqlab.run.memory import available_here, check_run
    from seqlab.run.validate import validate
    from seqlab.tasks import complete_config, make_task

    free = available_here() if memory else (None, "not checked")
    for p in points:
        argv = ["--config", config, *[f"--config.{k}={v}" for k, v in p.items()], *extra]
        try:
            c = complete_config(_parse_train(argv))
            validate(c)
            check_run(c, make_task(c), free=free, share=min(parallel, len(points)))
        except SeqlabError as e:
            said = " ".join(str(e).split())
            raise UsageError(f"sweep point {point_name(p)} ({_shown(p)}): {said}") from None


def _parse_train(argv: Sequence[str]) -> Any:
    """The config ``seqlab train ARGV --workdir ...`` would train (flags.parse's errors)."""
    from absl import flags

    from seqlab.tools.flags import parse

    def define(fv: flags.FlagValues) -> None:
        flags.DEFINE_string("workdir", "-", "", flag_values=fv)

    return parse("train", list(argv), define, with_config=True).config


def _shown(p: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in p.items())


#: status.json: the state of a point's last attempt (``running``, ``done``, ``stopped``,
#: ``failed``), its overrides and the command that ran it
STATUS = {"state": str}
PREEMPTED = 75  # seqlab train's exit status after a signal: checkpoint saved, resumable


def _status(workdir: str) -> dict[str, Any]:
    """A point's status.json, or {} (never run, or damaged: one warning, and it runs)."""
    from seqlab.run import records

    return records.read_json(os.path.join(workdir, "status.json"), STATUS) or {}


def _write_status(workdir: str, status: dict[str, Any]) -> None:
    from seqlab.run.writers import write_json  # here: seqlab.run loads jax; configs import us

    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "status.json"), status, indent=1)


def _command(
    config: str, workdir: str, overrides: dict[str, Any], extra: Iterable[str]
) -> list[str]:
    python = os.environ.get("PYTHON", sys.executable)
    flags = [f"--config.{k}={v}" for k, v in overrides.items()]
    return [
        python,
        "-m",
        "seqlab",
        "train",
        "--config",
        config,
        "--workdir",
        workdir,
        *flags,
        *extra,
    ]


def is_finished(status: dict[str, Any], command: Sequence[str]) -> bool:
    """Whether a point needs no re-run: its last attempt ran to the end (``done``) with the
    same command (the same flags; a status from before commands were recorded counts). A
    point left ``running`` (its process killed), ``stopped`` or ``failed`` is never finished:
    a re-run resumes it from its checkpoint."""
    if status.get("state") != "done":
        return False
    said = status.get("command")
    return said is None or list(said)[1:] == list(command)[1:]  # any python runs it


@dataclass
class _Attempt:
    name: str
    sub: str
    point: dict[str, Any]
    command: list[str]
    proc: subprocess.Popen
    log: Any
    offset: int
    t0: float = field(default_factory=time.time)


def run_sweep(
    config: str,
    workdir: str,
    *,
    sweep_arg: str | None = None,
    parallel: int = 1,
    extra: Sequence[str] = (),
    log=print,
) -> dict[str, dict[str, Any]]:
    """Runs every point not yet finished; returns {point name: status}. The sweep holds its
    directory (``DIR/.lock``, as a workdir is held) until it ends: a second sweep on it stops
    at once with one line naming the first."""
    from seqlab.run.workdir import WorkdirLock, prepare_workdir

    points = load_sweep(config, sweep_arg)
    make_sweep_dir(workdir)
    prepare_workdir(workdir)  # writable, with room: one line if not
    with WorkdirLock(workdir, "seqlab sweep"):
        return _run_points(config, workdir, points, parallel, extra, log)


def _run_points(
    config: str,
    workdir: str,
    points: list[dict[str, Any]],
    parallel: int,
    extra: Sequence[str],
    log,
) -> dict[str, dict[str, Any]]:
    from seqlab.run.workdir import lock_holder

    todo, statuses, busy = [], {}, []
    for p in points:
        name = point_name(p)
        sub = os.path.join(workdir, name)
        st, cmd = _status(sub), _command(config, sub, p, extra)
        if is_finished(st, cmd):
            statuses[name] = st
        elif (holder := lock_holder(sub)) is not None:  # a train an earlier sweep left
            statuses[name] = {**st, "state": "running", "holder": holder}
            busy.append(name)
        else:
            todo.append((name, sub, p, cmd))
    log(
        f"sweep: {len(points)} points, {len(statuses) - len(busy)} done, {len(todo)} to run, "
        f"{parallel} at a time"
        + (f"; {', '.join(busy)} still running from an earlier sweep" if busy else "")
    )
    running: list[_Attempt] = []
    try:
        while todo or running:
            while todo and len(running) < max(1, parallel):
                running.append(_start(*todo.pop(0)))
            time.sleep(0.2)
            for a in [a for a in running if a.proc.poll() is not None]:
                running.remove(a)
                statuses[a.name] = _finish(a)
                st = statuses[a.name]
                log(
                    f"sweep: {a.name} {st['state']}" + (f": {st['error']}" if "error" in st else "")
                )
    except BaseException:  # Ctrl-C, SIGTERM: each running point checkpoints and stops
        _stop(running)
        raise
    return statuses


def _start(name: str, sub: str, p: dict[str, Any], cmd: list[str]) -> _Attempt:
    """Starts one point's ``seqlab train`` in its own session (a Ctrl-C reaches the sweep,
    which stops each point once), its output appended to train.log after a header line."""
    os.makedirs(sub, exist_ok=True)
    _write_status(sub, {"state": "running", "overrides": p, "command": cmd, "since": time.ctime()})
    logf = open(os.path.join(sub, "train.log"), "ab")  # noqa: SIM115 (closed in _finish)
    offset = logf.tell()
    logf.write(f"=== seqlab sweep, {time.ctime()}: {shlex.join(cmd)}\n".encode())
    logf.flush()
    proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
    return _Attempt(name, sub, p, cmd, proc, logf, offset)


def _finish(a: _Attempt) -> dict[str, Any]:
    """The status of an attempt that has ended: ``done`` (at train.num_steps), ``stopped``
    (a signal or train.time_limit_s: a re-run resumes it) or ``failed`` (with its error)."""
    a.log.close()
    rc = a.proc.returncode
    st: dict[str, Any] = {
        "overrides": a.point,
        "command": a.command,
        "returncode": rc,
        "wall_time_s": round(time.time() - a.t0, 2),
    }
    reached = _steps(a.sub)
    if rc == 0 and reached is not None and reached[0] < reached[1]:
        st["state"] = "stopped"
        st["error"] = f"stopped at step {reached[0]} of {reached[1]} (train.time_limit_s)"
    elif rc == 0:
        st["state"] = "done"
    else:
        st["state"] = "stopped" if rc == PREEMPTED else "failed"
        st["error"] = _last_error(os.path.join(a.sub, "train.log"), a.offset)
    _write_status(a.sub, st)
    return st


def _steps(sub: str) -> tuple[int, int] | None:
    """(the step results.json says the run reached, its train.num_steps) when both read."""
    from seqlab.run import records

    results = records.read_json(os.path.join(sub, "results.json"), {"step": int})
    config = records.read_json(os.path.join(sub, "config.json"), {"train": dict})
    num_steps = (config or {}).get("train", {}).get("num_steps")
    if results is None or not isinstance(num_steps, int):
        return None
    return results["step"], num_steps


def _stop(running: list[_Attempt], grace_s: float = 600.0) -> None:
    """Sends each running point SIGTERM (it checkpoints and exits), waits for them (a second
    Ctrl-C stops waiting) and records each as stopped."""
    for a in running:
        with contextlib.suppress(OSError):
            a.proc.send_signal(signal.SIGTERM)
    try:
        for a in running:
            with contextlib.suppress(subprocess.TimeoutExpired):
                a.proc.wait(timeout=grace_s)
    except BaseException:  # a second signal: stop now
        for a in running:
            with contextlib.suppress(OSError):
                a.proc.send_signal(signal.SIGTERM)
        raise
    finally:
        for a in running:
            if a.proc.poll() is not None:
                _finish(a)
            else:
                a.log.close()  # still running: its status stays running, its lock held


def failed_points(
    config: str, workdir: str, sweep_arg: str | None, parallel: int, extra: list
) -> dict[str, dict]:
    """Runs a sweep's points not yet done; returns the statuses of those that are not."""
    statuses = run_sweep(config, workdir, sweep_arg=sweep_arg, parallel=parallel, extra=extra)
    return {n: s for n, s in statuses.items() if s.get("state") != "done"}


def say_failed(name: str, failed: dict[str, dict]) -> int:
    """One line: which points did not finish, and whether re-running alone can help (a crash,
    a stop) or their input must change first (exit status 2: the one-line error in
    status.json)."""
    if not failed:
        return 0
    busy = [n for n, st in failed.items() if st.get("state") == "running"]
    failed = {n: st for n, st in failed.items() if n not in busy}
    still = (
        f"{', '.join(busy)} still running from an earlier sweep (re-run when it ends)"
        if busy
        else ""
    )
    if not failed:
        print(f"seqlab {name}: {still}", file=sys.stderr)
        return 1
    refused = [n for n, st in failed.items() if st.get("returncode") == 2]
    retry = "re-run the same command to retry them"
    if refused:
        retry = (
            f"{', '.join(refused)} stopped on an error in its input or workdir: fix what its "
            "status.json says, then re-run the same command"
            + ("; the others may just need a re-run" if len(refused) < len(failed) else "")
        )
    print(
        f"seqlab {name}: {len(failed)} point(s) failed: {', '.join(failed)}; "
        f"each point's error is in its status.json and train.log; {retry}"
        + (f"; {still}" if still else ""),
        file=sys.stderr,
    )
    return 1


def make_sweep_dir(workdir: str) -> None:
    """Creates the sweep's directory, or says in one line why it cannot."""
    if os.path.lexists(workdir) and not os.path.isdir(workdir):
        raise UsageError(f"--workdir {workdir} is a file, not a directory; pick another")
    try:
        os.makedirs(workdir, exist_ok=True)
    except OSError as e:
        raise UsageError(f"cannot create --workdir {workdir} ({e.strerror})") from None


def _last_error(log_path: str, offset: int = 0) -> str:
    """The last line that names an error in the log of the attempt starting at ``offset``."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode("utf-8", errors="replace")
    lines = [ln.strip() for ln in text.splitlines()[1:] if ln.strip()]
    for ln in reversed(lines):
        if "error" in ln.lower() or "Error" in ln:
            return ln[-300:]
    return lines[-1][-300:] if lines else "no output"
