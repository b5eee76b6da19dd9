"""Elman RNN: h' = act(x W_x + h W_h + b); relu with init='irnn' is the IRNN."""

from __future__ import annotations

from typing import Any

from flax import nnx

from seqlab.cells.base import Array, Carry, Cell, get_activation, recurrent_matmul


class RNNCell(Cell):
    num_gates = 1

    def __init__(
        self, in_features: int, hidden_size: int, *, activation: str = "tanh", **kwargs: Any
    ):
        get_activation(activation)  # an unknown name fails here, not inside a traced scan
        self.activation = activation
        super().__init__(in_features, hidden_size, **kwargs)

    def step(self, params: dict[str, Array], carry: Carry, xp: Array) -> tuple[Carry, Array]:
        h = get_activation(self.activation)(xp + recurrent_matmul(carry, params["w_h"]))
        return h, h


class IRNNCell(RNNCell):
    """ReLU RNN with identity recurrent init (Le et al. 2015)."""

    def __init__(self, in_features: int, hidden_size: int, *, rngs: nnx.Rngs, **kwargs: Any):
        kwargs.setdefault("activation", "relu")
        kwargs.setdefault("init", "irnn")
        super().__init__(in_features, hidden_size, rngs=rngs, **kwargs)
