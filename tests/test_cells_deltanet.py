"""DeltaNet and Gated DeltaNet against a float64 NumPy reference of the delta rule written
per head as S <- alpha S (I - c beta k k^T) + beta v k^T (c = 2 with negative eigenvalues):
on the sequential scan and the chunked parallel form: lengths, reverse, a nonzero initial
state, gradients against finite differences, the probe, parameter counts."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.cells import make_cell
from tests.cell_check import (
    B,
    T,
    check_engines,
    check_gradients,
    check_probe,
    params_np,
    random_carry,
    sigmoid,
    silu,
    softplus,
)

F, H, NH = 3, 4, 2
#: sequential; chunked parallel form as one chunk and in chunks of 3 (T = 7: a ragged end)
ENGINES = [("scan", 0), ("parallel", 0), ("parallel", 3)]
D = H // NH
KINDS = [
    ("deltanet", False),
    ("deltanet", True),
    ("gated_deltanet", False),
    ("gated_deltanet", True),
]


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def make(kind: str, negative: bool, seed: int = 0):
    cell = make_cell(
        kind,
        F,
        H,
        rngs=nnx.Rngs(seed),
        param_dtype=jnp.float64,
        num_heads=NH,
        negative_eigenvalues=negative,
    )
    rng = np.random.default_rng(seed)  # biases away from zero, so every term matters
    cell.b = nnx.Param(jnp.asarray(0.5 * rng.standard_normal(cell.b[...].shape)))
    return cell


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.sqrt(np.sum(x * x) + 1e-6)  # the cell's L2 norm (its eps included)


def ref_step_for(kind: str, negative: bool, p: dict):
    c = 2.0 if negative else 1.0

    def step(S, x):
        z = x @ p["w_x"] + p["b"]
        S, out = S.copy(), []
        for h in range(NH):
            q, k, v = (z[j * H + h * D : j * H + (h + 1) * D] for j in range(3))
            q, k, v = unit(silu(q)) / np.sqrt(D), unit(silu(k)), silu(v)
            beta = sigmoid(z[3 * H + h])
            alpha = 1.0
            if kind == "gated_deltanet":
                g = softplus(z[3 * H + NH + h] + p["dt_bias"][h])
                alpha = np.exp(-np.exp(p["a_log"][h]) * g)
            S[h] = alpha * S[h] @ (np.eye(D) - c * beta * np.outer(k, k)) + beta * np.outer(v, k)
            out.append(S[h] @ q)
        return S, np.concatenate(out)

    return step


@pytest.mark.parametrize("kind,negative", KINDS)
@pytest.mark.slow
def test_matches_the_delta_rule(kind: str, negative: bool) -> None:
    """Lengths, a nonzero initial state, forward (gated) or reverse (not)."""
    cell = make(kind, negative, seed=1)
    xs = np.random.default_rng(2).standard_normal((B, T, F))
    step = ref_step_for(kind, negative, params_np(cell))
    reverse = kind == "deltanet"
    check_engines(cell, step, xs, random_carry(cell, 3), ENGINES, reverse)


@pytest.mark.slow
def test_gradients_match_finite_differences() -> None:
    """Gated, with negative eigenvalues: every term of both cells is on the path."""
    cell = make("gated_deltanet", True, seed=4)
    xs = np.random.default_rng(5).standard_normal((B, T, F))
    step = ref_step_for("gated_deltanet", True, params_np(cell))
    idxs = [(0, 0, 0), (1, 3, 2), (0, 6, 1)]
    check_gradients(cell, step, xs, random_carry(cell, 6), ENGINES, idxs)


def test_negative_eigenvalues_reflect_along_k() -> None:
    """With beta = 1 the transition I - 2 k k^T is a reflection (eigenvalue -1 along k)."""
    cell = make("deltanet", True)
    q, k, v, beta, alpha = cell.inputs({}, jnp.asarray(np.ones((1, cell.projection_width()))))
    kk = np.asarray(k[0, 0])
    m = np.eye(D) - 2 * np.outer(kk, kk)
    np.testing.assert_allclose(np.sort(np.linalg.eigvalsh(m)), [-1.0, 1.0], atol=1e-5)


def test_probe_view_and_num_params() -> None:
    check_probe(make("gated_deltanet", False), np.random.default_rng(7).standard_normal((B, T, F)))
    for kind in ("deltanet", "gated_deltanet"):
        gated = kind == "gated_deltanet"
        n = sum(int(x.size) for x in jax.tree.leaves(nnx.state(make(kind, False), nnx.Param)))
        assert n == (F + 1) * (3 * H + NH * (2 if gated else 1)) + (2 * NH if gated else 0)


def test_heads_must_divide_the_width() -> None:
    with pytest.raises(ValueError, match="divisible by num_heads"):
        make_cell("deltanet", F, 6, rngs=nnx.Rngs(0), num_heads=4)


def test_config_takes_the_chunked_form() -> None:
    """backend=parallel and chunk_size reach the delta rule; a cell without a parallel form
    (mlstm) refuses both in one line."""
    from seqlab.config import base_config
    from seqlab.errors import ConfigError
    from seqlab.run.validate import validate

    c = base_config()
    c.task.name = "parity"
    c.model.backend, c.model.chunk_size = "parallel", 16
    for cell in ("deltanet", "gated_deltanet"):
        c.model.cell = cell
        validate(c)
    c.model.cell = "mlstm"
    with pytest.raises(ConfigError):
        validate(c)
