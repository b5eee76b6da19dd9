"""Cells whose state is a matrix per head (mLSTM, DeltaNet, Gated DeltaNet): the base class.

The input projection is hoisted like every cell's (``project``: x W_x + b for all steps at
once); ``step`` updates the (B, heads, d_v, d_k) state from one projected step and reads the
head outputs out, concatenated to ``hidden_size = heads * d_v`` units. The recurrence has no
recurrent kernel (the state enters only through the update), so it runs on the autodiff scan
engine everywhere. The probe's hidden view of the state is the flattened matrix.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells.base import Array, Carry, Cell
from seqlab.config import DEFAULTS


def l2_normalize(x: Array, eps: float = 1e-6) -> Array:
    """x / ||x|| over the last axis (the gradient stays finite at x = 0)."""
    return x * jax.lax.rsqrt(jnp.sum(x * x, axis=-1, keepdims=True) + eps)


class MatrixCell(Cell):
    """Base class: subclasses give ``projection_width`` and the step math."""

    DEFAULT_BLOCK = "residual"

    def init_params(
        self, rngs: nnx.Rngs, *, num_heads: int = DEFAULTS.model.num_heads, **options: Any
    ) -> None:
        if self.init != "default":
            raise ValueError(
                f"{type(self).__name__} has its own initialization; got init={self.init!r}"
            )
        if num_heads < 1 or self.hidden_size % num_heads:
            raise ValueError(
                f"{type(self).__name__} needs hidden_size ({self.hidden_size}) divisible by "
                f"num_heads ({num_heads}); set model.num_heads to a divisor of it"
            )
        self.num_heads = num_heads
        self.head_size = self.hidden_size // num_heads
        width = self.projection_width()
        lecun = nnx.initializers.lecun_normal()
        self.w_x = nnx.Param(lecun(rngs.params(), (self.in_features, width), self.param_dtype))
        self.b = nnx.Param(self.initial_bias(jnp.zeros((width,), self.param_dtype)))
        self.init_recurrence(rngs, **options)

    # -- hooks ----------------------------------------------------------------------------
    def projection_width(self) -> int:
        raise NotImplementedError

    def initial_bias(self, b: Array) -> Array:
        return b

    def init_recurrence(self, rngs: nnx.Rngs, **options: Any) -> None:
        if options:
            raise ValueError(f"{type(self).__name__} takes no options {sorted(options)}")

    def recurrent_params(self) -> dict[str, Array]:
        return {}

    def heads(self, x: Array) -> Array:
        """(..., heads * d) -> (..., heads, d)."""
        return x.reshape(*x.shape[:-1], self.num_heads, -1)

    # -- state ----------------------------------------------------------------------------
    def initial_carry(self, batch_size: int) -> Carry:
        d = self.head_size
        return jnp.zeros((batch_size, self.num_heads, d, d), self.param_dtype)

    @staticmethod
    def hidden(carry: Carry) -> Array:
        s = carry[0] if isinstance(carry, tuple) else carry
        return s.reshape(s.shape[0], -1)

    @staticmethod
    def set_hidden(carry: Carry, h: Array) -> Carry:
        if isinstance(carry, tuple):
            return (h.reshape(carry[0].shape), *carry[1:])
        return h.reshape(carry.shape)
