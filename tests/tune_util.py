"""Helpers for tests of ``seqlab tune``: workers as real processes, and what they left."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG = os.path.join(ROOT, "configs", "long_range.py:runlocal")
#: a trial long enough to kill mid-way (~400 steps/s on a 2-core CPU), checkpointing often
STEPS = 1000
LONG = [
    f"--config.train.num_steps={STEPS}",
    "--config.train.checkpoint_every=100",
    "--config.train.eval_every=250",
    "--config.train.log_every=100",
]


def tune_cmd(workdir: str, trials: int, *extra: str) -> list[str]:
    argv = ["--config", CONFIG, "--workdir", workdir, "--trials", str(trials)]
    return [sys.executable, "-m", "seqlab", "tune", *argv, *extra]


def start(workdir: str, trials: int, *extra: str, log: str) -> subprocess.Popen:
    """A ``seqlab tune`` worker, its output in ``log``."""
    with open(log, "w") as f:
        return subprocess.Popen(
            tune_cmd(workdir, trials, *extra), stdout=f, stderr=subprocess.STDOUT, cwd=ROOT
        )


def wait(proc: subprocess.Popen, log: str, timeout: float = 300) -> None:
    try:
        rc = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(f"seqlab tune did not finish in {timeout} s: {tail(log)}") from None
    assert rc == 0, tail(log)


def tail(path: str, n: int = 2000) -> str:
    with open(path, errors="replace") as f:
        return f.read()[-n:]


def kill_mid_trial(
    proc: subprocess.Popen, workdir: str, only: str = "0000", timeout: float = 240
) -> str:
    """``kill -9`` the worker once its trial ``only`` has saved a checkpoint and logged
    step 200 of ``STEPS``; returns that trial's folder."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        for sub in [d for d in trial_dirs(workdir) if os.path.basename(d) == only]:
            steps = logged_steps(sub)
            if steps and max(steps) >= 200 and os.listdir(os.path.join(sub, "checkpoints")):
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
                return sub
        assert proc.poll() is None, "the worker ended before it could be killed"
        time.sleep(0.1)
    raise AssertionError("no trial reached step 200 in time")


def wait_for_dir(path: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not os.path.isdir(path):
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.1)


def trial_dirs(workdir: str) -> list[str]:
    root = os.path.join(workdir, "trials")
    return [os.path.join(root, n) for n in sorted(os.listdir(root))] if os.path.isdir(root) else []


def logged_steps(sub: str) -> list[int]:
    try:
        with open(os.path.join(sub, "metrics.jsonl")) as f:
            return [json.loads(line)["step"] for line in f if line.strip().endswith("}")]
    except OSError:
        return []


def status(sub: str) -> dict:
    with open(os.path.join(sub, "status.json")) as f:
        return json.load(f)


def load(storage: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


def states(study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out
