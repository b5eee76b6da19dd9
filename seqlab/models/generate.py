"""Jit-compiled text generation from a ``LanguageModel``: priming, temperature, top-k, greedy.

The whole generation is one ``lax.scan`` compiled once per (model, length, top_k); the
temperature is a traced value, so sweeping it does not recompile. Sampling is a pure function
of the key: the same seed gives the same text. Token ``t`` is drawn with ``fold_in(key, t)``,
so ``generate_chunks`` (long generations, a few thousand tokens per call, for progress and
bounded device memory) gives exactly the tokens of one ``generate`` call.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
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


def _sample_steps(model, carry, last, key, start, temperature, length, top_k, greedy):
    """Tokens ``start .. start + length - 1``: token t from the last logits with
    ``fold_in(key, t)``, fed back through ``model.step``."""

    def body(c, t):
        carry, last = c
        tok = sample_logits(last, jax.random.fold_in(key, t), temperature, top_k, greedy)
        carry, logits = model.step(carry, tok)
        return (carry, logits), tok

    (carry, last), toks = jax.lax.scan(body, (carry, last), start + jnp.arange(length))
    return toks.T, carry, last


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
) -> tuple[Array, Any, Array]:
    """Reads the prime, then samples tokens 0 .. length-1: (tokens, carry, last logits)."""
    model = nnx.merge(graphdef, state)
    logits, aux = model(prime)
    return _sample_steps(
        model, aux["final_carry"], logits[:, -1], key, 0, temperature, length, top_k, greedy
    )


@partial(jax.jit, static_argnames=("graphdef", "length", "top_k", "greedy"))
def _continue(
    graphdef,
    state,
    carry: Any,
    last: Array,
    key: Array,
    start: Array,
    temperature: Array,
    *,
    length: int,
    top_k: int,
    greedy: bool,
) -> tuple[Array, Any, Array]:
    """Tokens ``start .. start + length - 1`` from where the previous chunk stopped."""
    model = nnx.merge(graphdef, state)
    return _sample_steps(model, carry, last, key, start, temperature, length, top_k, greedy)


def _prepare(prime: Array, length: int, num_samples: int) -> Array:
    """The (N, P) int32 prime, with the arguments checked."""
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
    return prime


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
    prime = _prepare(prime, length, num_samples)
    graphdef, state = nnx.split(model)
    toks, _, _ = _generate(
        graphdef,
        state,
        prime,
        key,
        jnp.asarray(temperature, jnp.float32),
        length=int(length),
        top_k=int(top_k),
        greedy=bool(greedy),
    )
    return toks


def generate_chunks(
    model: Any,
    prime: Array,
    length: int,
    *,
    key: Array,
    temperature: float = 1.0,
    top_k: int = 0,
    greedy: bool = False,
    num_samples: int = 1,
    chunk_size: int = 4096,
) -> Iterator[Array]:
    """``generate`` a chunk at a time: yields (N, c) token arrays whose concatenation is
    exactly ``generate(model, prime, length, ...)`` for the same key, so a caller can show
    progress and stream text while device memory holds one chunk.

    The ``n = ceil(length / chunk_size)`` chunks have one size (so one compilation serves
    them all); the last may run up to ``n - 1`` steps past ``length``, which are dropped.
    """
    prime = _prepare(prime, length, num_samples)
    if chunk_size < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    graphdef, state = nnx.split(model)
    n = math.ceil(length / chunk_size)
    size = math.ceil(length / n)
    options = {"length": size, "top_k": int(top_k), "greedy": bool(greedy)}
    temperature = jnp.asarray(temperature, jnp.float32)
    toks, carry, last = _generate(graphdef, state, prime, key, temperature, **options)
    for i in range(n):
        if i:
            start = jnp.asarray(i * size, jnp.int32)
            toks, carry, last = _continue(
                graphdef, state, carry, last, key, start, temperature, **options
            )
        yield toks[:, : min(size, length - i * size)]
