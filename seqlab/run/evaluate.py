"""Evaluation: runs a task's eval batches through a jitted metric function and reduces the
mergeable (sum, count) metrics into means, plus the task's derived metrics and baselines."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from seqlab.errors import RunError
from seqlab.tasks import Task


def add_metrics(acc: dict | None, new: dict) -> dict:
    """Merges {name: (sum, count)} trees by adding (on device; no host sync)."""
    return new if acc is None else jax.tree.map(jnp.add, acc, new)


def means(acc: dict, prefix: str) -> dict[str, float]:
    host = jax.device_get(acc)
    return {f"{prefix}{k}": float(s) / max(float(c), 1e-12) for k, (s, c) in host.items()}


class Evaluator:
    """Holds the jitted eval step for one (model definition, task) pair."""

    def __init__(self, mdef: Any, task: Task, put: Any = jax.device_put, replicas: Any = None):
        self.task = task
        self.replicas = replicas  # num_seeds > 1: vmapped over stacked params
        self.put = put  # assembles each process's eval rows into a global (sharded) batch

        def step(params, batch, carry):
            model = mdef.merge(params)
            return task.eval_metrics(model, batch, carry=carry)

        multi = replicas is not None and replicas.k > 1
        self._step = jax.jit(jax.vmap(step, in_axes=(0, None, 0)) if multi else step)

    def __call__(self, params: Any, batches: Any = None, prefix: str = "eval/") -> dict[str, float]:
        acc, carry = None, None
        for batch in self.task.eval_batches() if batches is None else batches:
            metrics, carry = self._step(params, self.put(batch), carry)
            acc = add_metrics(acc, metrics)
        if acc is None:
            raise RunError("the task produced no eval batches")
        out = self.replicas.reduce(acc, prefix) if self.replicas else means(acc, prefix)
        out.update(self.task.summarize(out, prefix))
        out.update({f"baseline/{k}": float(v) for k, v in self.task.baselines().items()})
        return out
