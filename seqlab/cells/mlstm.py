"""mLSTM (Beck et al. 2024, "xLSTM", section 2.3): per head a matrix memory C (d_v x d_k)
and a normalizer n (d_k), with exponential input and sigmoid forget gates, stabilized:

    q_t, k_t / sqrt(d_k), v_t, i~_t, f~_t, o~_t  = blocks of x_t W_x + b   (i~, f~ per head)
    m_t = max(log f_t + m_{t-1}, i~_t),   log f_t = log sigmoid(f~_t)
    i'_t = exp(i~_t - m_t),   f'_t = exp(log f_t + m_{t-1} - m_t)
    C_t = f'_t C_{t-1} + i'_t v_t k_t^T,   n_t = f'_t n_{t-1} + i'_t k_t
    h_t = sigmoid(o~_t) * C_t q_t / max(|n_t^T q_t|, exp(-m_t))

(the stabilized form of the paper's max(|n^T q|, 1)). Linear in C, but the forget gate is
kept in log space, so it has no negative-eigenvalue variant. Forget biases start in [3, 6]
across heads. The carry is (C, n, m); its hidden view is C.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqlab.cells.base import Array, Carry
from seqlab.cells.matrix import MatrixCell


class MLSTMCell(MatrixCell):
    def projection_width(self) -> int:
        return 4 * self.hidden_size + 2 * self.num_heads  # q, k, v, o, i~, f~

    def initial_bias(self, b: Array) -> Array:
        h, n = self.hidden_size, self.num_heads
        return b.at[4 * h + n :].set(jnp.linspace(3.0, 6.0, n, dtype=b.dtype))

    def _split(self, xp: Array) -> tuple[Array, ...]:
        h, n = self.hidden_size, self.num_heads
        q, k, v, o = (self.heads(xp[..., j * h : (j + 1) * h]) for j in range(4))
        return q, k * self.head_size**-0.5, v, o, xp[..., 4 * h : 4 * h + n], xp[..., 4 * h + n :]

    def step(self, params: dict[str, Array], carry: Carry, xp: Array) -> tuple[Carry, Array]:
        C, n, m = carry
        _, k, v, _, i, f = self._split(xp)
        log_f = jax.nn.log_sigmoid(f)
        m_new = jnp.maximum(log_f + m, i)
        i_s, f_s = jnp.exp(i - m_new), jnp.exp(log_f + m - m_new)
        C = f_s[..., None, None] * C + i_s[..., None, None] * v[..., :, None] * k[..., None, :]
        n = f_s[..., None] * n + i_s[..., None] * k
        new = (C, n, m_new)
        return new, self.output(params, new, xp)

    def output(self, params: dict[str, Array], carry: Carry, xp: Array) -> Array:
        C, n, m = carry
        q, *_, o, _, _ = self._split(xp)
        num = jnp.einsum("...vk,...k->...v", C, q)
        den = jnp.maximum(jnp.abs(jnp.sum(n * q, -1)), jnp.exp(-m))[..., None]
        h = jax.nn.sigmoid(o) * num / den
        return h.reshape(*h.shape[:-2], -1)

    def initial_carry(self, batch_size: int) -> Carry:
        heads, d, dt = self.num_heads, self.head_size, self.param_dtype
        return (
            jnp.zeros((batch_size, heads, d, d), dt),
            jnp.zeros((batch_size, heads, d), dt),
            jnp.zeros((batch_size, heads), dt),
        )
