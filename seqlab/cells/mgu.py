"""Minimal gated unit (Zhou et al. 2016): a GRU with one gate doing both jobs.

    f = sigmoid(x W_xf + h W_hf + b_f)
    n = tanh(x W_xn + b_n + (f * h) W_hn)
    h' = (1 - f) * h + f * n

Here as the worked example of adding a cell: one small class plus one registry line.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqlab.cells.base import Array, Carry, Cell, recurrent_matmul


class MGUCell(Cell):
    num_gates = 2

    def step(self, params: dict[str, Array], carry: Carry, xp: Array) -> tuple[Carry, Array]:
        h, w_h, H = carry, params["w_h"], self.hidden_size
        x_f, x_n = jnp.split(xp, 2, axis=-1)
        f = jax.nn.sigmoid(x_f + recurrent_matmul(h, w_h[:, :H]))
        n = jnp.tanh(x_n + recurrent_matmul(f * h, w_h[:, H:]))
        h = (1.0 - f) * h + f * n
        return h, h
