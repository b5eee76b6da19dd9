"""LSTM with all four gates (order i, f, g, o as in PyTorch/cuDNN/Flax) from one fused matmul.

i, f, g, o = split(x W_x + h W_h + b)
c' = sigmoid(f) * c + sigmoid(i) * tanh(g)
h' = sigmoid(o) * tanh(c')

The forward kernel applies ONE tanh to all 4H pre-activations (sigmoid(x) = (1 + tanh(x/2))/2,
the sigmoid rows scaled by 1/2 first): XLA:CPU makes that one fused pass instead of one per
gate. The backward propagates (dc, dh) only; the weight gradient is one matmul afterwards.
"""

from __future__ import annotations

import jax.numpy as jnp
from flax import nnx

from seqlab.cells.base import Array, Carry, Cell, chrono_bias, recurrent_matmul
from seqlab.cells.kernels import Kernels, Params, cat, no_res, split, wgrad_whole, whole
from seqlab.cells.kernels import sigmoid_via_tanh as sig
from seqlab.config import DEFAULTS


def _prep(p: Params) -> Params:
    """W, W^T and the per-column tanh argument scale: 1/2 for the sigmoid gates i, f, o."""
    w = p["w_h"]
    half = jnp.full((w.shape[0],), 0.5, w.dtype)
    return {**whole(p), "scale": jnp.concatenate([half, half, 2 * half, half])}


def _fwd(q: Params, carry: Carry, xp: Array):
    c, h = carry
    t = jnp.tanh((xp + recurrent_matmul(h, q["w"])) * q["scale"])
    i, f, g, o = split(t, 4)
    i, f, o = sig(i), sig(f), sig(o)
    c = f * c + i * g
    h = o * jnp.tanh(c)
    return (c, h), h, (t,)


def _bwd(q: Params, res, prev: Carry, cur: Carry, d_new: Carry):
    i, f, g, o = split(res[0], 4)
    i, f, o = sig(i), sig(f), sig(o)
    tc = jnp.tanh(cur[0])  # c after the step
    dc, dh = d_new
    dc = dc + dh * o * (1.0 - tc * tc)
    dz = cat(
        dc * g * i * (1.0 - i),
        dc * prev[0] * f * (1.0 - f),
        dc * i * (1.0 - g * g),
        dh * tc * o * (1.0 - o),
    )
    return (dc * f, recurrent_matmul(dz, q["t"])), dz


KERNELS = Kernels(_prep, _fwd, _bwd, no_res, wgrad_whole)
D = DEFAULTS.model


class LSTMCell(Cell):
    num_gates = 4

    def adjust_bias(
        self,
        b: Array,
        rngs: nnx.Rngs,
        *,
        forget_bias: float = D.forget_bias,
        chrono_max_len: int = D.chrono_max_len,
    ) -> Array:
        """Forget-gate bias ``forget_bias``; with ``init="chrono"`` (Tallec and Ollivier
        2018) b_f ~ log(U[1, T_max - 1]) and b_i = -b_f instead."""
        h = self.hidden_size
        if self.init != "chrono":
            return b.at[h : 2 * h].set(forget_bias)
        b_f = chrono_bias(rngs, h, chrono_max_len, b.dtype)
        return b.at[h : 2 * h].set(b_f).at[:h].set(-b_f)

    def kernels(self) -> Kernels:
        return KERNELS

    def initial_carry(self, batch_size: int) -> Carry:
        zeros = jnp.zeros((batch_size, self.hidden_size), self.param_dtype)
        return (zeros, zeros)

    @staticmethod
    def hidden(carry: Carry) -> Array:
        return carry[1]

    @staticmethod
    def set_hidden(carry: Carry, h: Array) -> Carry:
        return (carry[0], h)
