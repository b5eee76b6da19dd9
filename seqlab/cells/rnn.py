"""Elman RNN: h' = act(x W_x + h W_h + b); relu with the identity init is the IRNN."""

from __future__ import annotations

from functools import cache
from typing import Any

import jax.numpy as jnp

from seqlab.cells.base import Cell, get_activation, recurrent_matmul
from seqlab.cells.kernels import Kernels, no_res, wgrad_whole, whole


@cache
def rnn_kernels(activation: str) -> Kernels:
    """The kernels for one activation (cached: the fast engine compiles once per Kernels)."""
    act = get_activation(activation)

    def fwd(q, h, xp):
        z = xp + recurrent_matmul(h, q["w"])
        h = act(z)
        if activation == "tanh":
            k = 1.0 - h * h
        elif activation == "relu":
            k = (z > 0).astype(z.dtype)
        else:
            k = jnp.ones_like(z)
        return h, h, (k,)

    def bwd(q, res, prev, cur, dh):
        dz = dh * res[0]
        return recurrent_matmul(dz, q["t"]), dz

    return Kernels(whole, fwd, bwd, no_res, wgrad_whole)


class RNNCell(Cell):
    num_gates = 1
    default_activation = "tanh"

    def __init__(
        self, in_features: int, hidden_size: int, *, activation: str | None = None, **kwargs: Any
    ):
        activation = activation or self.default_activation
        get_activation(activation)  # an unknown name fails here, not inside a traced scan
        self.activation = activation
        super().__init__(in_features, hidden_size, **kwargs)

    def kernels(self) -> Kernels:
        return rnn_kernels(self.activation)


class IRNNCell(RNNCell):
    """ReLU RNN with identity recurrent init (Le et al. 2015). These are the cell's own
    defaults (not a preset applied by callers): ``init="default"`` means the identity init."""

    default_activation = "relu"
    default_init = "irnn"
