"""``seqlab.models.generate``: greedy/temperature/top-k semantics, seeding, and compilation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.models import LanguageModel
from seqlab.models.generate import _continue, _generate, generate, generate_chunks, sample_logits

V, N, LENGTH = 11, 4, 12
PRIME = jnp.array([3, 1, 4, 1, 5])


@pytest.fixture(scope="module")
def model() -> LanguageModel:
    # char_rnn init spreads the logits enough that sampled and greedy paths differ
    return LanguageModel(
        V,
        cell="lstm",
        hidden_size=16,
        cell_kwargs={"init": "char_rnn"},
        rngs=nnx.Rngs(0),
    )


def gen(model: LanguageModel, seed: int = 0, **kw) -> np.ndarray:
    kw = {"num_samples": N, **kw}
    out = generate(model, PRIME, LENGTH, key=jax.random.key(seed), **kw)
    assert out.shape == (N, LENGTH) and out.dtype == jnp.int32
    return np.asarray(out)


def manual(model: LanguageModel, prime: jax.Array, key: jax.Array, **kw) -> np.ndarray:
    """The documented recipe by hand: read the prime, then sample token t from the last logits
    with fold_in(key, t) and feed it back through ``model.step``."""
    logits, aux = model(prime)
    carry, last, out = aux["final_carry"], logits[:, -1], []
    for t in range(LENGTH):
        tok = sample_logits(last, jax.random.fold_in(key, t), **kw)
        carry, last = model.step(carry, tok)
        out.append(tok)
    return np.asarray(jnp.stack(out, 1))


@pytest.mark.slow
def test_greedy_is_deterministic_and_matches_argmax_stepping(model):
    greedy = gen(model, greedy=True)
    np.testing.assert_array_equal(gen(model, seed=7, greedy=True), greedy)  # seed is irrelevant
    assert np.all(greedy == greedy[0])  # same prime, no randomness: identical rows
    prime = jnp.broadcast_to(PRIME, (N, PRIME.shape[0]))
    ref = manual(model, prime, jax.random.key(0), temperature=1.0, greedy=True)
    np.testing.assert_array_equal(greedy, ref)


@pytest.mark.parametrize("temperature", [0.0, 1e-6])
def test_vanishing_temperature_equals_greedy(model, temperature):
    np.testing.assert_array_equal(gen(model, temperature=temperature), gen(model, greedy=True))


def test_top_k_one_equals_greedy(model):
    np.testing.assert_array_equal(gen(model, top_k=1, temperature=2.0), gen(model, greedy=True))


def test_seeding(model):
    a, b, c = gen(model, seed=1), gen(model, seed=1), gen(model, seed=2)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len({tuple(r) for r in a}) > 1  # num_samples draws independent samples
    assert not np.array_equal(a, gen(model, greedy=True))  # temperature 1 really samples


@pytest.mark.parametrize("temperature,top_k", [(0.8, 0), (1.5, 3)])
@pytest.mark.slow
def test_continues_the_prime_like_manual_stepping(model, temperature, top_k):
    key = jax.random.key(3)
    prime = jnp.stack([PRIME, (PRIME * 2) % V, (PRIME + 5) % V, PRIME[::-1]])  # (N, P) prime
    out = generate(model, prime, LENGTH, key=key, temperature=temperature, top_k=top_k)
    ref = manual(model, prime, key, temperature=temperature, top_k=top_k)
    np.testing.assert_array_equal(out, ref)
    if top_k:  # every token is among the k most likely at its step
        logits, aux = model(prime)
        carry, last = aux["final_carry"], logits[:, -1]
        for t in range(LENGTH):
            kth = jax.lax.top_k(last, top_k)[0][:, -1]
            assert bool(jnp.all(last[jnp.arange(N), out[:, t]] >= kth))
            carry, last = model.step(carry, out[:, t])


def test_temperature_is_traced_not_static(model):
    gen(model, temperature=0.5)  # compiled (or already cached) for this configuration
    before = _generate._cache_size()
    for temperature in (0.7, 1.3, 2.0):
        gen(model, temperature=temperature)
    assert _generate._cache_size() == before
    gen(model, temperature=0.5, top_k=2)  # a static option does compile anew
    assert _generate._cache_size() == before + 1


def test_errors(model):
    with pytest.raises(ValueError, match="prime"):
        generate(model, jnp.array([], jnp.int32), LENGTH, key=jax.random.key(0))
    with pytest.raises(ValueError, match="length"):
        generate(model, PRIME, 0, key=jax.random.key(0))


def test_top_k_breaks_ties_and_2d_prime_rejects_num_samples():
    from seqlab.models.generate import sample_logits

    logits = jnp.array([[1.0, 1.0, 1.0, 0.0]])
    for seed in range(20):  # top_k=1 keeps exactly one candidate even among ties
        assert int(sample_logits(logits, jax.random.key(seed), 1.0, top_k=1)[0]) == 0
    lm = LanguageModel(5, hidden_size=4, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="num_samples"):
        generate(lm, jnp.array([[1, 2]]), 3, key=jax.random.key(0), num_samples=4)


# -- long generations, a chunk at a time --------------------------------------------------------
@pytest.mark.parametrize("chunk_size", [1, 5, 12, 100])
@pytest.mark.parametrize("how", [{"temperature": 0.8}, {"temperature": 1.5, "top_k": 3}])
@pytest.mark.slow
def test_chunks_are_exactly_one_call(model, chunk_size, how):
    key = jax.random.key(11)
    whole = np.asarray(generate(model, PRIME, LENGTH, key=key, num_samples=N, **how))
    chunks = [
        np.asarray(c)
        for c in generate_chunks(
            model, PRIME, LENGTH, key=key, num_samples=N, chunk_size=chunk_size, **how
        )
    ]
    n = -(-LENGTH // chunk_size)
    assert len(chunks) == n and all(c.shape[0] == N for c in chunks)
    assert max(c.shape[1] for c in chunks) <= chunk_size
    np.testing.assert_array_equal(np.concatenate(chunks, axis=1), whole)


def test_chunks_compile_once_for_any_number_of_chunks(model):
    list(generate_chunks(model, PRIME, 30, key=jax.random.key(0), chunk_size=10))
    before = _continue._cache_size()
    out = list(generate_chunks(model, PRIME, 30, key=jax.random.key(1), chunk_size=10))
    assert len(out) == 3 and _continue._cache_size() == before


def test_decoder_streams_utf8_split_across_chunks():
    from seqlab.tasks.corpora import Vocab
    from seqlab.tools.sampling import Decoder

    text = "naïve café → 日本語 ok"
    vocab = Vocab.build(text.encode(), unit="byte")
    ids = vocab.encode(text)
    decode = Decoder(vocab)
    pieces = [decode(ids[i : i + 3]) for i in range(0, len(ids), 3)]
    assert "".join(pieces) + decode(ids[:0], final=True) == text == vocab.decode(ids)


def test_sampling_past_learned_positions_says_so_in_one_line():
    from flax import nnx

    from seqlab.models import LanguageModel
    from seqlab.tools.sampling import learned_positions_note

    def lm(positions: str) -> LanguageModel:
        kw = {"num_heads": 2, "window": 8, "positions": positions}
        return LanguageModel(
            5, cell="attention", hidden_size=8, num_layers=1, cell_kwargs=kw, rngs=nnx.Rngs(0)
        )

    note = learned_positions_note(lm("learned"), 20)
    assert note.count("\n") == 0 and "8 characters" in note and "the 12 after" in note
    assert learned_positions_note(lm("learned"), 8) is None
    assert learned_positions_note(lm("rotary"), 20) is None
