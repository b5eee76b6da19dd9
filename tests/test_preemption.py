"""A real `seqlab train` process is preempted with SIGTERM, checkpoints, exits 75, and the
same command then resumes and finishes with the parameters of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from seqlab.run.checkpoint import Checkpointer
from seqlab.run.loop import PREEMPTED_EXIT_CODE

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = [
    "--config",
    os.path.join(ROOT, "configs", "long_range.py") + ":runlocal",
    "--config.train.num_steps=400",
    "--config.train.log_every=10",
    "--config.train.eval_every=1000",
    "--config.train.checkpoint_every=1000",
    "--config.train.progress=False",
    "--config.wandb.mode=disabled",
]


def train(workdir, **kw):
    cmd = [sys.executable, "-m", "seqlab", "train", *ARGS, "--workdir", str(workdir)]
    return subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        **kw,
    )


def params_at_end(workdir):
    ck = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    step = ck.latest_step()
    raw = ck.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    ck.close()
    return step, jax.tree.leaves(raw["state"]["params"])


@pytest.mark.slow
def test_sigterm_checkpoints_and_resume_matches(tmp_path):
    wd = tmp_path / "preempted"
    proc = train(wd)
    metrics = wd / "metrics.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
        time.sleep(0.2)
    assert proc.poll() is None, proc.communicate()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == PREEMPTED_EXIT_CODE, err
    assert "re-run the same command to resume" in err
    ck = Checkpointer(os.path.join(wd, "checkpoints"), async_save=False)
    stopped_at = ck.latest_step()
    ck.close()
    assert stopped_at is not None and 0 < stopped_at < 400

    resumed = train(wd)
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert f"resumed from {wd} at step {stopped_at}" in err

    straight = train(tmp_path / "straight")
    _, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err
    (sa, pa), (sb, pb) = params_at_end(wd), params_at_end(tmp_path / "straight")
    assert sa == sb == 400
    for a, b in zip(pa, pb, strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
