"""seqlab plan on the CPU it stands on: FLOPs with scan trip counts, the CLI's answer and
JSON, and one line for a target that cannot be compiled for."""

from __future__ import annotations

import dataclasses
import json
import math

import jax
import jax.numpy as jnp
import pytest
from task_util import load_config_module

from seqlab.errors import UsageError
from seqlab.tools import plan_targets
from seqlab.tools.cli import main
from seqlab.tools.plan_cost import jaxpr_cost


def test_flops_count_every_scan_iteration():
    t, b, h = 50, 8, 32

    def loss(w, x):
        def step(carry, xt):
            carry = jnp.tanh(xt @ w + carry @ w)
            return carry, carry

        return jax.lax.scan(step, jnp.zeros((b, h)), x)[1].sum()

    w, x = jnp.ones((h, h)), jnp.ones((t, b, h))
    cost = jaxpr_cost(jax.make_jaxpr(jax.grad(loss))(w, x))
    mm = 2 * b * h * h  # one (b, h) x (h, h) matmul
    # forward: 2 matmuls a step; backward: d(carry) and two dW products (x needs no grad)
    assert cost.flops >= t * 5 * mm and cost.flops < t * 5 * mm * 1.2
    assert cost.serial == 2 * t  # the forward and the backward loop, each t steps
    xla = jax.jit(jax.grad(loss)).lower(w, x).compile().cost_analysis()
    xla = xla[0] if isinstance(xla, list) else xla
    assert xla["flops"] < cost.flops / 10  # XLA counts each loop body once: the pitfall


@pytest.mark.slow
def test_plan_cpu_estimates_and_measures(tmp_path, capsys):
    out = tmp_path / "plan.json"
    argv = ["plan", "--config", "configs/long_range.py:runlocal", "--target", "cpu"]
    assert main([*argv, "--json", str(out), "--repeats", "2"]) == 0
    text = capsys.readouterr().out
    assert "train step (compiled in" in text and "measured on this CPU" in text
    r = json.loads(out.read_text())
    assert r["fits"] and r["devices"] == 1 and r["measured_step_s"] > 0
    for step in ("train", "eval"):
        s = r[step]
        assert s["flops"] > 0 and s["bytes"] > 0 and s["memory"]["total"] > 0
        assert math.isfinite(s["roofline_s"]) and s["roofline_s"] > 0
    # the roofline is a lower bound of what the CPU measured (both peaks measured here too)
    assert r["train"]["roofline_s"] < 3 * r["measured_step_s"]


def test_target_names():
    assert plan_targets.parse("v5litepod-8") == plan_targets.parse("v5e:2x4") == ("v5e", "2x4", 1)
    assert plan_targets.parse("v4-8") == ("v4", "2x2x1", 1)  # 4 chips, 8 TensorCores
    assert plan_targets.parse("h100:8") == ("h100", "8", 1)
    with pytest.raises(UsageError, match="v5e:2x4.*h100:8"):
        plan_targets.parse("v5e:")


def test_missing_extra_is_one_line_with_the_pip_command(monkeypatch):
    from jax.experimental import topologies

    def no_libtpu(*a, **k):
        raise RuntimeError("JAX TPU support not installed; cannot generate TPU topology. See ...")

    monkeypatch.setattr(topologies, "get_topology_desc", no_libtpu)
    with pytest.raises(UsageError) as e:
        plan_targets.make("v5e:2x4")
    assert "\n" not in str(e.value) and "pip install -e '.[aot]'" in str(e.value)


@pytest.mark.slow
def test_counting_without_compiling_gives_the_compiled_plans_counts():
    """experiments/accelerator_plan.py sums a sweep's points with ``compile=False``: the same
    FLOPs and sequential iterations as the compiled plan, bytes within a few percent (the
    arguments and outputs from shapes rather than XLA's buffers), and no fit claimed."""
    from seqlab.tasks import complete_config
    from seqlab.tools import plan

    config = complete_config(load_config_module("long_range").get_config("runlocal"))
    target = plan_targets.make("cpu")
    chip = dataclasses.replace(target.chip, peak_flops=1e12, hbm_bw=1e11, hbm_bytes=2**34)
    target = dataclasses.replace(target, chip=chip)
    run, fast = plan.plan(config, target, compile=False)
    _, full = plan.plan(config, target)
    for w in ("train", "eval"):
        assert fast[w]["flops"] == full[w]["flops"] > 0
        assert fast[w]["serial_iterations"] == full[w]["serial_iterations"] > 0
        assert fast[w]["bytes"] == pytest.approx(full[w]["bytes"], rel=0.05)
        assert fast[w]["fits"] is None and full[w]["fits"] is True
        assert fast[w]["compile_s"] == 0.0 and "compiled" not in fast[w]
    # the whole run: every train step, and eval_batches per evaluation (every eval_every
    # steps and one at the end)
    evals = config.train.num_steps // config.train.eval_every + 1
    want = fast["train"]["roofline_s"] * config.train.num_steps
    want += fast["eval"]["roofline_s"] * run["eval_batches"] * evals
    assert plan.wall_seconds(fast, config, run["eval_batches"]) == pytest.approx(want)


def test_cudnn_backend_for_a_gpu_target_is_refused_in_one_line_without_a_gpu(monkeypatch, capsys):
    """jax.experimental.rnn needs a cuDNN handle, so a GPU, to trace (plan.CUDNN_REFUSAL):
    seqlab plan says so before it loads any target, with what to plan instead."""
    from jax._src import hardware_utils

    monkeypatch.setattr(hardware_utils, "has_visible_nvidia_gpu", lambda: False)
    argv = ["plan", "--config", "configs/long_range.py:runlocal", "--target", "h100:8"]
    assert main([*argv, "--config.model.backend=cudnn"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "model.backend=cudnn cannot be compiled here" in err
    assert "needs a GPU" in err and "plan with model.backend=fast" in err
    # the TPU targets and the CPU build cudnn's XLA fallback: nothing to refuse there
    from seqlab.tools.plan import refuse_cudnn_without_gpu

    config = load_config_module("long_range").get_config("runlocal")
    config.model.backend = "cudnn"
    refuse_cudnn_without_gpu(config, "tpu")
    refuse_cudnn_without_gpu(config, "cpu")


def test_an_xla_compile_failure_is_one_line_not_a_seqlab_bug(monkeypatch, capsys):
    """XLA 0.10.2's GPU compiler fails on the selective-copy attention run for an H100
    (docs/ACCELERATORS.md): seqlab plan says XLA failed, in one line, exit 1."""
    from seqlab.tools import plan

    line = "INTERNAL: Couldn't find output tile sizes that satisfy hlo: %dot.141 = f32[320,32]"

    class Lowered:
        def compile(self):
            raise jax.errors.JaxRuntimeError(line + "\n\tSymbolic tile with ...")

    fn = type("Fn", (), {"lower": lambda self, *a: Lowered()})()
    with pytest.raises(plan.CompileFailed, match="train step: INTERNAL: Couldn't find"):
        plan.compile_step(fn, (), "train step")

    def failing(config, target, compile=True):
        raise plan.CompileFailed("train step: " + line)

    monkeypatch.setattr(plan, "plan", failing)
    argv = ["plan", "--config", "configs/long_range.py:runlocal", "--target", "cpu"]
    assert main(argv) == 1
    out = capsys.readouterr().out.strip()
    assert "\n" not in out and out.startswith("XLA could not compile for cpu")
    assert "the train step: INTERNAL: Couldn't find output tile sizes" in out
