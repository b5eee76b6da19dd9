"""Jit-compiled text generation from a ``LanguageModel``: priming, temperature, top-k, greedy.

The whole generation is one ``lax.scan`` compiled once per (model, length, top_k); the
temperature is a traced value, so sweeping it does not recompile. Sampling is a pure function
of the key: the same seed gives the same text.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

Array = jax.Array


def sample_logits(
    logits: Array, key: Array, temperature: Array | float, top_k: int = 0, greedy: bool = False
) -> Array:
    """Picks one token per row. ``temperature <= 0`` or ``greedy`` means argmax."""
    if top_k > 0:  # exactly k candidates (ties broken by index, as lax.top_k does)
        _, idx = jax.lax.top_k(logits, top_k)
        keep = jnp.any(jnp.arange(logits.shape[-1]) == idx[..., None], axis=-2)
        logits = jnp.where(keep, logits, -jnp.inf)
    best = jnp.argmax(logits, axis=-1)
    if greedy:
        return best
    t = jnp.asarray(temperature, logits.dtype)
    drawn = jax.random.categorical(key, logits / jnp.maximum(t, 1e-8), axis=-1)
    return jnp.where(t <= 0, best, drawn)


@partial(jax.jit, static_argnames=("graphdef", "length", "top_k", "greedy"))
def _generate(
    graphdef,
    state,
    prime: Array,
    key: Array,
    temperature: Array,
    *,
    length: int,
    top_k: int,
    greedy: bool,
) -> Array:
    model = nnx.merge(graphdef, state)
    logits, aux = model(prime)

    def body(c, t):
        carry, last = c
        tok = sample_logits(last, jax.random.fold_in(key, t), temperature, top_k, greedy)
        carry, logits = model.step(carry, tok)
        return (carry, logits), tok

    _, toks = jax.lax.scan(body, (aux["final_carry"], logits[:, -1]), jnp.arange(length))
    return toks.T


def generate(
    model: Any,
    prime: Array,
    length: int,
    *,
    key: Array,
    temperature: float = 1.0,
    top_k: int = 0,
    greedy: bool = False,
    num_samples: int = 1,
) -> Array:
    """Continues ``prime`` (P,) or (N, P) token ids by ``length`` tokens: returns (N, length).

    The prime is read in one scan, then each new token is sampled from the last logits and
    fed back. ``num_samples`` repeats a 1-D prime into that many independent samples.
    """
    prime = jnp.asarray(prime, jnp.int32)
    if prime.ndim == 1:
        prime = jnp.broadcast_to(prime, (num_samples, prime.shape[0]))
    elif num_samples != 1:
        raise ValueError(
            "num_samples repeats a 1-D prime; a 2-D prime already has one row per sample"
        )
    if prime.shape[-1] < 1:
        raise ValueError("generate needs a prime of at least one token")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    graphdef, state = nnx.split(model)
    return _generate(
        graphdef,
        state,
        prime,
        key,
        jnp.asarray(temperature, jnp.float32),
        length=int(length),
        top_k=int(top_k),
        greedy=bool(greedy),
    )
