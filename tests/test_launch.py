"""The launchers print the commands they would run (--dry-run)."""

from __future__ import annotations

import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dry(script, *args, **env):
    r = subprocess.run(
        ["bash", os.path.join(ROOT, "launch", script), "--dry-run", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_local():
    out = dry(
        "local.sh",
        "3",
        "train",
        "--config",
        "c.py",
        "--workdir",
        "w",
        PYTHON="py",
        SEQLAB_PORT="1234",
    ).splitlines()
    assert len(out) == 3
    for i, line in enumerate(out):
        assert (
            f"SEQLAB_COORDINATOR=127.0.0.1:1234 SEQLAB_NUM_PROCESSES=3 SEQLAB_PROCESS_ID={i}"
            " py -m seqlab train --config c.py --workdir w"
        ) in line


def test_local_usage_error():
    r = subprocess.run(
        ["bash", os.path.join(ROOT, "launch", "local.sh"), "x"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "usage" in r.stderr


def test_tpu_vm():
    env = {
        "TPU_NAME": "t1",
        "ZONE": "z1",
        "ACCELERATOR": "v5litepod-16",
        "SPOT": "1",
        "REPO": "https://example.org/seqlab.git",
    }
    create = dry("tpu_vm.sh", "create", **env)
    assert "gcloud compute tpus tpu-vm create t1 --zone z1" in create
    assert "--accelerator-type v5litepod-16" in create and "--spot" in create
    run = dry(
        "tpu_vm.sh", "run", "train", "--config", "configs/charlm.py", "--workdir", "/gcs/r", **env
    )
    assert "--worker=all" in run and "python -m seqlab train --config configs/charlm.py" in run
    assert "git clone" in dry("tpu_vm.sh", "install", **env)
    loop = dry("tpu_vm.sh", "resume-loop", "train", "--workdir", "/gcs/r", **env)
    assert "create" in loop and "seqlab train" in loop
    assert "wandb agent abc123" in dry("tpu_vm.sh", "agent", "abc123", **env)
    assert "tpu-vm delete t1" in dry("tpu_vm.sh", "delete", **env)


def test_slurm():
    out = dry(
        "slurm.sbatch",
        "train",
        "--config",
        "configs/charlm.py",
        "--workdir",
        "/s/r",
        PYTHON="python3",
    )
    assert out.strip() == (
        "srun --kill-on-bad-exit=1 python3 -m seqlab train --config "
        "configs/charlm.py --workdir /s/r"
    )
