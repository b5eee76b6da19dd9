"""The accelerator paths compiled for their targets with no accelerator here (``seqlab plan``'s
engine): bf16 for TPU and GPU, a linear cell's associative scan for TPU, data parallelism over
two TPU slices, and a run too big for a v5e chip refused with XLA's reason. They need the
``aot`` extra (libtpu, the CUDA plugin) and skip with one line without it.

Not here: the cuDNN backend. ``jax.experimental.rnn`` asks cuDNN itself for its reserve-space
size while tracing (``gpudnnCreate``), which needs a GPU: without cuDNN it fails with "cuDNN
could not be found", with cuDNN 9.28 and the CUDA 12.9 runtime from pip (no driver) with
CUDNN_STATUS_NOT_INITIALIZED. So ``backend=cudnn`` compiles for nothing here, and seqlab
plan refuses it for GPU targets in one line (tested here and in test_plan.py);
bench/device_check.sh covers it on a lent GPU."""

from __future__ import annotations

import importlib.util

import pytest
from task_util import load_config_module

from seqlab.errors import UsageError
from seqlab.tasks import complete_config
from seqlab.tools import plan, plan_targets
from seqlab.tools.cli import main

AOT = "the aot extra is not installed (pip install -e '.[aot]')"
needs_tpu = pytest.mark.skipif(not importlib.util.find_spec("libtpu"), reason=AOT + ": libtpu")
needs_gpu = pytest.mark.skipif(
    not importlib.util.find_spec("jax_cuda12_plugin"),
    reason="the aot-gpu extra is not installed (pip install -e '.[aot-gpu]'): jax-cuda12-plugin",
)
CHARLM = ("charlm", "runlocal,corpus=python_stdlib")  # the char LM, no download


def planned(name: str, arg: str, target: str, slices: int = 1, **model):
    c = load_config_module(name).get_config(arg)
    for k, v in model.items():
        setattr(c.model, k, v)
    run, r = plan.plan(complete_config(c), plan_targets.make(target, slices))
    return run, r


@needs_tpu
@pytest.mark.slow
def test_bf16_char_lm_on_a_v5e_slice():
    _, r = planned(*CHARLM, "v5e:2x4", dtype="bfloat16")
    assert r["devices"] == 8 and r["hosts"] == 2 and r["initialize"] == "tpu-vm"
    t = r["train"]
    assert t["fits"] and t["flops"] > 0 and t["roofline_s"] > 0
    assert "bf16" in t["lowered"].as_text()  # the matmuls run in bfloat16
    assert t["serial_iterations"] >= 2 * 32  # the LSTM: forward and backward over T=32


@needs_gpu
@pytest.mark.slow
def test_bf16_char_lm_on_8_h100():
    _, r = planned(*CHARLM, "h100:8", dtype="bfloat16")
    assert r["devices"] == 8 and r["chip"] == "NVIDIA H100 80GB HBM3"
    assert r["train"]["fits"] and "bf16" in r["train"]["lowered"].as_text()
    assert r["train"]["compiled"].memory_analysis() is not None


@needs_gpu
def test_cudnn_backend_is_refused_in_one_line_without_a_gpu():
    from jax._src.hardware_utils import has_visible_nvidia_gpu

    if has_visible_nvidia_gpu():
        pytest.skip("a GPU is here: cuDNN may compile")
    with pytest.raises(UsageError, match="model.backend=cudnn cannot be compiled here"):
        planned(*CHARLM, "h100:8", backend="cudnn")


@needs_tpu
@pytest.mark.slow
def test_linear_cell_runs_its_associative_scan_on_tpu():
    run, r = planned("long_range", "lru,runlocal", "v5e:2x4")
    steps = run["batch"]["inputs"].shape[1]
    # on the CPU this config runs a sequential scan; for the TPU the model picks the parallel
    # one (backend=fast): no loop over the sequence remains
    assert r["train"]["serial_iterations"] < steps
    assert r["train"]["fits"] and "bf16" not in r["train"]["lowered"].as_text()


@needs_tpu
def test_data_parallel_over_two_slices():
    _, r = planned("long_range", "runlocal", "v5e:2x2", slices=2)
    assert r["devices"] == 8 and r["hosts"] == 2
    sharding = r["train"]["compiled"].input_shardings[0][1]["inputs"]
    assert sharding.mesh.size == 8 and sharding.spec[0] == "data"


@needs_tpu
def test_too_big_for_a_v5e_chip_is_refused_with_xla_reason(capsys):
    argv = ["plan", "--config", "configs/long_range.py:runlocal", "--target", "v5e:2x4"]
    big = ["--config.model.hidden_size=2048", "--config.data.batch_size=16384"]
    assert main([*argv, *big, "--config.data.seq_len=1000"]) == 1
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and out.startswith("does not fit v5e:2x4")
    assert "RESOURCE_EXHAUSTED" in out and "exceeds available HBM" in out
    assert "shrink data.batch_size=16384" in out
