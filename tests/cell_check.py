"""Shared checks for the 2024-25 cells (mamba, slstm, mlstm, deltanet, gated_deltanet): a
float64 NumPy sequence runner for a per-example reference step, and the engine, gradient and
probe comparisons every test_cells_<name>.py makes against it."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqlab.recurrence import Recurrent

B, T = 3, 7
LENGTHS = np.array([7, 4, 1])


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def softplus(x: np.ndarray) -> np.ndarray:
    return np.log1p(np.exp(x))


def silu(x: np.ndarray) -> np.ndarray:
    return x * sigmoid(x)


def params_np(cell: Any) -> dict[str, np.ndarray]:
    p = {"w_x": np.asarray(cell.w_x[...]), "b": np.asarray(cell.b[...])}
    return p | {k: np.asarray(v) for k, v in cell.recurrent_params().items()}


def example(carry: Any, b: int) -> Any:
    return jax.tree.map(lambda c: np.array(c[b], np.float64), carry)


def ref_run(step: Callable, xs: np.ndarray, carry0: Any, lengths, reverse: bool = False):
    """(outputs (B, T, out), final carries stacked): ``step(carry, x_t) -> (carry, y_t)`` for
    one example; padded steps inert and zero; reverse reads each valid prefix backwards."""
    ys, finals = None, []
    for b in range(xs.shape[0]):
        c = example(carry0, b)
        order = list(range(lengths[b]))
        for t in reversed(order) if reverse else order:
            c, y = step(c, xs[b, t])
            if ys is None:
                ys = np.zeros((*xs.shape[:2], y.shape[-1]))
            ys[b, t] = y
        finals.append(c)
    return ys, jax.tree.map(lambda *a: np.stack(a), *finals)


def random_carry(cell: Any, seed: int, scale: float = 0.5) -> Any:
    """A nonzero initial carry shaped like the cell's (positive entries: valid everywhere)."""
    rng = np.random.default_rng(seed)
    zero = cell.initial_carry(B)
    return jax.tree.map(lambda z: jnp.asarray(scale * (0.2 + rng.random(z.shape))), zero)


def check_engines(cell, ref_step, xs, carry0, engines, reverse, tol=1e-10) -> None:
    """Every engine in ``engines`` ((backend, chunk) pairs) equals the reference."""
    y_ref, c_ref = ref_run(ref_step, xs, carry0, LENGTHS, reverse)
    for backend, chunk in engines:
        layer = Recurrent(cell, backend=backend, chunk_size=chunk, reverse=reverse)
        assert backend != "parallel" or layer.engine in ("parallel", "chunked")
        y, c = layer(jnp.asarray(xs), lengths=jnp.asarray(LENGTHS), initial_carry=carry0)
        np.testing.assert_allclose(np.asarray(y), y_ref, rtol=tol, atol=tol)
        for a, r in zip(jax.tree.leaves(c), jax.tree.leaves(c_ref), strict=True):
            np.testing.assert_allclose(np.asarray(a), r, rtol=tol, atol=tol)


def check_gradients(cell, ref_step, xs, carry0, engines, idxs) -> None:
    """Parameter, input and initial-state gradients agree across engines; the input
    gradient matches central differences of the NumPy reference; padding gets none."""
    w = np.random.default_rng(99).standard_normal(ref_run(ref_step, xs, carry0, LENGTHS)[0].shape)
    graphdef, params, rest = nnx.split(cell, nnx.Param, ...)

    def loss(p, x, c0, backend, chunk):
        layer = Recurrent(nnx.merge(graphdef, p, rest), backend=backend, chunk_size=chunk)
        y, c = layer(x, lengths=jnp.asarray(LENGTHS), initial_carry=c0)
        return jnp.sum(w * jnp.sin(y)) + sum(jnp.sum(jnp.sin(a)) for a in jax.tree.leaves(c))

    args = (params, jnp.asarray(xs), carry0)
    grads = {e: jax.grad(loss, argnums=(0, 1, 2))(*args, *e) for e in engines}
    for e in engines[1:]:
        for a, b in zip(jax.tree.leaves(grads[e]), jax.tree.leaves(grads[engines[0]]), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-9, atol=1e-11)

    def ref_loss(x: np.ndarray) -> float:
        y, c = ref_run(ref_step, x, carry0, LENGTHS)
        return float(np.sum(w * np.sin(y)) + sum(np.sum(np.sin(a)) for a in jax.tree.leaves(c)))

    gx = np.asarray(grads[engines[0]][1])
    for idx in idxs:
        e = np.zeros_like(xs)
        e[idx] = 1e-6
        fd = (ref_loss(xs + e) - ref_loss(xs - e)) / 2e-6
        np.testing.assert_allclose(gx[idx], fd, rtol=1e-5, atol=1e-8)
    assert np.all(gx[2, 1:] == 0)  # example 2 has length 1: its padded steps get nothing


def check_probe(cell, xs, backend: str = "scan") -> None:
    """A zero perturbation of the probe's hidden view changes nothing, and the view
    round-trips through set_hidden."""
    layer = Recurrent(cell, backend=backend)
    x = jnp.asarray(xs)
    c0 = cell.initial_carry(B)
    view = cell.hidden(c0)
    back = cell.set_hidden(c0, view + 1.0)
    np.testing.assert_allclose(np.asarray(cell.hidden(back)), np.asarray(view) + 1.0)
    eps = jnp.zeros((B, T, view.shape[-1]))
    y0, _ = layer(x)
    y1, _ = layer(x, h_perturb=eps)
    np.testing.assert_allclose(np.asarray(y1), np.asarray(y0), rtol=1e-12, atol=1e-12)
    g = jax.grad(lambda e: jnp.sum(layer(x, h_perturb=e)[0][:, -1] ** 2))(eps)
    assert np.all(np.isfinite(np.asarray(g))) and np.any(np.asarray(g)[:, 0] != 0)
