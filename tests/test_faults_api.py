"""The library API refuses what the command line refuses (issue 22, family 4): bad sampling
arguments, prime ids outside the vocabulary and a model that cannot generate are one
seqlab error (UsageError, a ValueError) with the CLI's wording, raised before anything is
traced; the same check functions serve `seqlab sample`."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import seqlab
from seqlab.errors import SeqlabError, UsageError
from seqlab.models.generate import check_temperature, check_top_k, generate_chunks
from seqlab.tools import sampling

V = 5


@pytest.fixture(scope="module")
def lm():
    return seqlab.LanguageModel(V, cell="gru", hidden_size=8, rngs=nnx.Rngs(0))


KEY = jax.random.key(0)
PRIME = jnp.array([1, 2])

# (case, keyword overrides of generate(lm, PRIME, 3, key=KEY), words the message must hold)
BAD = [
    ("temperature-nan", {"temperature": math.nan}, ["temperature=nan", "finite", ">= 0"]),
    ("temperature-neg", {"temperature": -0.5}, ["temperature=-0.5", ">= 0"]),
    ("temperature-inf", {"temperature": math.inf}, ["temperature=inf", "finite"]),
    ("temperature-str", {"temperature": "hot"}, ["temperature='hot'"]),
    ("temperature-nan-greedy", {"temperature": math.nan, "greedy": True}, ["finite"]),
    ("top_k-neg", {"top_k": -2}, ["top_k=-2", "integer >= 0"]),
    ("top_k-big", {"top_k": V + 1}, [f"top_k={V + 1} exceeds the vocabulary size {V}"]),
    ("top_k-float", {"top_k": 2.5}, ["top_k=2.5", "integer"]),
    ("prime-oov", {"prime": jnp.array([1, V])}, [f"prime id {V}", f"[0, {V})"]),
    ("prime-neg", {"prime": np.array([-1, 0])}, ["prime id -1", "outside the vocabulary"]),
    ("prime-float", {"prime": np.array([1.5])}, ["integer token ids"]),
    ("prime-3d", {"prime": np.zeros((1, 1, 2), int)}, ["(N, P)", "(1, 1, 2)"]),
    ("prime-empty", {"prime": np.zeros((0,), int)}, ["at least one token"]),
    ("prime-2d-repeated", {"prime": np.zeros((2, 2), int), "num_samples": 2}, ["2-D prime"]),
    ("length-0", {"length": 0}, ["length=0", ">= 1"]),
    ("length-float", {"length": 2.5}, ["length=2.5", "integer"]),
    ("num_samples-0", {"num_samples": 0}, ["num_samples=0", ">= 1"]),
    ("num_samples-neg", {"num_samples": -1}, ["num_samples=-1"]),
    ("key-int", {"key": 0}, ["key", "jax.random.key(0)"]),
    ("key-none", {"key": None}, ["key", "PRNG"]),
    ("key-batch", {"key": jax.random.split(KEY, 2)}, ["one PRNG key"]),
]


def _call(lm, fn, **kw):
    args = {"prime": PRIME, "length": 3, "key": KEY} | kw
    return fn(lm, args.pop("prime"), args.pop("length"), **args)


@pytest.mark.parametrize("case,kw,words", BAD, ids=[b[0] for b in BAD])
def test_generate_refuses_with_one_line(lm, case, kw, words) -> None:
    for fn in (seqlab.generate, lambda *a, **k: next(generate_chunks(*a, **k))):
        with pytest.raises(UsageError) as e:
            _call(lm, fn, **kw)
        msg = str(e.value)
        assert "\n" not in msg and all(w in msg for w in words), msg
    rest = {k: v for k, v in kw.items() if k not in ("prime", "length")}
    with pytest.raises(UsageError):  # the model's own method goes through the same checks
        lm.generate(kw.get("prime", PRIME), kw.get("length", 3), **({"key": KEY} | rest))


def test_models_that_cannot_generate_are_named(lm) -> None:
    clf = seqlab.SequenceClassifier(3, num_features=2, cell="gru", hidden_size=8, rngs=nnx.Rngs(0))
    s2s = seqlab.Seq2Seq(V, V, embed_dim=4, cell="gru", hidden_size=8, rngs=nnx.Rngs(0))
    for model, name in ((clf, "SequenceClassifier"), (s2s, "Seq2Seq"), ("lm", "str")):
        with pytest.raises(UsageError, match=f"needs a character language model.*{name}"):
            seqlab.generate(model, PRIME, 3, key=KEY)
    bi = seqlab.LanguageModel(V, cell="gru", hidden_size=8, bidirectional=True, rngs=nnx.Rngs(0))
    with pytest.raises(UsageError, match="bidirectional"):
        seqlab.generate(bi, PRIME, 3, key=KEY)


@pytest.mark.slow
def test_the_edges_that_are_allowed_still_work(lm) -> None:
    """top_k = V (all), temperature 0 (greedy), ids 0 and V-1, a 2-D prime, a raw
    PRNGKey, numpy integer arguments, and a prime under jit."""
    greedy = seqlab.generate(lm, PRIME, 4, key=KEY, greedy=True)
    np.testing.assert_array_equal(seqlab.generate(lm, PRIME, 4, key=KEY, temperature=0.0), greedy)
    out = seqlab.generate(lm, np.array([[0, V - 1], [1, 2]]), np.int64(3), key=KEY, top_k=V)
    assert out.shape == (2, 3) and int(out.max()) < V
    assert seqlab.generate(lm, [0], 2, key=jax.random.PRNGKey(1), top_k=np.int32(1)).shape == (1, 2)
    jitted = jax.jit(lambda p: seqlab.generate(lm, p, 2, key=KEY, greedy=True))
    np.testing.assert_array_equal(
        jitted(PRIME), seqlab.generate(lm, PRIME, 2, key=KEY, greedy=True)
    )


def test_one_source_for_the_cli_and_the_api() -> None:
    """`seqlab sample`'s flags go through the same functions, with the flag's spelling."""
    with pytest.raises(UsageError, match=r"^--temperature=nan must be a finite number >= 0"):
        check_temperature(math.nan, flag="--")
    with pytest.raises(UsageError, match=r"^temperature=nan must be a finite number >= 0"):
        check_temperature(math.nan)
    with pytest.raises(UsageError, match=r"^--top_k=9 exceeds the vocabulary size 5$"):
        check_top_k(9, 5, flag="--")
    assert sampling.check_top_k is check_top_k
    meta = {"vocab": {"unit": "char", "symbols": list("abcde")}, "spec": {"family": "lm"}}
    with pytest.raises(UsageError, match=r"^--top_k=6 exceeds the vocabulary size 5$"):
        sampling.check_flags(meta, "w", top_k=6, prime=None, replica=0)
    with pytest.raises(UsageError, match=r"^--top_k=-1 must be an integer >= 0"):
        sampling.check_flags(meta, "w", top_k=-1, prime=None, replica=0)


def test_errors_are_seqlab_errors_and_value_errors(lm) -> None:
    with pytest.raises(SeqlabError):
        seqlab.generate(lm, PRIME, 3, key=KEY, top_k=V + 1)
    with pytest.raises(ValueError):  # callers that caught ValueError keep working
        seqlab.generate(lm, PRIME, 3, key=KEY, top_k=V + 1)


# -- the public constructors: seqlab's ConfigError, never a crash from inside -----------------
def _lm(**kw):
    return lambda: seqlab.LanguageModel(V, **({"cell": "gru", "hidden_size": 4} | kw),
                                        rngs=nnx.Rngs(0))  # fmt: skip


CONSTRUCTORS = [
    ("cell-hidden-0", lambda: seqlab.make_cell("lstm", 2, 0, rngs=nnx.Rngs(0)), "hidden_size"),
    ("cell-hidden-float", lambda: seqlab.LSTMCell(2, 3.5, rngs=nnx.Rngs(0)), "integers >= 1"),
    ("cell-dtype-string", lambda: seqlab.make_cell("rnn", 2, 3, rngs=nnx.Rngs(0),
                                                  param_dtype="float12"), "not a dtype"),
    ("cell-unknown", lambda: seqlab.make_cell("lstn", 2, 3, rngs=nnx.Rngs(0)), "unknown cell"),
    ("lru-r_max-0", lambda: seqlab.make_cell("lru", 2, 4, rngs=nnx.Rngs(0), r_min=0.0,
                                            r_max=0.0), "r_max > 0"),
    ("lm-vocab-0", lambda: seqlab.LanguageModel(0, cell="gru", hidden_size=4, rngs=nnx.Rngs(0)),
     "vocab_size=0"),
    ("lm-embed-0", _lm(input_kind="embed", embed_dim=0), "embed_dim=0"),
    ("lm-layers-0", _lm(num_layers=0), "num_layers"),
    ("lm-dropout-1", _lm(dropout=1.0), "dropout"),
    ("lm-backend", _lm(backend="cuda"), "unknown recurrence backend"),
    ("classifier-0-outputs", lambda: seqlab.SequenceClassifier(
        0, num_features=2, cell="gru", hidden_size=4, rngs=nnx.Rngs(0)), "num_outputs"),
    ("seq2seq-vocab-0", lambda: seqlab.Seq2Seq(0, 5, cell="gru", hidden_size=4,
                                              rngs=nnx.Rngs(0)), "vocab_size=0"),
    ("recurrent-chunk-neg", lambda: seqlab.Recurrent(
        seqlab.make_cell("lru", 2, 4, rngs=nnx.Rngs(0)), backend="parallel", chunk_size=-1),
     "chunk_size"),
    ("recurrent-unroll-0", lambda: seqlab.Recurrent(
        seqlab.make_cell("gru", 2, 4, rngs=nnx.Rngs(0)), unroll=0), "unroll"),
    ("stack-unknown-cell", lambda: seqlab.RNNStack("gruu", 2, 4, rngs=nnx.Rngs(0)),
     "unknown cell"),
]  # fmt: skip


@pytest.mark.parametrize("case,make,words", CONSTRUCTORS, ids=[c[0] for c in CONSTRUCTORS])
@pytest.mark.slow
def test_constructors_refuse_with_a_seqlab_error(case, make, words) -> None:
    from seqlab.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        make()
    assert words in str(e.value) and "\n" not in str(e.value), str(e.value)
