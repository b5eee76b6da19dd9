"""Seeds in one program: ``config.num_seeds = K`` trains K independently initialized
replicas with one jitted step, vmapped over parameters, optimizer state and data streams.

Replica i is exactly the run with ``seed = config.seed + i``: its own initialization, its own
batches and its own dropout keys. All replicas are scored on replica 0's eval set, so their
metrics compare like for like; metrics are logged per seed and as mean and std.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from seqlab.tasks import Task, make_task


def stack(trees: list[Any]) -> Any:
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def replica(tree: Any, i: int) -> Any:
    return jax.tree.map(lambda x: x[i], tree)


class Replicas:
    def __init__(self, config: ConfigDict, *, process_index: int = 0, process_count: int = 1):
        self.k = int(config.num_seeds)
        self.configs = [config]
        if self.k > 1:
            self.configs = []
            for i in range(self.k):
                c = ConfigDict(config.to_dict())
                c.seed = int(config.seed) + i
                self.configs.append(c)
        self.tasks: list[Task] = [
            make_task(c, process_index=process_index, process_count=process_count)
            for c in self.configs
        ]

    @property
    def task(self) -> Task:
        return self.tasks[0]

    def init(self, init_fn) -> tuple[Any, Any, Any]:
        """``init_fn(config, task) -> (graphdef, state, tx)`` for each replica, stacked."""
        outs = [init_fn(c, t) for c, t in zip(self.configs, self.tasks, strict=True)]
        graphdef, state, tx = outs[0]
        return (graphdef, state, tx) if self.k == 1 else (graphdef, stack([o[1] for o in outs]), tx)

    def map(self, fn, in_axes: Any = 0):
        return fn if self.k == 1 else jax.vmap(fn, in_axes=in_axes)

    def key(self, seed: int) -> jax.Array:
        if self.k == 1:
            return jax.random.key(seed)
        return jax.vmap(jax.random.key)(jnp.arange(seed, seed + self.k))

    def train_batch(self, step: int) -> dict[str, np.ndarray]:
        if self.k == 1:
            return self.task.train_batch(step)
        batches = [t.train_batch(step) for t in self.tasks]
        return {k: np.stack([b[k] for b in batches]) for k in batches[0]}

    def reduce(self, acc: Any, prefix: str) -> dict[str, float]:
        """{(sum, count)} -> means; with K > 1 also per-seed values and the std over seeds."""
        host = jax.device_get(acc)
        out = {}
        for name, (s, c) in host.items():
            v = np.asarray(s, np.float64) / np.maximum(np.asarray(c, np.float64), 1e-12)
            out[f"{prefix}{name}"] = float(v.mean())
            if self.k > 1:
                out[f"{prefix}{name}/std"] = float(v.std())
                out.update({f"{prefix}{name}/seed_{i}": float(x) for i, x in enumerate(v)})
        return out

    def first(self, tree: Any) -> Any:
        """Replica 0 (for text samples and the probe)."""
        return tree if self.k == 1 else replica(tree, 0)
