"""Additive (Bahdanau) attention: score(s, k_j) = v . tanh(W_q s + W_k k_j), masked softmax."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


class AdditiveAttention(nnx.Module):
    def __init__(
        self,
        query_size: int,
        key_size: int,
        attention_size: int,
        *,
        param_dtype: Any = jnp.float32,
        rngs: nnx.Rngs,
    ):
        self.w_q = nnx.Linear(
            query_size, attention_size, use_bias=False, param_dtype=param_dtype, rngs=rngs
        )
        self.w_k = nnx.Linear(key_size, attention_size, param_dtype=param_dtype, rngs=rngs)
        self.v = nnx.Linear(attention_size, 1, use_bias=False, param_dtype=param_dtype, rngs=rngs)

    def project_keys(self, keys: Array) -> Array:
        """W_k k_j for every source position, once per sequence (hoisted out of decoding)."""
        return self.w_k(keys)

    def __call__(
        self, query: Array, keys: Array, projected_keys: Array, mask: Array
    ) -> tuple[Array, Array]:
        """query (B, Q), keys (B, S, K), mask (B, S) -> context (B, K), weights (B, S)."""
        scores = self.v(jnp.tanh(projected_keys + self.w_q(query)[:, None, :]))[..., 0]
        scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
        weights = jax.nn.softmax(scores, axis=-1)
        return jnp.einsum("bs,bsk->bk", weights, keys), weights
