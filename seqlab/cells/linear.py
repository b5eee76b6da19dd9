"""Diagonal linear recurrences: h_t = a_t * h_{t-1} + b_t, with (a_t, b_t) functions of the
input x_t alone (never of h), so the whole sequence can be computed by a parallel
(associative) scan as well as step by step.

A ``LinearCell`` states its math once, as ``coefficients(params, xp) -> (a, b)`` over any
leading axes (plus ``output`` when the state is read out, as the LRU's is); ``step`` (decoding,
the sequential engine) and the parallel engine (``seqlab.recurrence.parallel``) both use it.
Cells whose b_t and a_t are positive (minGRU, minLSTM) also give ``log_coefficients``, so the
parallel engine can combine in log space (Feng et al. 2024, section 3.3).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells.base import Array, Carry, Cell


class LinearCell(Cell):
    """Base class: subclasses set ``num_gates`` (blocks of the input projection) and write
    ``coefficients``; they may add recurrence parameters in ``init_recurrence``."""

    #: a_t > 0 and b_t > 0 always: ``log_coefficients`` exists and the parallel engine may
    #: combine in log space
    log_space: bool = False
    PROVIDES = frozenset({"sequence", "step", "state", "parallel"})
    DEFAULT_BLOCK = "residual"

    def init_params(self, rngs: nnx.Rngs, **options: Any) -> None:
        """The input projection (LeCun normal, zero bias) and the recurrence's own
        parameters; no recurrent kernel (a_t does not depend on h)."""
        if self.init != "default":
            raise ValueError(
                f"{type(self).__name__} has its own initialization; got init={self.init!r}"
            )
        width = self.projection_width()
        lecun = nnx.initializers.lecun_normal()
        self.w_x = nnx.Param(lecun(rngs.params(), (self.in_features, width), self.param_dtype))
        self.b = nnx.Param(jnp.zeros((width,), self.param_dtype))
        self.init_recurrence(rngs, **options)

    def projection_width(self) -> int:
        return self.num_gates * self.hidden_size

    def init_recurrence(self, rngs: nnx.Rngs, **options: Any) -> None:
        """Creates the recurrence's own parameters (none by default)."""
        if options:
            raise ValueError(f"{type(self).__name__} takes no options {sorted(options)}")

    def recurrent_params(self) -> dict[str, Array]:
        return {}

    def coefficients(self, params: dict[str, Array], xp: Array) -> tuple[Array, Array]:
        """(a, b) for projected inputs ``xp`` (..., F): b is (..., N); a broadcasts to it."""
        raise NotImplementedError

    def log_coefficients(self, params: dict[str, Array], xp: Array) -> tuple[Array, Array]:
        """(log a, log b), for cells with ``log_space``."""
        raise NotImplementedError

    def step(self, params: dict[str, Array], carry: Carry, xp: Array) -> tuple[Carry, Array]:
        a, b = self.coefficients(params, xp)
        h = a * carry + b
        return h, self.output(params, h, xp)

    @staticmethod
    def set_hidden(carry: Carry, h: Array) -> Carry:
        return h


def g(x: Array) -> Array:
    """Feng et al.'s positive activation for the candidate state: x + 1/2 for x >= 0, else
    sigmoid(x) (continuous, and > 0, so the log-space form applies)."""
    return jnp.where(x >= 0, x + 0.5, jax.nn.sigmoid(x))


def log_g(x: Array) -> Array:
    return jnp.where(x >= 0, jnp.log(jax.nn.relu(x) + 0.5), -jax.nn.softplus(-x))
