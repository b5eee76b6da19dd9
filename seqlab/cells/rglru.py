"""The Real-Gated Linear Recurrent Unit of Griffin (De et al. 2024):

    r_t = sigmoid(k_r),  i_t = sigmoid(k_i),   (k_r, k_i, v_t) = x_t W_x + b
    a_t = a^(c r_t),  a = sigmoid(Lambda),  c = 8     (log a_t = -c r_t softplus(-Lambda))
    h_t = a_t * h_{t-1} + sqrt(1 - a_t^2) * (i_t * v_t)

Griffin feeds the layer input x_t itself where this writes v_t; here v_t is a learned
projection of x_t, so the cell maps any in_features to hidden_size like every other cell
(with in_features == hidden_size it can learn the identity). Lambda is initialized so that
a^c (the per-step decay at a fully open recurrence gate) is uniform in [r_min, r_max].
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells.base import Array
from seqlab.cells.kernels import split
from seqlab.cells.linear import LinearCell
from seqlab.config import DEFAULTS

C = 8.0
D = DEFAULTS.model


class RGLRUCell(LinearCell):
    num_gates = 3

    def init_recurrence(
        self,
        rngs: nnx.Rngs,
        *,
        r_min: float = DEFAULTS.model.r_min,
        r_max: float = DEFAULTS.model.r_max,
        negative_eigenvalues: bool = DEFAULTS.model.negative_eigenvalues,
    ) -> None:
        """``negative_eigenvalues`` (Grazzi et al. 2025): a_t -> 2 a_t - 1, in (-1, 1), and
        the input scale sqrt(1 - a_t^2) of that transition."""
        self.negative_eigenvalues = bool(negative_eigenvalues)
        if not 0.0 < r_min <= r_max < 1.0:
            raise ValueError(f"RG-LRU needs 0 < r_min <= r_max < 1, got {r_min}, {r_max}")
        u = jax.random.uniform(rngs.params(), (self.hidden_size,), self.param_dtype)
        a = (r_min + u * (r_max - r_min)) ** (1.0 / C)  # a^c ~ U[r_min, r_max]
        self.a_param = nnx.Param(jnp.log(a) - jnp.log1p(-a))  # Lambda = logit(a)

    def recurrent_params(self) -> dict[str, Array]:
        return {"a_param": self.a_param[...]}

    def coefficients(self, params: dict[str, Array], xp: Array) -> tuple[Array, Array]:
        k_r, k_i, v = split(xp, 3)
        log_a = -C * jax.nn.sigmoid(k_r) * jax.nn.softplus(-params["a_param"])
        if self.negative_eigenvalues:  # 1 - (2a - 1)^2 = 4 a (1 - a)
            a = 2.0 * jnp.exp(log_a) - 1.0
            scale = jnp.sqrt(jnp.maximum(-4.0 * jnp.exp(log_a) * jnp.expm1(log_a), 1e-12))
            return a, scale * jax.nn.sigmoid(k_i) * v
        # sqrt(1 - a^2) = sqrt(-expm1(2 log a)), floored so its derivative stays finite
        scale = jnp.sqrt(jnp.maximum(-jnp.expm1(2.0 * log_a), 1e-12))
        return jnp.exp(log_a), scale * jax.nn.sigmoid(k_i) * v
