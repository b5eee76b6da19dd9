"""How a model reads its inputs: one-hot tokens, learned embeddings, or real-valued features."""

from __future__ import annotations

import numbers
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from seqlab.errors import ConfigError

Array = jax.Array
INPUT_KINDS = ("onehot", "embed", "features")
# the embedding table's init: Flax's (variance scaling, std 1/sqrt(vocab)) or N(0, 1), PyTorch's
# nn.Embedding default
EMBED_INITS = ("default", "normal")
TOKEN_INPUT_KINDS = ("onehot", "embed")  # what config.model.input_kind picks for token tasks


class InputEncoder(nnx.Module):
    """``onehot`` (char-rnn's choice), ``embed`` (learned table) or ``features`` (float inputs).

    For one-hot inputs the recurrent layer's hoisted projection ``onehot(x) @ w_x`` is itself
    the embedding lookup, so no separate table is kept.
    """

    def __init__(
        self,
        kind: str,
        *,
        vocab_size: int = 0,
        embed_dim: int = 0,
        num_features: int = 0,
        embed_init: str = "default",
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        if kind not in INPUT_KINDS:
            raise ConfigError(f"unknown input kind {kind!r}; choose one of {INPUT_KINDS}")
        if embed_init not in EMBED_INITS:
            raise ConfigError(f"unknown embed init {embed_init!r}; choose one of {EMBED_INITS}")
        self.kind = kind
        self.vocab_size = vocab_size
        self.param_dtype = param_dtype
        sizes = {"embed": (vocab_size, embed_dim), "onehot": (vocab_size,)}.get(
            kind, (num_features,)
        )
        if not all(isinstance(n, numbers.Integral) and n >= 1 for n in sizes):
            raise ConfigError(
                f"input kind {kind!r} needs a size >= 1 (vocab_size / embed_dim / num_features)"
                f"; got vocab_size={vocab_size!r}, embed_dim={embed_dim!r}, "
                f"num_features={num_features!r}"
            )
        if kind == "embed":
            init = {"normal": nnx.initializers.normal(1.0)}.get(embed_init)
            kw = {"embedding_init": init} if init is not None else {}
            self.embed = nnx.Embed(vocab_size, embed_dim, param_dtype=param_dtype, rngs=rngs, **kw)
            self.output_size = embed_dim
        elif kind == "onehot":
            self.output_size = vocab_size
        else:
            self.output_size = num_features

    def __call__(self, x: Array, *, ids_ok: bool = False) -> Array:
        """Encoded inputs (..., output_size). ``ids_ok``: the consumer is a recurrent layer's
        ``project``, which reads integer ids as one-hot rows, so one-hot inputs pass through
        as ids (no one-hot tensor is built)."""
        if self.kind == "embed":
            return self.embed(x)
        if self.kind == "onehot":
            if ids_ok:
                return x.astype(jnp.int32)
            return jax.nn.one_hot(x, self.vocab_size, dtype=self.param_dtype)
        return x.astype(self.param_dtype)
