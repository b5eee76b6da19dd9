"""The gradient-norm probe: g_t = ||dL/dh_t|| for every position t, per layer, in log10.

Two quantities (``probe.quantity``, ``logprobe.QUANTITIES``): ``state``, ||dL/dh_t|| of each
layer's recurrent state (mixers that provide a state), and ``residual``, ||dL/dx_t|| of each
layer's input (the residual stream of a block stack), defined for every sequence mixer, so
the recurrences' decay and attention's sit in one figure. ``probe_log10`` asks the mixers
what they provide: with a recurrent state, both run on the exact log-space path below; a
stack without one (attention) is probed for ``residual`` by plain autodiff
(``residual_grad_norms``: attention's gradient reaches x_t through at most ``num_layers``
Jacobians per path, not a product over T steps, so float32 holds it).

The probe itself is ``seqlab.run.logprobe.log10_grad_norms``: an exact backward recursion
that carries every cotangent as (log-scale, unit vector), so g_t never underflows (at T =
10,000 a vanilla RNN's g_1/g_T is far below any float's range; its log10 is not).

``autodiff_grad_norms`` is the simple method it is checked against: a zero perturbation eps_t
is added to every hidden state inside the scan (``seqlab.recurrence.layers.perturbed``);
since h_t' = h_t + eps_t feeds both the output and the next step, dL/d eps_t = dL/dh_t, so
one ``jax.grad`` w.r.t. all the eps gives every g_t -- as long as the products of Jacobians
stay inside the float range (in float32 they reach 0 from T ~ 200 for a vanilla RNN).

The loss is the task's own, taken as its *sum* (``metrics['loss'][0]``): for a many-to-one
task that is the sum of per-example losses at the last step, for a language model the summed
per-step loss, so g_t is the per-example gradient norm, averaged over the batch.
"""

from __future__ import annotations

import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqlab.errors import RunError
from seqlab.recurrence import Bidirectional, RNNStack
from seqlab.recurrence.blocks import layer_provides
from seqlab.recurrence.layers import perturbed
from seqlab.run.logprobe import QUANTITIES, find_stack, log10_grad_norms

Array = jax.Array
__all__ = [
    "Prober",
    "autodiff_grad_norms",
    "draw_figures",
    "find_stack",
    "grad_norms",
    "log10_curve",
    "probe_log10",
    "residual_grad_norms",
    "summarize_curve",
]


def _zeros_like_hidden(layer: Any, batch: int, length: int) -> Array:
    """(B, T, ·) zeros shaped like the hidden view the probe perturbs (2H for the LRU)."""
    h = jax.eval_shape(lambda: layer.cell.hidden(layer.initial_carry(1)))
    return jnp.zeros((batch, length, h.shape[-1]), h.dtype)


def zero_perturbations(stack: RNNStack, batch: int, length: int) -> list[Any]:
    out = []
    for layer in stack.layers:
        if isinstance(layer, Bidirectional):
            z = (layer.forward, layer.backward)
            out.append(tuple(_zeros_like_hidden(d, batch, length) for d in z))
        else:
            out.append(_zeros_like_hidden(layer, batch, length))
    return out


def autodiff_grad_norms(model: Any, task: Any, batch: dict[str, Array], length: int) -> Array:
    """(num_layers, T) array of g_t averaged over the batch (forward direction for
    bidirectional layers), by plain autodiff: exact while it does not underflow, the
    cross-check of ``log10_grad_norms``. Pure in the parameters; jit it with ``length``
    static."""
    stack = find_stack(model)
    B = jax.tree.leaves(batch)[0].shape[0]
    eps = zero_perturbations(stack, B, length)

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


class _Nudge:
    """Stands in for one layer of a copy of the stack: adds ``eps`` to its input (token ids
    first become their one-hot vectors, which a recurrent layer's projection reads alike)."""

    def __init__(self, layer: Any):
        self._layer, self.eps, self.like = layer, None, None

    def __getattr__(self, name: str) -> Any:
        if "_layer" not in self.__dict__:
            raise AttributeError(name)
        return getattr(self.__dict__["_layer"], name)

    def __call__(self, x: Array, **kw: Any) -> Any:
        if not jnp.issubdtype(x.dtype, jnp.inexact):
            cell = getattr(self._layer, "forward", self._layer).cell
            x = jax.nn.one_hot(x, cell.in_features, dtype=cell.w_x[...].dtype)
        self.like = x
        return self._layer(x if self.eps is None else x + self.eps, **kw)


def residual_grad_norms(model: Any, task: Any, batch: dict[str, Array]) -> Array:
    """(num_layers, T) log10 ||dL/dx_t|| of each layer's input, batch-averaged, by autodiff
    (any mixer; -inf where exactly 0). Pure in the parameters: jit it."""
    copy = nnx.merge(*nnx.split(model))
    stack = find_stack(copy)
    nudges = [_Nudge(layer) for layer in stack.layers]
    for i, n in enumerate(nudges):
        stack.layers[i] = n
    task.loss(copy, batch, carry=None)  # the inputs' shapes
    eps0 = [jnp.zeros_like(n.like) for n in nudges]

    def loss_sum(eps):
        for n, e in zip(nudges, eps, strict=True):
            n.eps = e
        _, (metrics, _) = task.loss(copy, batch, carry=None)
        return metrics["loss"][0]

    grads = jax.grad(loss_sum)(eps0)
    with np.errstate(divide="ignore"):
        return jnp.stack([jnp.log10(jnp.mean(jnp.linalg.norm(g, axis=-1), 0)) for g in grads])


def probe_log10(model: Any, task: Any, batch: dict[str, Array], quantity: str = "state") -> Array:
    """(num_layers, T) log10 of ``quantity`` (module doc), on the log-space path where every
    layer's mixer provides a recurrent state, else (residual only) by autodiff."""
    if quantity not in QUANTITIES:
        raise RunError(f"probe.quantity={quantity!r}: choose one of {QUANTITIES}")
    stateful = all("state" in layer_provides(layer) for layer in find_stack(model).layers)
    if stateful:
        return log10_grad_norms(model, task, batch, quantity)
    if quantity == "state":
        raise RunError(
            "probe.quantity=state needs a recurrent state, and this model's mixer has none "
            "(attention): set probe.quantity=residual (||dL/dx_t||, defined for every mixer)"
        )
    return residual_grad_norms(model, task, batch)


def grad_norms(model: Any, task: Any, batch: dict[str, Array], length: int | None = None) -> Array:
    """(num_layers, T) array of g_t from the exact probe, in the parameters' float type (so,
    as a number, it may be 0 where log10 g is below that type's range: use
    ``log10_grad_norms`` for the logs). ``length``, if given, must be the batch's T."""
    log10_g = log10_grad_norms(model, task, batch)
    if length is not None and log10_g.shape[1] != length:
        raise ValueError(f"length={length} but the batch's sequences have {log10_g.shape[1]}")
    return jnp.power(10.0, log10_g)


def summarize_curve(log10_g: np.ndarray, horizon_factor: float = 1e-3) -> dict[str, Any]:
    """The numbers reported per curve, from log10 g_1..g_T (-inf where g is exactly 0).

    log10_grad_norms: the curve (None where g is exactly 0); grad_norms: 10**log10 g as
    float64 (0.0 below its range, ~1e-308). decay_rate: slope of -ln g against distance
    T - t (least squares; per step; > 0 means vanishing). log10_ratio: log10(g_1 / g_T);
    ratio: g_1 / g_T (float64: 0.0 or inf outside its range). horizon: the smallest distance
    at which g falls below ``horizon_factor`` * g_T (None if it never does within T).
    """
    lg = np.asarray(log10_g, np.float64)
    T = lg.shape[0]
    dist = (T - 1) - np.arange(T)  # distance T - t for t = 1..T
    ok = np.isfinite(lg)
    rate = None
    if ok.sum() >= 2:
        rate = float(-np.polyfit(dist[ok], lg[ok] * math.log(10), 1)[0])
    lg_T = lg[-1]
    log10_ratio = float(lg[0] - lg_T) if ok[0] and ok[-1] else None
    below = np.nonzero(lg[::-1] < math.log10(horizon_factor) + lg_T)[0]  # index = distance
    with np.errstate(over="ignore", under="ignore"):
        g = np.power(10.0, lg)
        ratio = float(np.power(10.0, log10_ratio)) if log10_ratio is not None else None
    return {
        "grad_norms": [float(x) for x in g],
        "log10_grad_norms": [float(x) if np.isfinite(x) else None for x in lg],
        "decay_rate": rate,
        "ratio": ratio if np.isfinite(lg_T) else None,
        "log10_ratio": log10_ratio,
        "horizon": int(below[0]) if below.size and np.isfinite(lg_T) else None,
    }


class Prober:
    """Probes one run at chosen steps on a fixed batch; results keyed ``layer_k/step_s``."""

    def __init__(self, mdef: Any, task: Any, put: Any = jax.device_put, quantity: str = "state"):
        self.task = task
        self.batch = put(task.train_batch(0))
        self.quantity = quantity
        self._fn = jax.jit(lambda p, b: probe_log10(mdef.merge(p), task, b, quantity))
        self.results: dict[str, dict[str, Any]] = {}

    def __call__(self, step: int, params: Any) -> dict[str, float]:
        """Probes ``params``; returns scalars for the metric writers."""
        lg = np.asarray(jax.device_get(self._fn(params, self.batch)))
        scalars = {}
        for k, curve in enumerate(lg):
            summary = summarize_curve(curve)
            self.results.setdefault(f"layer_{k}", {})[f"step_{step}"] = summary
            for name in ("decay_rate", "log10_ratio", "horizon"):
                if summary[name] is not None:
                    scalars[f"probe/layer_{k}/{name}"] = float(summary[name])
        return scalars


#: each quantity's axis label
LABELS = {"state": "log10 ||dL/dh_t||", "residual": "log10 ||dL/dx_t||"}


def draw_figures(
    results: dict[str, dict[str, Any]], directory: str, quantity: str = "state"
) -> dict[str, str]:
    """One run's probe as pictures (for writers that show images, e.g. W&B):
    ``probe_curves.png`` (log10 g_t against distance T - t, one panel per layer, one line per
    probed step, darker = later) and ``probe_heatmap.png`` (log10 g over (step, distance)).
    Returns {name: path}. (``seqlab report`` draws the figures that compare runs.)"""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = sorted(results, key=lambda k: int(k.split("_")[1]))
    order = {k: sorted(results[k], key=lambda s: int(s.split("_")[1])) for k in layers}
    curves = {  # None (g = 0) -> nan
        k: [np.array(log10_curve(results[k][s]), dtype=float) for s in order[k]] for k in layers
    }
    paths = {
        name: os.path.join(directory, f"{name}.png") for name in ("probe_curves", "probe_heatmap")
    }
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.2), squeeze=False)
    for ax, k in zip(axes[0], layers, strict=True):
        colors = plt.cm.viridis(np.linspace(0.9, 0.0, len(order[k])))
        for s, lg, color in zip(order[k], curves[k], colors, strict=True):
            ax.plot(np.arange(lg.size)[::-1], lg, color=color, label=s.replace("_", " "))
        ax.set_title(k.replace("_", " "))
        ax.set_xlabel("distance T - t")
        ax.set_ylabel(LABELS[quantity])
    axes[0][-1].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(paths["probe_curves"], dpi=100)
    plt.close(fig)
    fig, axes = plt.subplots(1, len(layers), figsize=(3.6 * len(layers), 3.2), squeeze=False)
    for ax, k in zip(axes[0], layers, strict=True):
        grid = np.stack([c[::-1] for c in curves[k]])
        im = ax.imshow(grid, aspect="auto", origin="lower", interpolation="nearest")
        ax.set_yticks(range(len(order[k])), [s.split("_")[1] for s in order[k]], fontsize=6)
        ax.set_title(k.replace("_", " "))
        ax.set_xlabel("distance T - t")
        ax.set_ylabel("training step")
        fig.colorbar(im, ax=ax, label=LABELS[quantity])
    fig.tight_layout()
    fig.savefig(paths["probe_heatmap"], dpi=100)
    plt.close(fig)
    return paths


def log10_curve(summary: dict[str, Any]) -> list[float | None]:
    """A summary's log10 g_1..g_T, None where g is 0 (a probe.json written before
    ``log10_grad_norms`` existed: from its ``grad_norms``)."""
    if "log10_grad_norms" in summary:
        return summary["log10_grad_norms"]
    return [math.log10(g) if g > 0 else None for g in summary["grad_norms"]]
