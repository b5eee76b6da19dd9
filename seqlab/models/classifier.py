"""Many-to-one: a sequence classifier/regressor reading out the last valid state or a pooling."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.config import DEFAULTS
from seqlab.errors import ConfigError
from seqlab.models.inputs import InputEncoder
from seqlab.recurrence import RNNStack, length_mask

Array = jax.Array
D = DEFAULTS.model
READOUTS = ("last", "mean", "max")


class SequenceClassifier(nnx.Module):
    """inputs (B, T[, F]) -> (B, num_outputs); ``num_outputs=1`` with an MSE loss is regression.

    ``readout``: ``last`` uses the top layer's carry, i.e. the state at each example's last
    valid step (both directions' final states when bidirectional); ``mean`` / ``max`` pool
    the top layer's outputs over valid steps only. aux adds ``features`` (the readout).
    """

    def __init__(
        self,
        num_outputs: int,
        *,
        input_kind: str = "features",
        vocab_size: int = 0,
        embed_dim: int = 0,
        num_features: int = 0,
        embed_init: str = "default",
        readout: str = D.readout,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
        **stack: Any,
    ):
        """``stack``: the recurrent stack's options (``RNNStack.build``: cell, hidden_size,
        num_layers, bidirectional, dropout, unroll, remat, backend, cell_kwargs,
        input_fan_in)."""
        if not isinstance(num_outputs, numbers.Integral) or num_outputs < 1:
            raise ConfigError(f"num_outputs must be an integer >= 1, got {num_outputs!r}")
        if readout not in READOUTS:
            raise ConfigError(f"unknown readout {readout!r}; choose one of {READOUTS}")
        self.readout = readout
        self.inputs = InputEncoder(
            input_kind,
            vocab_size=vocab_size,
            embed_dim=embed_dim,
            num_features=num_features,
            embed_init=embed_init,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.rnn = RNNStack.build(
            self.inputs.output_size, param_dtype=param_dtype, rngs=rngs, **stack
        )
        directions = 2 if self.rnn.bidirectional else 1
        feat = self.rnn.hidden_size * directions if readout == "last" else self.rnn.output_size
        self.head = nnx.Linear(feat, num_outputs, param_dtype=param_dtype, rngs=rngs)

    def __call__(
        self,
        x: Array,
        *,
        lengths: Array | None = None,
        train: bool = False,
        rng: Array | None = None,
    ) -> tuple[Array, dict[str, Any]]:
        y, aux = self.rnn(self.inputs(x, ids_ok=True), lengths=lengths, train=train, rng=rng)
        if self.readout == "last" and self.rnn.bidirectional:  # both final states
            feats = self.rnn.top_hidden(aux["final_carry"])
        elif self.readout == "last":
            feats = self.rnn.last_output(y, lengths)
        else:
            lens = jnp.full((y.shape[0],), y.shape[1]) if lengths is None else lengths
            m = length_mask(lens, y.shape[1])[..., None]
            if self.readout == "mean":
                feats = jnp.sum(jnp.where(m, y, 0), 1) / jnp.maximum(lens, 1)[:, None]
            else:
                feats = jnp.max(jnp.where(m, y, -jnp.inf), axis=1)
        aux["features"] = feats
        return self.head(feats), aux
