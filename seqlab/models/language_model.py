"""Many-to-many: a character/token language model (per-step logits, state carried across calls)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells import Carry
from seqlab.config import DEFAULTS
from seqlab.models.generate import generate
from seqlab.models.inputs import InputEncoder
from seqlab.recurrence import RNNStack
from seqlab.recurrence.layers import OUTPUT_SITE, dropout_key

Array = jax.Array
D = DEFAULTS.model


class LanguageModel(nnx.Module):
    """tokens (B, T) -> logits (B, T, V); aux: ``final_carry``, ``hidden_states``.

    Passing ``carry`` (the previous call's ``aux["final_carry"]``) continues the sequence:
    char-rnn's stateful truncated BPTT, and the state that ``seqlab.models.generate`` decodes from.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        input_kind: str = D.input_kind,
        embed_dim: int = D.embed_dim,
        embed_init: str = D.embed_init,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
        **stack: Any,
    ):
        """``stack``: the recurrent stack's options (``RNNStack.build``: cell, hidden_size,
        num_layers, dropout, unroll, remat, backend, cell_kwargs,
        input_fan_in)."""
        self.vocab_size = vocab_size
        self.inputs = InputEncoder(
            input_kind,
            vocab_size=vocab_size,
            embed_dim=embed_dim,
            embed_init=embed_init,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        self.rnn = RNNStack.build(
            self.inputs.output_size, param_dtype=param_dtype, rngs=rngs, **stack
        )
        self.dropout = nnx.Dropout(self.rnn.dropout_rate)
        self.dropout_rate = self.rnn.dropout_rate
        self.head = nnx.Linear(self.rnn.hidden_size, vocab_size, param_dtype=param_dtype, rngs=rngs)

    def initial_carry(self, batch_size: int) -> list[Carry]:
        return self.rnn.initial_carry(batch_size)

    def __call__(
        self,
        tokens: Array,
        *,
        carry: list[Carry] | None = None,
        lengths: Array | None = None,
        train: bool = False,
        rng: Array | None = None,
    ) -> tuple[Array, dict[str, Any]]:
        x = self.inputs(tokens, ids_ok=True)
        y, aux = self.rnn(x, lengths=lengths, initial_carry=carry, train=train, rng=rng)
        if train and self.dropout_rate > 0:
            y = self.dropout(y, deterministic=False, rngs=dropout_key(rng, OUTPUT_SITE))
        return self.head(y), aux

    def step(self, carry: list[Carry], token: Array) -> tuple[list[Carry], Array]:
        """One token (B,) -> (carry, logits (B, V)); the decoding step ``generate`` scans."""
        carry, h = self.rnn.step(carry, self.inputs(token, ids_ok=True))
        return carry, self.head(h)

    def generate(self, prime: Array, length: int, **kwargs: Any) -> Array:
        """``seqlab.models.generate.generate(self, prime, length, **kwargs)``: lets code that
        must not import the library (a task's text samples) sample from the model it gets."""
        return generate(self, prime, length, **kwargs)
