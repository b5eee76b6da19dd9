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
import numpy as np
from flax import nnx

from seqlab.errors import UsageError

Array = jax.Array


# -- the checks `seqlab sample` and the library share (``flag="--"`` on the command line) -----
def check_temperature(temperature: Any, flag: str = "") -> float:
    """A finite number >= 0 (0 = greedy), else one UsageError line."""
    if isinstance(temperature, jax.core.Tracer):  # inside a caller's jit: not checkable
        return temperature
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = math.nan
    if not (math.isfinite(t) and t >= 0) or isinstance(temperature, bool):
        raise UsageError(
            f"{flag}temperature={temperature!r} must be a finite number >= 0 (0 = greedy)"
        )
    return t


def check_top_k(top_k: Any, vocab_size: int, flag: str = "") -> int:
    """An integer in [0, vocab_size] (0 = all), else one UsageError line."""
    if not isinstance(top_k, (int, np.integer)) or isinstance(top_k, bool) or top_k < 0:
        raise UsageError(f"{flag}top_k={top_k!r} must be an integer >= 0 (0 = all)")
    if top_k > vocab_size:
        raise UsageError(f"{flag}top_k={top_k} exceeds the vocabulary size {vocab_size}")
    return int(top_k)


def check_count(value: Any, name: str, flag: str = "") -> int:
    """A length or a number of samples: an integer >= 1."""
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise UsageError(f"{flag}{name}={value!r} must be an integer >= 1")
    return int(value)


def check_model(model: Any) -> int:
    """The model's vocabulary size, if it can generate: a unidirectional language model
    (``seqlab.LanguageModel``: ``step`` and ``vocab_size``); else one UsageError line."""
    if not (callable(getattr(model, "step", None)) and hasattr(model, "vocab_size")):
        raise UsageError(
            f"generate needs a character language model (seqlab.LanguageModel, "
            f"task.name=charlm); got a {type(model).__name__}"
        )
    if getattr(getattr(model, "rnn", None), "bidirectional", False):
        raise UsageError(
            "generate decodes one token at a time: a bidirectional LanguageModel cannot "
            "generate (build it with bidirectional=False)"
        )
    return int(model.vocab_size)


def check_prime(prime: Any, vocab_size: int, num_samples: int) -> Array:
    """The (N, P) int32 prime: integer ids in [0, vocab_size), 1-D (repeated ``num_samples``
    times) or 2-D with one row per sample, at least one token; else one UsageError line."""
    if isinstance(prime, jax.core.Tracer):  # inside a caller's jit: shapes only
        ids = prime.astype(jnp.int32)
        return ids if ids.ndim == 2 else jnp.broadcast_to(ids, (num_samples, ids.shape[-1]))
    ids = np.asarray(prime)
    if ids.dtype == object or not (np.issubdtype(ids.dtype, np.integer) or ids.size == 0):
        raise UsageError(f"prime must be integer token ids; got dtype {ids.dtype}")
    if ids.ndim not in (1, 2):
        raise UsageError(f"prime must be (P,) or (N, P) token ids; got shape {ids.shape}")
    if ids.ndim == 2 and num_samples != 1:
        raise UsageError(
            "num_samples repeats a 1-D prime; a 2-D prime already has one row per sample"
        )
    if ids.shape[-1] < 1 or ids.size == 0:
        raise UsageError("generate needs a prime of at least one token")
    bad = ids[(ids < 0) | (ids >= vocab_size)]
    if bad.size:
        raise UsageError(
            f"prime id {int(bad[0])} is outside the vocabulary [0, {vocab_size}) "
            f"({bad.size} such id(s))"
        )
    ids = jnp.asarray(ids, jnp.int32)
    return ids if ids.ndim == 2 else jnp.broadcast_to(ids, (num_samples, ids.shape[0]))


def check_key(key: Any) -> Array:
    if isinstance(key, jax.Array) and jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        if key.shape == ():
            return key
    elif isinstance(key, jax.Array) and key.shape == (2,) and key.dtype == jnp.uint32:
        return key  # a raw jax.random.PRNGKey
    what = f"shape {tuple(key.shape)} {key.dtype}" if hasattr(key, "shape") else repr(key)[:40]
    raise UsageError(f"key must be one PRNG key, e.g. jax.random.key(0); got {what}")


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


def _prepare(
    model: Any, prime: Any, length: Any, num_samples: Any, temperature: Any, top_k: Any, key: Any
) -> tuple[Array, dict[str, Any]]:
    """Every argument checked before anything is traced: the (N, P) int32 prime and the
    compile-time options."""
    vocab = check_model(model)
    length = check_count(length, "length")
    num_samples = check_count(num_samples, "num_samples")
    check_temperature(temperature)
    options = {"length": length, "top_k": check_top_k(top_k, vocab)}
    check_key(key)
    return check_prime(prime, vocab, num_samples), options


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
    prime, options = _prepare(model, prime, length, num_samples, temperature, top_k, key)
    graphdef, state = nnx.split(model)
    temperature = jnp.asarray(temperature, jnp.float32)
    toks, _, _ = _generate(graphdef, state, prime, key, temperature, greedy=bool(greedy), **options)
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
    prime, options = _prepare(model, prime, length, num_samples, temperature, top_k, key)
    chunk_size = check_count(chunk_size, "chunk_size")
    graphdef, state = nnx.split(model)
    n = math.ceil(length / chunk_size)
    size = math.ceil(length / n)
    options.update(length=size, greedy=bool(greedy))
    temperature = jnp.asarray(temperature, jnp.float32)
    toks, carry, last = _generate(graphdef, state, prime, key, temperature, **options)
    for i in range(n):
        if i:
            start = jnp.asarray(i * size, jnp.int32)
            toks, carry, last = _continue(
                graphdef, state, carry, last, key, start, temperature, **options
            )
        yield toks[:, : min(size, length - i * size)]
