"""Helpers shared by the task tests (tests/test_tasks_*.py)."""

from __future__ import annotations

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
from flax import nnx


def jnp_batch(batch):
    return {k: jnp.asarray(v) for k, v in batch.items()}


def evaluate(task, model) -> dict[str, float]:
    """The train loop's eval: jitted eval_metrics, sums merged by adding, then sum / count."""
    if isinstance(model, nnx.Module):
        jitted = nnx.jit(lambda m, b: task.eval_metrics(m, b)[0])
        step = lambda b: jitted(model, b)
    else:  # a plain-Python stand-in model is closed over
        step = jax.jit(lambda b: task.eval_metrics(model, b)[0])
    acc: dict[str, list[float]] = {}
    for b in task.eval_batches():
        for k, (s, n) in step(jnp_batch(b)).items():
            acc.setdefault(k, [0.0, 0.0])
            acc[k][0] += float(s)
            acc[k][1] += float(n)
    return {k: s / n for k, (s, n) in acc.items()}


def load_config_module(name: str):
    path = pathlib.Path(__file__).resolve().parents[1] / "configs" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"seqlab_test_configs_{name}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
