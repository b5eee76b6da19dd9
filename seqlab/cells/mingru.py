"""minGRU and minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): the GRU and LSTM with
their gates and candidate state computed from x_t alone, so they are linear in h.

minGRU:   z = sigmoid(k_z),  h~ = g(k_h),  h_t = (1 - z) * h_{t-1} + z * h~
minLSTM:  f = sigmoid(k_f),  i = sigmoid(k_i),  f' = f / (f + i),  i' = i / (f + i),
          h_t = f' * h_{t-1} + i' * g(k_h)

with (k_*) = x_t W_x + b blocks and g(x) = x + 1/2 (x >= 0), sigmoid(x) (x < 0), the paper's
positive activation (its appendix code). Log space: log(1 - z) = -softplus(k_z), log z =
-softplus(-k_z); for the minLSTM, with d = softplus(-k_f) - softplus(-k_i): log f' =
-softplus(d), log i' = -softplus(-d).
"""

from __future__ import annotations

from typing import Any

import jax
from flax import nnx

from seqlab.cells.base import Array
from seqlab.cells.kernels import split
from seqlab.cells.linear import LinearCell, g, log_g
from seqlab.config import DEFAULTS

D = DEFAULTS.model


class MinGRUCell(LinearCell):
    num_gates = 2
    log_space = True

    def init_recurrence(
        self,
        rngs: nnx.Rngs,
        *,
        negative_eigenvalues: bool = D.negative_eigenvalues,
        **options: Any,
    ) -> None:
        """``negative_eigenvalues`` (Grazzi et al. 2025): a_t = 1 - 2 z in (-1, 1) instead of
        1 - z; a_t may then be negative, so the parallel engine combines linearly, not in logs.
        Any other option is refused as for every linear cell ("takes no options")."""
        super().init_recurrence(rngs, **options)
        self.negative_eigenvalues = bool(negative_eigenvalues)
        self.log_space = not self.negative_eigenvalues

    def coefficients(self, params: dict[str, Array], xp: Array) -> tuple[Array, Array]:
        k_z, k_h = split(xp, 2)
        z = jax.nn.sigmoid(k_z)
        return 1.0 - (2.0 if self.negative_eigenvalues else 1.0) * z, z * g(k_h)

    def log_coefficients(self, params: dict[str, Array], xp: Array) -> tuple[Array, Array]:
        k_z, k_h = split(xp, 2)
        return -jax.nn.softplus(k_z), -jax.nn.softplus(-k_z) + log_g(k_h)


class MinLSTMCell(LinearCell):
    num_gates = 3
    log_space = True

    def coefficients(self, params: dict[str, Array], xp: Array) -> tuple[Array, Array]:
        k_f, k_i, k_h = split(xp, 3)
        f, i = jax.nn.sigmoid(k_f), jax.nn.sigmoid(k_i)
        return f / (f + i), i / (f + i) * g(k_h)

    def log_coefficients(self, params: dict[str, Array], xp: Array) -> tuple[Array, Array]:
        k_f, k_i, k_h = split(xp, 3)
        d = jax.nn.softplus(-k_f) - jax.nn.softplus(-k_i)
        return -jax.nn.softplus(d), -jax.nn.softplus(-d) + log_g(k_h)
