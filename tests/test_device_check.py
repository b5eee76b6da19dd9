"""bench/device_check.sh, the one-command GPU check, runs on the CPU in its smoke mode: every
section's code path once, at tiny sizes, with the GPU-only peers skipped by a stated line,
and both reports written. (On a GPU box it is the same command without --cpu-smoke.)"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_cpu_smoke_runs_every_section(tmp_path: Path) -> None:
    out = tmp_path / "check"
    env = {**os.environ, "PYTHON": sys.executable, "JAX_PLATFORMS": "cpu"}
    p = subprocess.run(
        ["bash", str(ROOT / "bench" / "device_check.sh"), str(out), "--cpu-smoke"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert p.returncode == 0, p.stdout[-2000:] + p.stderr[-2000:]
    report = json.loads((out / "device_check.json").read_text())
    assert report["errors"] == [] and report["agreement"]
    assert all(r["ok"] for r in report["agreement"])
    assert {r["precision"] for r in report["speed"]} == {"fp32", "mixed"}
    assert all(r["tokens_per_s"] > 0 for r in report["speed"])
    (run,) = report["charlm"]
    assert run["exit"] == 0 and math.isfinite(run["train_loss"]), run
    skipped = "\n".join(report["skipped"])
    assert "cudnn" in skipped and "torch_cuda" in skipped  # said, not silently missing
    assert "memory: not run in --cpu-smoke (its flags checked)" in skipped
    assert "skipped    speed peers cudnn, torch_cuda: GPU only" in p.stdout
    md = (out / "device_check.md").read_text()
    for heading in ("## Agreement", "## Training step", "## Char-LM", "## Memory", "## Skipped"):
        assert heading in md


def test_without_a_gpu_and_without_smoke_it_stops_with_a_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import jax

    if jax.default_backend() == "gpu":
        pytest.skip("this machine has a GPU: the check would run")
    spec = importlib.util.spec_from_file_location(
        "device_check", ROOT / "bench" / "device_check.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.main([str(tmp_path / "out")]) == 3
    assert "not a GPU" in capsys.readouterr().out
