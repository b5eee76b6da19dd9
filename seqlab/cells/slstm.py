"""sLSTM (Beck et al. 2024, "xLSTM", section 2.2): an LSTM with exponential input gates, a
normalizer state and a stabilizer, whose recurrent matrix is block-diagonal over heads:

    (z~, i~, f~, o~) = x_t W_x + b + h_{t-1} R      R = blockdiag(R_1, ..., R_heads)
    m_t = max(log f_t + m_{t-1}, i~)                 log f_t = log sigmoid(f~)
    i'_t = exp(i~ - m_t),  f'_t = exp(log f_t + m_{t-1} - m_t)
    c_t = f'_t c_{t-1} + i'_t tanh(z~),   n_t = f'_t n_{t-1} + i'_t,   h_t = sigmoid(o~) c_t / n_t

The stabilizer m rescales c and n by the same factor, so h is that of the unstabilized
exp(i~) gates exactly. The forget-gate bias starts in [3, 6] across units (long memory at
init, as the reference's), the recurrent blocks orthogonal. Autodiff scan engine only.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells.base import Array, Carry, Cell
from seqlab.config import DEFAULTS


class SLSTMCell(Cell):
    num_gates = 4

    def init_params(
        self, rngs: nnx.Rngs, *, num_heads: int = DEFAULTS.model.num_heads, **options: Any
    ) -> None:
        if options:
            raise ValueError(f"SLSTMCell takes no options {sorted(options)}")
        if self.init != "default":
            raise ValueError(f"SLSTMCell has its own initialization; got init={self.init!r}")
        h = self.hidden_size
        if num_heads < 1 or h % num_heads:
            raise ValueError(
                f"slstm needs hidden_size ({h}) divisible by num_heads ({num_heads}); set "
                "model.num_heads to a divisor of it"
            )
        self.num_heads, d = num_heads, h // num_heads
        kx, kh = jax.random.split(rngs.params())
        dt = self.param_dtype
        lecun = nnx.initializers.lecun_normal()
        self.w_x = nnx.Param(lecun(kx, (self.in_features, 4 * h), dt))  # blocks z, i, f, o
        ortho = nnx.initializers.orthogonal()
        keys = jax.random.split(kh, num_heads * 4)
        r = jnp.stack([ortho(k, (d, d), dt) for k in keys]).reshape(num_heads, 4, d, d)
        self.w_h = nnx.Param(r)
        self.b = nnx.Param(jnp.zeros((4 * h,), dt).at[2 * h : 3 * h].set(jnp.linspace(3, 6, h)))

    def recurrent_params(self) -> dict[str, Array]:
        return {"w_h": self.w_h[...]}

    def step(self, params: dict[str, Array], carry: Carry, xp: Array) -> tuple[Carry, Array]:
        c, n, m, h = carry
        B, H, heads = h.shape[0], self.hidden_size, self.num_heads
        hh = h.reshape(B, heads, H // heads)
        w = params["w_h"] if self.dtype is None else params["w_h"].astype(self.dtype)
        rec = jnp.einsum("bhd,hgde->bghe", hh.astype(w.dtype), w).reshape(B, 4 * H)
        z, i, f, o = jnp.split(xp + rec.astype(xp.dtype), 4, axis=-1)
        log_f = jax.nn.log_sigmoid(f)
        m_new = jnp.maximum(log_f + m, i)
        i_s, f_s = jnp.exp(i - m_new), jnp.exp(log_f + m - m_new)
        c = f_s * c + i_s * jnp.tanh(z)
        n = f_s * n + i_s
        h = jax.nn.sigmoid(o) * c / n
        return (c, n, m_new, h), h

    def initial_carry(self, batch_size: int) -> Carry:
        zeros = jnp.zeros((batch_size, self.hidden_size), self.param_dtype)
        return (zeros, zeros, zeros, zeros)

    @staticmethod
    def hidden(carry: Carry) -> Array:
        return carry[3]

    @staticmethod
    def set_hidden(carry: Carry, h: Array) -> Carry:
        return (*carry[:3], h)
