"""One ``seqlab tune`` trial: an ordinary ``seqlab train`` process in
``WORKDIR/trials/NNNN`` (started through ``trial_shim``, so a dying worker sends it exactly
one SIGTERM), followed through its metrics.jsonl: each eval reported to Optuna, the trial
stopped when the pruner says so, its outcome written to its status.json."""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any

TRIALS_DIR = "trials"
POLL_S = 0.5
SHIM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "trial_shim.py")
#: seqlab train's one-line TrainingError for a run its learning rate blew up
DIVERGED = re.compile(r"non-finite loss or gradient at step|loss exploded at step")


def trial_dir_name(trial: Any) -> str:
    """A retried trial keeps its first attempt's sub-workdir (inherited user attr)."""
    name = trial.user_attrs.get("trial_dir")
    if not name:
        name = f"{trial.number:04d}"
        trial.set_user_attr("trial_dir", name)
    return name


def run_trial(study: Any, trial: Any, t: Any) -> tuple[str, Any]:
    """Trains one trial of ``t`` (a ``tune.Tune``) in its sub-workdir: ('complete', value),
    ('pruned', None), ('fail', None) or ('refused', its one-line error: bad input)."""
    from seqlab.tools import space as spaces
    from seqlab.tools.sweep import _command, _write_status

    params = spaces.suggest(trial, t.space)
    name = trial_dir_name(trial)
    sub = os.path.join(t.workdir, TRIALS_DIR, name)
    trial.set_user_attr("worker_host", socket.gethostname())
    trial.set_user_attr("worker_pid", os.getpid())
    os.makedirs(sub, exist_ok=True)
    wait_unlocked(sub)
    _write_status(sub, {"state": "running", "trial": trial.number, "overrides": params})
    wandb = [f"--config.wandb.group={t.study_name}", f"--config.wandb.name={t.study_name}-{name}"]
    cmd = _command(t.config, sub, params, [*t.extra, *wandb])
    heartbeat = optuna_heartbeat(study, trial)
    t0 = time.time()
    log = os.path.join(sub, "train.log")
    start = os.path.getsize(log) if os.path.exists(log) else 0  # this attempt's part
    with open(log, "a") as logf:
        shim = [sys.executable, SHIM, str(os.getpid())]  # one SIGTERM if this worker dies
        proc = subprocess.Popen(  # own session: a terminal's Ctrl-C reaches it only via us
            [*shim, *cmd], stdout=logf, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            pruned_at = follow(proc, trial, sub, t.metric)
        finally:
            if proc.poll() is None:  # the worker is being stopped: the trial checkpoints
                proc.send_signal(signal.SIGTERM)
            proc.wait()
            heartbeat.join()
    evals = eval_values(sub, t.metric)
    status = {"trial": trial.number, "overrides": params, "returncode": proc.returncode}
    status["wall_time_s"] = round(time.time() - t0, 2)
    if pruned_at is not None:
        _write_status(sub, {**status, "state": "pruned", "pruned_at_step": pruned_at})
        t.log(f"tune: trial {trial.number} ({name}) pruned at step {pruned_at}")
        return "pruned", None
    if proc.returncode != 0 or not evals:
        error = last_error(log, start)
        if DIVERGED.search(error):  # a result of its parameters: counted, like a pruned one
            _write_status(sub, {**status, "state": "diverged", "error": error})
            trial.set_user_attr("diverged", True)
            t.log(f"tune: trial {trial.number} ({name}) diverged (counted as pruned): {error}")
            return "pruned", None
        _write_status(sub, {**status, "state": "failed", "error": error})
        t.log(f"tune: trial {trial.number} ({name}) failed: {error}")
        return ("refused", error) if proc.returncode == 2 else ("fail", None)
    best = (max if t.mode == "max" else min)(evals.values())
    _write_status(sub, {**status, "state": "done", "value": best})
    t.log(f"tune: trial {trial.number} ({name}) done: best {t.metric} {best:.4g}")
    return "complete", best


def optuna_heartbeat(study: Any, trial: Any) -> Any:
    from optuna.storages._heartbeat import get_heartbeat_thread

    thread = get_heartbeat_thread(trial._trial_id, study._storage)
    thread.start()
    return thread


def follow(proc: subprocess.Popen, trial: Any, sub: str, metric: str) -> int | None:
    """Reports each new eval of the running trial; stops it (SIGTERM) when the pruner says
    so and returns that step, else None once the process exits."""
    reported = set(trial.storage.get_trial(trial._trial_id).intermediate_values)
    while True:
        running = proc.poll() is None
        for step, value in sorted(eval_values(sub, metric).items()):
            if step in reported:
                continue
            reported.add(step)
            trial.report(value, step)
            if running and trial.should_prune():
                proc.send_signal(signal.SIGTERM)
                return step
        if not running:
            return None
        time.sleep(POLL_S)


def eval_values(sub: str, metric: str) -> dict[int, float]:
    """{step: metric} of the trial's evals so far (a torn last line is skipped)."""
    out: dict[int, float] = {}
    with contextlib.suppress(OSError), open(os.path.join(sub, "metrics.jsonl")) as f:
        for line in f:
            with contextlib.suppress(ValueError, TypeError, KeyError):
                row = json.loads(line)
                v = float(row[metric])
                if math.isfinite(v):
                    out[int(row["step"])] = v
    return out


def wait_unlocked(sub: str, timeout_s: float = 120.0) -> None:
    """Waits while a trial process of a dead worker still holds ``sub`` (it checkpoints)."""
    path = os.path.join(sub, ".lock")
    if not os.path.exists(path):
        return
    deadline = time.time() + timeout_s
    with open(path) as f:
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                fcntl.flock(f, fcntl.LOCK_UN)
                return
            except BlockingIOError:
                if time.time() > deadline:
                    return  # seqlab train then says in one line who holds it
                time.sleep(0.5)


def last_error(path: str, offset: int = 0) -> str:
    """The last line naming an error in ``path`` from ``offset`` on (else its last line)."""
    with open(path, "rb") as f:
        f.seek(offset)
        lines = [ln.strip() for ln in f.read().decode(errors="replace").splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "error" in ln.lower():
            return ln.removeprefix("seqlab train: error: ")[:400]
    return lines[-1][:400] if lines else "no output"
