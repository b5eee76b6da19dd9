"""The gradient-norm probe: g_t = ||dL/dh_t|| for every position t, in one backward pass.

A zero perturbation eps_t is added to every hidden state inside the scan
(``seqlab.recurrence.layers.perturbed``); since h_t' = h_t + eps_t feeds both the output and
the next step, dL/d eps_t = dL/dh_t, so differentiating once w.r.t. all the eps gives every
g_t.

The loss is the task's own, taken as its *sum* (``metrics['loss'][0]``): for a many-to-one
task that is the sum of per-example losses at the last step, for a language model the summed
per-step loss, so g_t is the per-example gradient norm, averaged over the batch.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from seqlab.errors import RunError
from seqlab.recurrence import Bidirectional, RNNStack
from seqlab.recurrence.layers import perturbed

Array = jax.Array


def find_stack(model: Any) -> RNNStack:
    """The recurrent stack the probe perturbs (a model's ``rnn``)."""
    stack = getattr(model, "rnn", None)
    if not isinstance(stack, RNNStack):
        raise RunError(
            f"{type(model).__name__} has no `rnn` stack to probe "
            "(the probe supports language models and many-to-one models)"
        )
    return stack


def zero_perturbations(stack: RNNStack, batch: int, length: int, dtype: Any) -> list[Any]:
    out = []
    for layer in stack.layers:
        z = jnp.zeros((batch, length, stack.hidden_size), dtype)
        out.append((z, z) if isinstance(layer, Bidirectional) else z)
    return out


def grad_norms(model: Any, task: Any, batch: dict[str, Array], length: int) -> Array:
    """(num_layers, T) array of g_t averaged over the batch (forward direction for
    bidirectional layers). Pure in the model's parameters; jit it with ``length`` static."""
    stack = find_stack(model)
    B = jax.tree.leaves(batch)[0].shape[0]
    eps = zero_perturbations(stack, B, length, jnp.float32)

    def loss_sum(eps):
        with perturbed(stack, eps):
            _, (metrics, _) = task.loss(model, batch, carry=None)
        return metrics["loss"][0]

    grads = jax.grad(loss_sum)(eps)
    rows = []
    for g in grads:
        g = g[0] if isinstance(g, tuple) else g
        rows.append(jnp.mean(jnp.linalg.norm(g, axis=-1), axis=0))  # (T,)
    return jnp.stack(rows)


def summarize_curve(g: np.ndarray, horizon_factor: float = 1e-3) -> dict[str, Any]:
    """The numbers reported per curve g_1..g_T.

    decay_rate: slope of -log g against distance T - t (least squares; per step; >0 means
    vanishing). ratio: g_1 / g_T. horizon: the smallest distance at which g falls below
    ``horizon_factor`` * g_T (None if it never does within T).
    """
    g = np.asarray(g, np.float64)
    T = g.shape[0]
    dist = (T - 1) - np.arange(T)  # distance T - t for t = 1..T
    ok = g > 0
    rate = None
    if ok.sum() >= 2:
        slope = np.polyfit(dist[ok], np.log(g[ok]), 1)[0]
        rate = float(-slope)
    g_T = g[-1]
    below = np.nonzero(g[::-1] < horizon_factor * g_T)[0]  # index = distance
    return {
        "grad_norms": [float(x) for x in g],
        "decay_rate": rate,
        "ratio": float(g[0] / g_T) if g_T > 0 else None,
        "horizon": int(below[0]) if below.size else None,
    }


class Prober:
    """Probes one run at chosen steps on a fixed batch; results keyed ``layer_k/step_s``."""

    def __init__(self, mdef: Any, task: Any, put: Any = jax.device_put):
        self.task = task
        self.batch = put(task.train_batch(0))
        self.length = int(jax.tree.leaves(self.batch)[0].shape[1])
        self._fn = jax.jit(lambda p, b: grad_norms(mdef.merge(p), task, b, self.length))
        self.results: dict[str, dict[str, Any]] = {}

    def __call__(self, step: int, params: Any) -> dict[str, float]:
        """Probes ``params``; returns scalars for the metric writers."""
        g = np.asarray(jax.device_get(self._fn(params, self.batch)))
        scalars = {}
        for k, curve in enumerate(g):
            summary = summarize_curve(curve)
            self.results.setdefault(f"layer_{k}", {})[f"step_{step}"] = summary
            for name in ("decay_rate", "ratio", "horizon"):
                if summary[name] is not None:
                    scalars[f"probe/layer_{k}/{name}"] = float(summary[name])
        return scalars
