"""seqlab plan on the CPU it stands on: FLOPs with scan trip counts, the CLI's answer and
JSON, and one line for a target that cannot be compiled for."""

from __future__ import annotations

import json
import math

import jax
import jax.numpy as jnp
import pytest

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
