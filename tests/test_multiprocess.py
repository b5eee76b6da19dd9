"""Two processes on localhost (jax.distributed, CPU gloo collectives) reproduce the
single-process run: losses, eval metrics and probe results."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from seqlab.run.writers import read_metrics
from tests.compile_flags import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ARGS = [
    "train",
    "--config",
    os.path.join(ROOT, "configs", "long_range.py") + ":runlocal",
    "--config.data.batch_size=8",
    "--config.train.num_steps=12",
    "--config.train.log_every=3",
    "--config.train.eval_every=6",
    "--config.train.checkpoint_every=6",
    "--config.probe.every=6",
]
ENV = {**os.environ, "PYTHONWARNINGS": "ignore", "JAX_PLATFORMS": "cpu", "PYTHON": sys.executable}
ENV["XLA_FLAGS"] = xla_flags()


@pytest.mark.slow
def test_two_processes_reproduce_one(tmp_path):
    multi = subprocess.run(
        [
            "bash",
            os.path.join(ROOT, "launch", "local.sh"),
            "2",
            *ARGS,
            "--workdir",
            str(tmp_path / "multi"),
        ],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert multi.returncode == 0, multi.stderr[-3000:]
    single = subprocess.run(
        [sys.executable, "-m", "seqlab", *ARGS, "--workdir", str(tmp_path / "single")],
        env=ENV,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert single.returncode == 0, single.stderr[-3000:]
    rows = lambda d, key: [r[key] for r in read_metrics(f"{d}/metrics.jsonl") if key in r]
    for key in ("train/loss", "eval/loss", "probe/layer_0/decay_rate"):
        a, b = rows(tmp_path / "single", key), rows(tmp_path / "multi", key)
        assert len(a) == len(b) > 0, key
        np.testing.assert_allclose(a, b, rtol=1e-5, err_msg=key)
    assert sorted(os.listdir(tmp_path / "multi" / "checkpoints")) == ["12", "6"]
