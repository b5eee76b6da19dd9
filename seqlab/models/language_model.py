"""Many-to-many: a character/token language model (per-step logits, state carried across calls)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.cells import Carry
from seqlab.models.inputs import InputEncoder
from seqlab.recurrence import RNNStack

Array = jax.Array


class LanguageModel(nnx.Module):
    """tokens (B, T) -> logits (B, T, V); aux: ``final_carry``, ``hidden_states``.

    Passing ``carry`` (the previous call's ``aux["final_carry"]``) continues the sequence:
    char-rnn's stateful truncated BPTT, and the state that ``seqlab.sample`` decodes from.
    """

    def __init__(
        self,
        vocab_size: int,
        *,
        cell: str = "lstm",
        hidden_size: int = 128,
        num_layers: int = 1,
        input_kind: str = "onehot",
        embed_dim: int = 0,
        dropout: float = 0.0,
        unroll: int = 1,
        remat: bool = False,
        backend: str = "scan",
        cell_kwargs: dict[str, Any] | None = None,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.vocab_size = vocab_size
        self.inputs = InputEncoder(
            input_kind,
            vocab_size=vocab_size,
            embed_dim=embed_dim,
            param_dtype=param_dtype,
            rngs=rngs,
        )
        kw = {"param_dtype": param_dtype, **(cell_kwargs or {})}
        self.rnn = RNNStack(
            cell,
            self.inputs.output_size,
            hidden_size,
            num_layers,
            dropout=dropout,
            unroll=unroll,
            remat=remat,
            backend=backend,
            cell_kwargs=kw,
            rngs=rngs,
        )
        self.dropout = nnx.Dropout(dropout)
        self.dropout_rate = dropout
        self.head = nnx.Linear(hidden_size, vocab_size, param_dtype=param_dtype, rngs=rngs)

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
        h_perturb: list[Any] | None = None,
    ) -> tuple[Array, dict[str, Any]]:
        x = self.inputs(tokens, ids_ok=True)
        y, aux = self.rnn(
            x, lengths=lengths, initial_carry=carry, train=train, rng=rng, h_perturb=h_perturb
        )
        if train and self.dropout_rate > 0:
            y = self.dropout(y, deterministic=False, rngs=jax.random.fold_in(rng, 10_000))
        return self.head(y), aux

    def step(self, carry: list[Carry], token: Array) -> tuple[list[Carry], Array]:
        """One token (B,) -> (carry, logits (B, V)); the decoding step ``generate`` scans."""
        carry, h = self.rnn.step(carry, self.inputs(token, ids_ok=True))
        return carry, self.head(h)
