"""GRU in both conventions (gate order r, z, n; h' = (1 - z) * n + z * h as in PyTorch/Flax).

``reset_after=True`` (cuDNN, PyTorch, Flax): the reset gate multiplies the recurrent matmul,
    n = tanh(x W_xn + b_n + r * (h W_hn + b_hn))        -- one fused recurrent matmul
``reset_after=False`` (Cho et al. 2014, char-rnn): it multiplies h before the matmul,
    n = tanh(x W_xn + b_n + (r * h) W_hn)               -- a second, dependent matmul

char-rnn writes the update as z * n + (1 - z) * h; that is the same family with z relabeled
1 - z, so ported char-rnn GRU weights need their update-gate block negated.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells.base import Array, Carry, Cell, recurrent_matmul


class GRUCell(Cell):
    num_gates = 3

    def __init__(
        self,
        in_features: int,
        hidden_size: int,
        *,
        reset_after: bool = True,
        rngs: nnx.Rngs,
        **kwargs: Any,
    ):
        self.reset_after = reset_after
        super().__init__(in_features, hidden_size, rngs=rngs, **kwargs)
        if reset_after:
            b_hn = jnp.zeros((hidden_size,), self.param_dtype)
            if self.init == "char_rnn":
                b_hn = jax.random.uniform(rngs.params(), b_hn.shape, b_hn.dtype, -0.08, 0.08)
            self.b_hn = nnx.Param(b_hn)

    def recurrent_params(self) -> dict[str, Array]:
        p = {"w_h": self.w_h[...]}
        if self.reset_after:
            p["b_hn"] = self.b_hn[...]
        return p

    def step(self, params: dict[str, Array], carry: Carry, xp: Array) -> tuple[Carry, Array]:
        h, w_h, H = carry, params["w_h"], self.hidden_size
        x_r, x_z, x_n = jnp.split(xp, 3, axis=-1)
        if self.reset_after:
            h_r, h_z, h_n = jnp.split(recurrent_matmul(h, w_h), 3, axis=-1)
            r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + r * (h_n + params["b_hn"]))
        else:
            h_r, h_z = jnp.split(recurrent_matmul(h, w_h[:, : 2 * H]), 2, axis=-1)
            r, z = jax.nn.sigmoid(x_r + h_r), jax.nn.sigmoid(x_z + h_z)
            n = jnp.tanh(x_n + recurrent_matmul(r * h, w_h[:, 2 * H :]))
        h = (1.0 - z) * n + z * h
        return h, h
