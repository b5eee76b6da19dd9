"""DeltaNet (Yang et al. 2024, "Parallelizing Linear Transformers with the Delta Rule over
Sequence Length") and Gated DeltaNet (Yang, Kautz & Hatamizadeh 2025): per head a matrix
state S (d_v x d_k) written by the delta rule,

    S_t = alpha_t S_{t-1} (I - c beta_t k_t k_t^T) + beta_t v_t k_t^T,   o_t = S_t q_t / sqrt(d_k)

with q_t, k_t = L2-normalized silu(x_t W_q), silu(x_t W_k), v_t = silu(x_t W_v),
beta_t = sigmoid(x_t w_beta) per head. DeltaNet has alpha_t = 1; Gated DeltaNet's gate is
Mamba-2's: log alpha_t = -exp(A_log) softplus(x_t w_alpha + dt_bias), per head. ``c`` is 1,
or 2 with ``negative_eigenvalues`` (Grazzi et al. 2025): the transition I - c beta k k^T has
eigenvalue 1 - c beta along k (in [0, 1], or [-1, 1]) and 1 elsewhere. The papers' short
convolutions on q, k, v and their output norm are left out; the residual block's output map
follows the cell.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells.base import Array, Carry
from seqlab.cells.matrix import MatrixCell, l2_normalize
from seqlab.config import DEFAULTS


class DeltaNetCell(MatrixCell):
    gated: bool = False
    #: ``backend=parallel``: the chunked form (seqlab.recurrence.chunked)
    PROVIDES = MatrixCell.PROVIDES | {"parallel"}

    def projection_width(self) -> int:
        return 3 * self.hidden_size + (2 if self.gated else 1) * self.num_heads

    def init_recurrence(
        self, rngs: nnx.Rngs, *, negative_eigenvalues: bool = DEFAULTS.model.negative_eigenvalues
    ) -> None:
        self.negative_eigenvalues = bool(negative_eigenvalues)
        if self.gated:  # Mamba-2's decay: A in [1, 16], dt log-uniform in [0.001, 0.1]
            k1, k2 = jax.random.split(rngs.params())
            n, dt = self.num_heads, self.param_dtype
            a = jax.random.uniform(k1, (n,), dt, 1.0, 16.0)
            step = jnp.exp(jax.random.uniform(k2, (n,), dt, jnp.log(1e-3), jnp.log(0.1)))
            self.a_log = nnx.Param(jnp.log(a))
            self.dt_bias = nnx.Param(step + jnp.log(-jnp.expm1(-step)))  # softplus^-1

    def recurrent_params(self) -> dict[str, Array]:
        return {"a_log": self.a_log[...], "dt_bias": self.dt_bias[...]} if self.gated else {}

    def inputs(self, params: dict[str, Array], xp: Array) -> tuple[Array, ...]:
        """(q, k, v (..., heads, d), beta, alpha (..., heads)) from projected inputs."""
        h, n = self.hidden_size, self.num_heads
        q = l2_normalize(self.heads(jax.nn.silu(xp[..., :h])))
        k = l2_normalize(self.heads(jax.nn.silu(xp[..., h : 2 * h])))
        v = self.heads(jax.nn.silu(xp[..., 2 * h : 3 * h]))
        beta = jax.nn.sigmoid(xp[..., 3 * h : 3 * h + n])
        if self.gated:
            g = jax.nn.softplus(xp[..., 3 * h + n :] + params["dt_bias"])
            alpha = jnp.exp(-jnp.exp(params["a_log"]) * g)
        else:
            alpha = jnp.ones_like(beta)
        return q * self.head_size**-0.5, k, v, beta, alpha

    def step(self, params: dict[str, Array], carry: Carry, xp: Array) -> tuple[Carry, Array]:
        q, k, v, beta, alpha = self.inputs(params, xp)
        c = 2.0 if self.negative_eigenvalues else 1.0
        sk = jnp.einsum("bnvk,bnk->bnv", carry, k)  # S_{t-1} k_t
        s = alpha[..., None, None] * (
            carry - c * beta[..., None, None] * sk[..., None] * k[..., None, :]
        )
        s = s + beta[..., None, None] * v[..., None] * k[..., None, :]
        return s, self.read(s, q)

    def read(self, s: Array, q: Array) -> Array:
        o = jnp.einsum("bnvk,bnk->bnv", s, q)
        return o.reshape(o.shape[0], -1)

    def output(self, params: dict[str, Array], carry: Carry, xp: Array) -> Array:
        return self.read(carry, self.inputs(params, xp)[0])


class GatedDeltaNetCell(DeltaNetCell):
    gated = True
