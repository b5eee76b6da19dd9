"""Data parallelism: the same global batch split over 4 (forced host) devices gives the same
losses as one device; a bad batch/device split is one clear error."""

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
    "--config",
    os.path.join(ROOT, "configs", "long_range.py") + ":runlocal",
    "--config.data.batch_size=8",
    "--config.train.num_steps=12",
    "--config.train.log_every=3",
    "--config.train.eval_every=6",
    "--config.train.checkpoint_every=6",
    "--config.probe.every=6",
]


def train(workdir, devices, *extra):
    env = {
        **os.environ,
        "PYTHONWARNINGS": "ignore",
        "XLA_FLAGS": xla_flags(f"--xla_force_host_platform_device_count={devices}"),
    }
    return subprocess.run(
        [sys.executable, "-m", "seqlab", "train", *ARGS, *extra, "--workdir", str(workdir)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow
def test_four_devices_match_one(tmp_path):
    one, four = train(tmp_path / "one", 1), train(tmp_path / "four", 4)
    assert one.returncode == 0, one.stderr
    assert four.returncode == 0, four.stderr
    rows = lambda d, key: [r[key] for r in read_metrics(f"{d}/metrics.jsonl") if key in r]
    for key in ("train/loss", "eval/loss", "probe/layer_0/decay_rate"):
        a, b = rows(tmp_path / "one", key), rows(tmp_path / "four", key)
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a, b, rtol=2e-4, err_msg=key)


@pytest.mark.slow
def test_indivisible_batch_is_one_line(tmp_path):
    r = train(tmp_path / "bad", 4, "--config.data.batch_size=6")
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "seqlab train: error: data.batch_size=6 must be divisible by the 4 devices it is "
        "split across"
    ]
