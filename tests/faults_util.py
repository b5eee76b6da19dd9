"""Shared machinery of the fault-injection suite (tests/test_faults_*.py): real `seqlab`
processes and their environment, workdir snapshots, checkpoint inspection, the kill -9 loop,
and the tally of what was tried, printed as one summary line at the end of the session.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tests import compile_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIGS = os.path.join(ROOT, "configs")
SHARED_DATA = os.path.join(os.path.dirname(ROOT), "shared", "data")
TMP_MARK = ".orbax-checkpoint-tmp"  # orbax's suffix for a checkpoint still being written
PERF = "perf/"


def config_path(name: str) -> str:
    return os.path.join(CONFIGS, name)


def charlm_corpus_arg() -> str:
    """The char-LM variant that needs no network: tinyshakespeare from the shared data dir
    when it is there, else the interpreter's own standard library."""
    if os.path.isfile(os.path.join(SHARED_DATA, "tinyshakespeare", "input.txt")):
        return ""
    return ",corpus=python_stdlib"


# -- real processes --------------------------------------------------------------------------
def seqlab_env(jax_cache: str | None = None, **extra: str) -> dict[str, str]:
    """The environment of a `seqlab` subprocess. A persistent compilation cache makes each
    restart cost seconds instead of ~10 s of XLA compiles; it changes no result (every run of
    a test, killed or not, reads the same cached executables)."""
    # WANDB_SERVICE: the socket of a wandb service this test process started (an in-process
    # wandb.init); a child connected to it cannot re-init a run id after a failed init, as a
    # child of a shell, with its own service, can
    drop = ("SEQLAB_DEBUG", "XLA_FLAGS", "WANDB_SERVICE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONWARNINGS="ignore", WANDB_SILENT="true", TF_CPP_MIN_LOG_LEVEL="3")
    if os.path.isdir(SHARED_DATA):
        env["SEQLAB_DATA_DIR"] = SHARED_DATA
    if jax_cache:
        env.update(
            JAX_COMPILATION_CACHE_DIR=jax_cache,
            JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
            JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="-1",
        )
    flags = compile_flags.xla_flags(*extra.pop("XLA_FLAGS", "").split())
    if flags:
        env["XLA_FLAGS"] = flags
    env.update(extra)
    return env


# `python -m seqlab`, with SIGINT raising KeyboardInterrupt as in a terminal even when the test
# runner runs in the background (whose children inherit SIGINT as ignored). No preexec_fn:
# forking a process that has JAX's threads running is unsafe.
_MAIN = (
    "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
    "sys.argv[0] = 'seqlab'; runpy.run_module('seqlab', run_name='__main__', alter_sys=True)"
)


def seqlab_cmd(*args: str) -> list[str]:
    return [sys.executable, "-c", _MAIN, *args]


def seqlab_module_cmd(*args: str) -> list[str]:
    """Exactly ``python -m seqlab ARGS``."""
    return [sys.executable, "-m", "seqlab", *args]


def launch(
    cmd: Sequence[str], env: dict[str, str], log_prefix: str, **kw: Any
) -> tuple[subprocess.Popen, str, str]:
    """Starts ``cmd`` with stdout/stderr in files (a pipe nobody reads could block it) in its
    own session, so a signal can go to its whole process group like a terminal's Ctrl-C."""
    out, err = log_prefix + ".out", log_prefix + ".err"
    with open(out, "w") as fo, open(err, "w") as fe:
        proc = subprocess.Popen(
            list(cmd),
            stdout=fo,
            stderr=fe,
            env=env,
            cwd=ROOT,
            start_new_session=True,
            **kw,
        )
    return proc, out, err


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)


def read(path: str) -> str:
    with open(path, errors="replace") as f:
        return f.read()


@dataclass
class Result:
    rc: int
    out: str
    err: str
    seconds: float


def run(cmd: Sequence[str], env: dict[str, str], log_prefix: str, timeout: float = 300) -> Result:
    t0 = time.time()
    proc, out, err = launch(cmd, env, log_prefix)
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return Result(proc.returncode, read(out), read(err), time.time() - t0)


def closed_port() -> int:
    """A localhost TCP port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- workdirs --------------------------------------------------------------------------------
def snapshot(directory: str) -> dict[str, Any]:
    """Every file (size, mtime) and folder under ``directory``: what "untouched" means."""
    snap: dict[str, Any] = {}
    for root, dirs, files in os.walk(directory):
        rel = os.path.relpath(root, directory)
        for d in dirs:
            snap[os.path.join(rel, d) + "/"] = None
        for f in files:
            st = os.stat(os.path.join(root, f))
            snap[os.path.join(rel, f)] = (st.st_size, st.st_mtime_ns)
    return snap


def diff_snapshots(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    return [
        f"{k}: {a.get(k, 'absent')} -> {b.get(k, 'absent')}"
        for k in sorted(set(a) | set(b))
        if a.get(k, "absent") != b.get(k, "absent")
    ]


def error_lines(err: str) -> list[str]:
    return [ln for ln in err.strip().splitlines() if ln.strip()]


def assert_one_line_error(code: int, err: str, needles: Sequence[str], expected: int = 2) -> str:
    """Exit status ``expected``, exactly one line on stderr containing every needle, and no
    Python traceback. Returns the line."""
    lines = error_lines(err)
    assert "Traceback" not in err, err[-3000:]
    assert code == expected, f"exit status {code}, expected {expected}; stderr:\n{err[-3000:]}"
    assert len(lines) == 1, f"{len(lines)} lines on stderr, expected 1:\n{err[-3000:]}"
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"
    return lines[0]


def assert_error_line(code: int, err: str, needles: Sequence[str], expected: int = 2) -> str:
    """For a run that trained before failing: progress lines may come first, then exactly one
    error line, last, with every needle; no traceback."""
    lines = error_lines(err)
    errors = [ln for ln in lines if ": error: " in ln]
    assert "Traceback" not in err, err[-3000:]
    assert code == expected, f"exit status {code}, expected {expected}; stderr:\n{err[-3000:]}"
    assert len(errors) == 1 and lines[-1] == errors[0], err[-3000:]
    for needle in needles:
        assert needle in errors[0], f"{needle!r} not in {errors[0]!r}"
    return errors[0]


def read_rows(path: str) -> list[dict[str, Any]]:
    from seqlab.run.writers import read_metrics

    return read_metrics(path) if os.path.exists(path) else []


def strip_perf(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if not k.startswith(PERF)} for r in rows]


# -- checkpoints -----------------------------------------------------------------------------
@dataclass(frozen=True)
class CkptView:
    finalized: tuple[int, ...]  # step folders orbax treats as complete
    partial: tuple[str, ...]  # *.orbax-checkpoint-tmp* folders (a save in progress or cut off)

    @property
    def latest(self) -> int | None:
        return max(self.finalized) if self.finalized else None

    def partial_steps(self) -> list[int]:
        return [int(m.group(1)) for p in self.partial if (m := re.match(r"(\d+)\.", p))]


def ckpt_view(workdir: str) -> CkptView:
    try:
        names = os.listdir(os.path.join(workdir, "checkpoints"))
    except OSError:
        names = []
    return CkptView(
        tuple(sorted(int(n) for n in names if n.isdigit())),
        tuple(sorted(n for n in names if TMP_MARK in n)),
    )


def incomplete_steps(workdir: str) -> list[int]:
    """Step folders orbax counts as complete (no tmp suffix) that miss files every saved
    checkpoint has: what a process killed while orbax deleted an old checkpoint leaves."""
    ck = os.path.join(workdir, "checkpoints")
    need = ("commit_success.txt", "_CHECKPOINT_METADATA", os.path.join("meta", "metadata"))
    return [
        s
        for s in ckpt_view(workdir).finalized
        if not all(os.path.exists(os.path.join(ck, str(s), f)) for f in need)
    ]


def restore_raw(workdir: str, step: int) -> tuple[Any, dict[str, Any]]:
    """(state pytree of NumPy arrays, meta) of checkpoint ``step``, read without a target."""
    import jax
    import orbax.checkpoint as ocp

    from seqlab.run.checkpoint import Checkpointer

    ck = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    try:
        raw = ck.manager.restore(
            step,
            args=ocp.args.Composite(state=ocp.args.StandardRestore(), meta=ocp.args.JsonRestore()),
        )
    finally:
        ck.close()
    return jax.device_get(raw["state"]), dict(raw["meta"])


def leaves_with_paths(tree: Any) -> list[tuple[str, np.ndarray]]:
    import jax

    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return [(jax.tree_util.keystr(p), np.asarray(x)) for p, x in flat]


def tree_differences(a: Any, b: Any) -> list[str]:
    """Paths whose arrays are not bit-identical (or whose structure differs)."""
    la, lb = leaves_with_paths(a), leaves_with_paths(b)
    if [p for p, _ in la] != [p for p, _ in lb]:
        return [f"structure: {[p for p, _ in la]} vs {[p for p, _ in lb]}"]
    out = []
    for (path, x), (_, y) in zip(la, lb, strict=True):
        if x.dtype != y.dtype or x.shape != y.shape or x.tobytes() != y.tobytes():
            out.append(path)
    return out


def nonfinite_leaves(tree: Any) -> list[str]:
    return [
        p
        for p, x in leaves_with_paths(tree)
        if np.issubdtype(x.dtype, np.floating) and not np.isfinite(x).all()
    ]


# -- W&B offline files -----------------------------------------------------------------------
def wandb_records(path: str):
    """(kind, record) of every record in a W&B ``.wandb`` transaction log (LevelDB log
    format: a 7-byte ``:W&B`` header, then 32 KiB blocks of crc/length/type-framed chunks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:  # zero padding to the end of the block
            pos += left
            continue
        chunk, pos = data[pos + 7 : pos + 7 + length], pos + 7 + length
        if kind in (1, 2):  # full, first
            pending = chunk
        else:  # middle, last
            pending += chunk
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(pending)
            yield record.WhichOneof("record_type"), record


def wandb_history_steps(path: str) -> list[int]:
    steps = []
    for kind, record in wandb_records(path):
        if kind == "history":
            items = {i.key or "/".join(i.nested_key): i.value_json for i in record.history.item}
            if "_step" in items:
                steps.append(int(json.loads(items["_step"])))
    return steps


# -- the tally -------------------------------------------------------------------------------
_KEYS = (
    "kill_points",
    "kill_resumes",
    "kill_partial",
    "kill_partial_newer",
    "kill_half_deleted",
    "bit_identical_runs",
    "checkpoints_compared",
    "malformed_tried",
    "malformed_rejected",
    "signals",
    "nonfinite_steps",
    "nonfinite_checkpoints",
    "wandb_unreachable",
    "sweep_crashes",
)
_lock = threading.Lock()


def _tally_path() -> str:
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID") or f"pid{os.getpid()}"
    return os.path.join(tempfile.gettempdir(), f"seqlab-faults-{run_id}.json")


def count(key: str, n: int = 1) -> None:
    """Adds ``n`` to a counter shared by every pytest-xdist worker of this run."""
    import fcntl

    assert key in _KEYS, key
    with _lock, open(_tally_path() + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        path = _tally_path()
        counts = {}
        with contextlib.suppress(OSError, ValueError), open(path) as f:
            counts = json.load(f)
        counts[key] = counts.get(key, 0) + n
        with open(path + ".tmp", "w") as f:
            json.dump(counts, f)
        os.replace(path + ".tmp", path)


def counts() -> dict[str, int]:
    try:
        with open(_tally_path()) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def summary_line() -> str:
    """``faults: 26 kill points survived (...), 88 malformed inputs tried: ...``."""
    c = {k: 0 for k in _KEYS} | counts()
    parts = []
    if c["kill_points"]:
        parts.append(
            f"{c['kill_points']} kill -9 points survived ({c['bit_identical_runs']} killed runs "
            f"finished bit-identical to uninterrupted ones, {c['checkpoints_compared']} "
            f"checkpoints compared bit-for-bit, {c['kill_resumes']} resumes from the last "
            f"complete checkpoint, {c['kill_partial']} kills inside a checkpoint save, "
            f"{c['kill_partial_newer']} newer partial checkpoints never loaded, "
            f"{c['kill_half_deleted']} inside the deletion of an old one)"
        )
    if c["malformed_tried"]:
        bugs = c["malformed_tried"] - c["malformed_rejected"]
        parts.append(
            f"{c['malformed_tried']} malformed inputs tried ({c['malformed_rejected']} rejected "
            f"with exit 2, one line, workdir untouched; {bugs} not, xfail)"
        )
    if c["signals"]:
        parts.append(f"{c['signals']} SIGTERM/SIGINT scenarios resumed bit-identical")
    if c["nonfinite_steps"]:
        parts.append(
            f"{c['nonfinite_steps']} poisoned steps skipped, {c['nonfinite_checkpoints']} "
            "checkpoints restored and all finite"
        )
    if c["wandb_unreachable"]:
        parts.append(f"{c['wandb_unreachable']} W&B-unreachable run")
    if c["sweep_crashes"]:
        parts.append(f"{c['sweep_crashes']} crashing sweep point recorded, the others finished")
    return "faults: " + (", ".join(parts) if parts else "nothing counted")


class SummaryPlugin:
    """Registered once per session: prints the summary line in pytest's terminal summary."""

    registered = False

    def pytest_terminal_summary(self, terminalreporter):
        terminalreporter.write_line(summary_line())


def register_summary(config) -> None:
    if SummaryPlugin.registered:
        return
    SummaryPlugin.registered = True
    if hasattr(config, "workerinput"):  # a pytest-xdist worker: its terminal is not shown;
        return  # the counts are in the tally file and each counting test's output (-rP)
    with contextlib.suppress(OSError):
        os.remove(_tally_path())  # a stale file of an earlier process with this pid
    config.pluginmanager.register(SummaryPlugin(), "seqlab-faults-summary")


# -- the kill -9 loop ------------------------------------------------------------------------
class Watch:
    """Cheap views of a workdir that a running `seqlab train` writes, polled every few ms."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.metrics = os.path.join(workdir, "metrics.jsonl")
        self.stale = self._identity()  # the file a killed run left, until the next rewrites it

    def _identity(self) -> tuple[int, int] | None:
        try:
            st = os.stat(self.metrics)
        except OSError:
            return None
        return st.st_ino, st.st_ctime_ns

    def ckpt(self) -> CkptView:
        return ckpt_view(self.workdir)

    def rows(self) -> list[dict[str, Any]]:
        """The rows of this launch: none while metrics.jsonl is still the file an earlier
        launch left (a resume rewrites it without the rows past the checkpoint)."""
        if self.stale is not None and self._identity() == self.stale:
            return []
        self.stale = None
        return read_rows(self.metrics)


Trigger = Callable[[Watch, float], bool]  # (watch, seconds since launch) -> kill now?


@dataclass
class KillPoint:
    """Where to kill: ``kind`` with an argument, relative to the state at launch."""

    kind: str  # first_save | in_save | after_save | row | eval | eval_or_next | delay
    arg: float = 0

    def trigger(self, base: CkptView, eval_every: int) -> Trigger:
        s0 = base.latest or 0
        kind, arg = self.kind, self.arg
        if kind == "first_save":  # the very first checkpoint is being written (or, should the
            # poll miss that window on a loaded machine, just after it was)
            return lambda w, t: bool(w.ckpt().partial or w.ckpt().finalized)
        if kind == "in_save":  # inside the save of step s0 + arg
            return lambda w, t: any(s >= s0 + arg for s in w.ckpt().partial_steps())
        if kind == "after_save":  # right after the checkpoint of step s0 + arg completed
            return lambda w, t: any(s >= s0 + arg for s in w.ckpt().finalized)
        if kind == "row":  # right after the metrics row of step s0 + arg was written
            return lambda w, t: any(r.get("step", 0) >= s0 + arg for r in w.rows())

        if kind in ("eval", "eval_or_next"):  # between a train row at an eval step and its
            # eval row; eval_or_next: or, once such a window went by unseen, right away

            def in_eval(w: Watch, t: float) -> bool:
                rows = w.rows()
                if not rows:
                    return False
                last = rows[-1]
                if "train/loss" in last and last["step"] % eval_every == 0 and last["step"] > s0:
                    return True
                return kind == "eval_or_next" and any(
                    "eval/loss" in r and r["step"] > s0 for r in rows
                )

            return in_eval
        if kind == "delay":  # a seeded random moment: start-up, restore, compile, training
            return lambda w, t: t >= arg
        raise ValueError(kind)


@dataclass
class Attempt:
    point: str
    killed: bool
    rc: int | None
    seconds: float
    before: CkptView
    after: CkptView
    resumed_from: int | None
    err: str
    first_save_at: float | None = None
    fired: bool = False
    rows_at_fire: list[dict[str, Any]] | None = None  # metrics rows when the point triggered
    rows_after: list[dict[str, Any]] | None = None  # ... and once the process had exited
    half_deleted: list[int] = field(default_factory=list)  # see incomplete_steps
    out: str = ""


@dataclass
class LoopResult:
    name: str
    workdir: str
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def kills(self) -> list[Attempt]:
        return [a for a in self.attempts if a.killed]


def sigkill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)


def run_attempt(
    cmd: Sequence[str],
    env: dict[str, str],
    workdir: str,
    log_prefix: str,
    point: KillPoint | None,
    eval_every: int,
    action: Callable[[subprocess.Popen], None] = sigkill,
    timeout: float = 240,
    poll: float = 0.003,
) -> Attempt:
    """One launch of ``cmd``; ``action`` (SIGKILL) the moment ``point`` triggers (None: run to
    the end), then wait for the process to exit."""
    watch = Watch(workdir)
    before = watch.ckpt()
    trigger = point.trigger(before, eval_every) if point else None
    t0 = time.time()
    proc, out_path, err_path = launch(cmd, env, log_prefix)
    fired, first_save, rows_at_fire = False, None, None
    old = {str(s) for s in before.finalized} | set(before.partial)
    try:
        while proc.poll() is None:
            t = time.time() - t0
            if first_save is None:
                now = watch.ckpt()
                if ({str(s) for s in now.finalized} | set(now.partial)) - old:
                    first_save = t  # this launch began its first checkpoint save
            if trigger is not None and trigger(watch, t):
                action(proc)
                fired = True
                rows_at_fire = watch.rows()
                proc.wait(timeout=timeout)
                break
            if t > timeout:
                raise AssertionError(f"{cmd} ran for more than {timeout} s")
            time.sleep(poll)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    rows_after = watch.rows()
    half_deleted = incomplete_steps(workdir)
    err = read(err_path)
    m = re.search(r"resumed from .* at step (\d+)", err)
    return Attempt(
        point=f"{point.kind}({point.arg:g})" if point else "to the end",
        killed=fired and proc.returncode == -signal.SIGKILL,
        rc=proc.returncode,
        seconds=time.time() - t0,
        before=before,
        after=watch.ckpt(),
        resumed_from=int(m.group(1)) if m else None,
        err=err,
        first_save_at=first_save,
        fired=fired,
        rows_at_fire=rows_at_fire,
        rows_after=rows_after,
        half_deleted=half_deleted,
        out=read(out_path),
    )


def kill_plan(rng: random.Random) -> list[KillPoint]:
    """The kill points of one loop, in order; random ones are seeded. Each point after the
    first two advances the run by at least one complete checkpoint (see KillPoint). A
    ``delay`` is a fraction of the time the last launch took to reach its first checkpoint
    save: a moment in start-up, restore or compilation."""
    delay = lambda: KillPoint("delay", round(rng.uniform(0.1, 1.0), 2))
    return [
        KillPoint("first_save"),  # the very first checkpoint save
        delay(),  # restart with only a partial checkpoint on disk
        KillPoint("in_save", rng.choice((2, 3))),
        KillPoint("row", rng.choice((3, 4))),
        KillPoint("after_save", 1),
        KillPoint("in_save", rng.choice((2, 3))),
        KillPoint("eval_or_next"),  # inside the first eval (step 10)
        delay(),
        KillPoint("in_save", 2),
        KillPoint("row", 3),
        KillPoint("after_save", 2),
        KillPoint("eval_or_next"),  # inside the second eval (step 20)
        KillPoint("in_save", rng.choice((2, 3))),
    ]


def kill_loop(
    name: str,
    cmd: Sequence[str],
    env: dict[str, str],
    workdir: str,
    logs: str,
    plan: list[KillPoint],
    eval_every: int,
) -> LoopResult:
    """Launches ``cmd`` again after every kill in ``plan``, then once more to the end."""
    result, startup = LoopResult(name, workdir), 3.0
    for i, point in enumerate(plan):
        if point.kind == "delay":
            point = KillPoint("delay", round(point.arg * startup, 2))
        a = run_attempt(cmd, env, workdir, os.path.join(logs, f"{name}.{i}"), point, eval_every)
        result.attempts.append(a)
        if a.first_save_at:
            startup = a.first_save_at  # launch to its first checkpoint save
        if not a.killed:  # it finished before the point came: the loop is over
            return result
    final = run_attempt(cmd, env, workdir, os.path.join(logs, f"{name}.end"), None, eval_every)
    result.attempts.append(final)
    return result
