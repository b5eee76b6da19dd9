"""LSTM with all four gates (order i, f, g, o as in PyTorch/cuDNN/Flax) from one fused matmul.

i, f, g, o = split(x W_x + h W_h + b)
c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
h' = sigmoid(o) * tanh(c')
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from seqlab.cells.base import Array, Carry, Cell, recurrent_matmul


class LSTMCell(Cell):
    num_gates = 4

    def adjust_bias(self, b: Array, forget_bias: float) -> Array:
        h = self.hidden_size
        return b.at[h : 2 * h].set(forget_bias)

    def step(self, params: dict[str, Array], carry: Carry, xp: Array) -> tuple[Carry, Array]:
        c, h = carry
        z = xp + recurrent_matmul(h, params["w_h"])
        i, f, g, o = jnp.split(z, 4, axis=-1)
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (c, h), h

    def initial_carry(self, batch_size: int) -> Carry:
        zeros = jnp.zeros((batch_size, self.hidden_size), self.param_dtype)
        return (zeros, zeros)

    @staticmethod
    def hidden(carry: Carry) -> Array:
        return carry[1]

    @staticmethod
    def set_hidden(carry: Carry, h: Array) -> Carry:
        return (carry[0], h)
