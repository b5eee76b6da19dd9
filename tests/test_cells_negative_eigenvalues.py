"""model.negative_eigenvalues (Grazzi et al. 2025) on the existing diagonal cells (minGRU:
1 - z -> 1 - 2z; RG-LRU: a_t -> 2 a_t - 1 with input scale sqrt(1 - a_t^2)) against float64
references on every engine; the config key refused in one line by the cells it does not fit;
one shrunk state-tracking run with the option on."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.cells import make_cell
from seqlab.config import base_config
from seqlab.errors import ConfigError
from seqlab.run.validate import validate
from tests.cell_check import B, T, check_engines, params_np, random_carry, sigmoid

F, H = 3, 4
ENGINES = [("scan", 0), ("parallel", 0), ("parallel", 3)]


def g(x: np.ndarray) -> np.ndarray:
    return np.where(x >= 0, x + 0.5, sigmoid(x))


def ref_step_for(kind: str, p: dict):
    def step(h, x):
        k = x @ p["w_x"] + p["b"]
        if kind == "mingru":
            k_z, k_h = np.split(k, 2)
            z = sigmoid(k_z)
            h = (1 - 2 * z) * h + z * g(k_h)
            return h, h
        k_r, k_i, v = np.split(k, 3)
        a = 2 * sigmoid(p["a_param"]) ** (8.0 * sigmoid(k_r)) - 1
        h = a * h + np.sqrt(1 - a**2) * (sigmoid(k_i) * v)
        return h, h

    return step


@pytest.mark.parametrize("kind", ["mingru", "rglru"])
@pytest.mark.slow
def test_negative_transitions_match_the_reference(kind: str) -> None:
    with jax.enable_x64(True):
        cell = make_cell(
            kind, F, H, rngs=nnx.Rngs(0), param_dtype=jnp.float64, negative_eigenvalues=True
        )
        cell.b = nnx.Param(jnp.asarray(np.random.default_rng(1).standard_normal(cell.b.shape)))
        assert not cell.log_space  # a negative a_t has no logarithm
        xs = np.random.default_rng(2).standard_normal((B, T, F)) * 2
        step = ref_step_for(kind, params_np(cell))
        check_engines(cell, step, xs, random_carry(cell, 3), ENGINES, reverse=kind == "rglru")
        if kind == "rglru":  # its init keeps a^c in [0.9, 0.999]: open the range
            cell.a_param = nnx.Param(jnp.zeros(H, jnp.float64))
        a, _ = cell.coefficients(cell.recurrent_params(), cell.project(jnp.asarray(xs)))
        assert np.asarray(a).min() < 0 <= np.asarray(a).max() < 1


def test_the_option_is_refused_where_it_does_not_fit() -> None:
    c = base_config()
    c.task.name = "parity"
    c.model.negative_eigenvalues = True
    for cell in ("mamba", "deltanet", "gated_deltanet", "mingru", "rglru"):
        c.model.cell = cell
        validate(c)
    why = {
        "lstm": "not a linear",
        "slstm": "not a linear",
        "lru": "complex",
        "minlstm": "log",
        "mlstm": "log space",
    }
    for cell, needle in why.items():
        c.model.cell = cell
        with pytest.raises(ConfigError) as e:
            validate(c)
        assert needle in str(e.value) and "\n" not in str(e.value)


@pytest.mark.slow
def test_state_tracking_runlocal_with_negative_eigenvalues(tmp_path) -> None:
    from seqlab.run.loop import train_and_evaluate
    from tests.task_util import load_config_module

    c = load_config_module("state_tracking").get_config("parity,deltanet,per_step,runlocal")
    c.model.negative_eigenvalues = True
    c.model.num_heads = 2
    out = train_and_evaluate(c, str(tmp_path))
    assert np.isfinite(out["eval/loss"]) and 0 <= out["eval/final_accuracy"] <= 1
