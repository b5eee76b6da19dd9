"""CharLMTask: TBPTT and random-window batches, carry threading under jit, metrics, samples,
and the charlm/quickstart configs."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqlab.models.build import build_model
from seqlab.tasks import make_task
from seqlab.tasks.charlm import CharLMTask

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT / ".." / "shared" / "data"
TEXT = "".join(f"line {i}: the quick brown fox jumps over the lazy dog.\n" for i in range(200))


def load_config(name: str):
    spec = importlib.util.spec_from_file_location(f"cfg_{name}", ROOT / "configs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def corpus_file(tmp_path) -> Path:
    path = tmp_path / "text.txt"
    path.write_text(TEXT)
    return path


def make(corpus_file: Path, process_index: int = 0, process_count: int = 1, **data):
    c = load_config("charlm").get_config("runlocal,batching=tbptt")
    c.data.corpus = f"file:{corpus_file}"
    c.data.max_chars = 0
    c.data.batch_size, c.data.seq_len = 4, 10
    c.model.hidden_size = 16
    for k, v in data.items():  # data.* keys, else task.* keys
        section = c.data if k in c.data else c.task
        section[k] = v
    return CharLMTask(c, process_index=process_index, process_count=process_count)


# -- batches -------------------------------------------------------------------------------
def test_tbptt_streams_continue_and_reset(corpus_file):
    task = make(corpus_file)
    train, n, (B, T) = task.splits["train"], task.num_chunks(), (4, 10)
    stride = (len(train) - 1) // B
    assert n == stride // T and n > 3
    batches = [task.train_batch(s) for s in range(n + 2)]
    for s in range(n - 1):
        a, b = batches[s], batches[s + 1]
        assert np.array_equal(b["inputs"][:, 0], a["targets"][:, -1])
        assert np.array_equal(a["targets"][:, :-1], a["inputs"][:, 1:])
    streams = np.concatenate([batches[s]["inputs"] for s in range(n)], axis=1)
    for r in range(B):
        assert np.array_equal(streams[r], train[r * stride : r * stride + n * T])
    assert [bool(b["reset"].all()) for b in batches] == [True] + [False] * (n - 1) + [True, False]
    assert all(b["reset"].shape == (B,) for b in batches)
    for key in ("inputs", "targets"):
        assert np.array_equal(batches[n][key], batches[0][key])  # the next pass starts over
        assert np.array_equal(make(corpus_file).train_batch(3)[key], batches[3][key])


def test_random_windows_are_pure_and_from_train(corpus_file):
    task = make(corpus_file, batching="random")
    text = task.vocab.decode(task.splits["train"])
    b = task.train_batch(7)
    assert b["reset"].all() and np.array_equal(b["targets"][:, :-1], b["inputs"][:, 1:])
    for row_in, row_t in zip(b["inputs"], b["targets"], strict=True):
        assert task.vocab.decode(np.r_[row_in, row_t[-1:]]) in text
    again = make(corpus_file, batching="random").train_batch(7)
    assert np.array_equal(again["inputs"], b["inputs"])
    assert not np.array_equal(task.train_batch(8)["inputs"], b["inputs"])
    other_seed = make(corpus_file, batching="random")
    other_seed.seed = 1
    assert not np.array_equal(other_seed.train_batch(7)["inputs"], b["inputs"])


@pytest.mark.parametrize("batching", ["tbptt", "random"])
def test_processes_take_their_own_rows(corpus_file, batching):
    whole = make(corpus_file, batching=batching).train_batch(5)
    parts = [make(corpus_file, p, 2, batching=batching).train_batch(5) for p in range(2)]
    assert parts[0]["inputs"].shape == (2, 10)
    for key in ("inputs", "targets", "reset"):
        assert np.array_equal(np.concatenate([p[key] for p in parts]), whole[key])
    assert not np.array_equal(parts[0]["inputs"], parts[1]["inputs"])


@pytest.mark.parametrize("batching", ["tbptt", "random"])
def test_eval_and_test_batches(corpus_file, batching):
    task = make(corpus_file, batching=batching, eval_batches=3, test_fraction=0.1)
    ev = task.eval_batches()
    assert len(ev) == 3 and task.eval_batches() is ev
    val = task.splits["val"]
    stride = (len(val) - 1) // 4
    assert np.array_equal(ev[1]["inputs"][2], val[2 * stride + 10 : 2 * stride + 20])
    resets = [bool(b["reset"].all()) for b in ev]
    assert resets == ([True, False, False] if batching == "tbptt" else [True] * 3)
    test = task.test_batches()
    assert len(test) == task.num_chunks("test") > 0
    assert np.array_equal(test[0]["inputs"][0], task.splits["test"][:10])
    assert make(corpus_file, test_fraction=0.0).test_batches() == []


def test_too_small_corpus_says_how_large(tmp_path):
    def with_chars(n: int):
        path = tmp_path / f"{n}.txt"
        path.write_text(TEXT[:n])
        return make(path)

    with pytest.raises(ValueError, match=r"needs at least (\d+)") as e:
        with_chars(300)
    n_min = int(e.value.args[0].split("needs at least ")[1].split()[0])
    assert n_min > 2 * (4 * 10 + 1)
    with pytest.raises(ValueError, match="too small"):
        with_chars(n_min - 1)
    assert with_chars(n_min).num_chunks("val") == 1


def test_config_errors(corpus_file):
    with pytest.raises(ValueError, match="unknown data.batching"):
        make(corpus_file, batching="shuffle")
    with pytest.raises(ValueError, match="sample_prime 'XYZ'.*not in the vocab"):
        make(corpus_file, sample_prime="XYZ")
    with pytest.raises(ValueError, match="val split"):
        make(corpus_file, val_fraction=0.0)


# -- loss and carry under jit ----------------------------------------------------------------
def _jit_loss(task, model):
    graphdef, state = nnx.split(model)

    @jax.jit
    def f(state, batch, carry):
        return task.loss(nnx.merge(graphdef, state), batch, carry=carry, rng=jax.random.PRNGKey(0))

    return lambda batch, carry: f(state, batch, carry)


def test_carry_threads_and_resets_under_jit(corpus_file):
    task = make(corpus_file)
    model = build_model(task.config.model, task.spec, nnx.Rngs(0))
    loss = _jit_loss(task, model)
    b0, b1 = task.train_batch(0), task.train_batch(1)
    both = {
        "inputs": np.concatenate([b0["inputs"], b1["inputs"]], 1),
        "targets": np.concatenate([b0["targets"], b1["targets"]], 1),
        "reset": b0["reset"],
    }
    carry = task.initial_carry(model, 4)
    l0, (m0, c0) = loss(b0, carry)
    l1, (m1, c1) = loss(b1, c0)
    l01, (m01, c01) = loss(both, carry)
    np.testing.assert_allclose(m0["loss"][0] + m1["loss"][0], m01["loss"][0], rtol=1e-5)
    np.testing.assert_allclose((l0 + l1) / 2, l01, rtol=1e-5)
    assert float(m01["loss"][1]) == 80 and jax.tree.structure(c1) == jax.tree.structure(carry)
    for a, b, init in zip(
        jax.tree.leaves(c1), jax.tree.leaves(c01), jax.tree.leaves(carry), strict=True
    ):
        assert a.dtype == init.dtype and a.shape == init.shape
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
    # reset: a nonzero carry is ignored when the batch says so, and used when it does not
    l_reset, (_, c_reset) = loss(b0, c1)
    np.testing.assert_allclose(l_reset, l0, rtol=1e-6)
    l_cont, _ = loss({**b0, "reset": np.zeros(4, bool)}, c1)
    assert abs(float(l_cont) - float(l0)) > 1e-6
    _, (_, c_none) = loss(b0, None)
    np.testing.assert_allclose(jax.tree.leaves(c_none)[0], jax.tree.leaves(c0)[0])


def test_returned_carry_has_no_gradient_and_random_passes_it_through(corpus_file):
    task = make(corpus_file)
    model = build_model(task.config.model, task.spec, nnx.Rngs(0))
    graphdef, state = nnx.split(model)
    batch, carry = task.train_batch(0), task.initial_carry(model, 4)

    def carry_sum(state):
        _, (_, new) = task.loss(nnx.merge(graphdef, state), batch, carry=carry)
        return sum(x.sum() for x in jax.tree.leaves(new))

    grads = jax.jit(jax.grad(carry_sum))(state)
    assert all(float(jnp.abs(g).max()) == 0 for g in jax.tree.leaves(grads))
    rand = make(corpus_file, batching="random")
    marker = jax.tree.map(lambda x: x + 1.0, carry)
    _, (_, same) = jax.jit(lambda c: rand.loss(model, rand.train_batch(0), carry=c))(marker)
    for a, b in zip(jax.tree.leaves(same), jax.tree.leaves(marker), strict=True):
        np.testing.assert_array_equal(a, b)


# -- reporting -----------------------------------------------------------------------------
def test_summarize_baselines_and_vocab(corpus_file):
    task = make(corpus_file)
    out = task.summarize({"eval/loss": 1.5, "eval/accuracy": 0.5}, "eval/")
    assert out == pytest.approx({"eval/bpc": 1.5 / math.log(2), "eval/perplexity": math.exp(1.5)})
    assert task.summarize({"train/accuracy": 0.1}, "train/") == {}
    base = task.baselines()
    assert 0 < base["loss"] < math.log(task.vocab.size)  # reported as baseline/loss
    assert base["bpc"] == pytest.approx(base["loss"] / math.log(2))
    saved = json.loads(json.dumps(task.vocab.to_dict()))
    assert CharLMTask.vocab_from_dict(saved) == task.vocab
    assert task.spec.family == "lm" and task.spec.vocab_size == len(set(TEXT))


def test_text_samples(corpus_file):
    task = make(corpus_file, sample_length=25, sample_prime="line ", sample_temperatures="0.5,1.0")
    model = build_model(task.config.model, task.spec, nnx.Rngs(0))
    samples = task.text_samples(model, step=10)
    assert sorted(samples) == ["sample/t=0.5", "sample/t=1"]
    for text in samples.values():
        assert len(text) == len("line ") + 25 and text.startswith("line ")
        assert set(text) <= set(task.vocab.symbols)
    assert task.text_samples(model, step=10) == samples
    task.sample_every = 20
    assert task.text_samples(model, step=10) == {} and task.text_samples(model, step=20)


# -- configs -------------------------------------------------------------------------------
def test_configs_and_sweep_build():
    charlm = load_config("charlm")
    c = charlm.get_config()
    assert (c.model.cell, c.model.num_layers, c.model.hidden_size) == ("lstm", 2, 256)
    assert (c.data.batch_size, c.data.seq_len, c.model.init) == (64, 100, "default")
    assert (c.data.batching, c.optim.schedule) == ("random", "warmup_cosine")
    assert charlm.get_config("gru").model.cell == "gru"
    assert charlm.get_config("rnn,runlocal").model.hidden_size == 32
    assert charlm.get_config("corpus=file:/x/y.txt").data.corpus == "file:/x/y.txt"
    with pytest.raises(ValueError, match="unknown config variant"):
        charlm.get_config("runlcoal=1")
    sweep = list(charlm.get_sweep())
    assert len(sweep) == 9 and len({json.dumps(s, sort_keys=True) for s in sweep}) == 9
    for overrides in sweep:
        for key in overrides:
            section, leaf = key.split(".")
            assert leaf in c[section]
    assert list(charlm.get_sweep("cells=gru,layers=1+3")) == [
        {"model.cell": "gru", "model.num_layers": 1},
        {"model.cell": "gru", "model.num_layers": 3},
    ]
    with pytest.raises(ValueError, match="unknown cell 'lstn'"):
        list(charlm.get_sweep("cells=lstn"))
    quick = load_config("quickstart")
    q = quick.get_config()
    assert q.data.corpus == "python_stdlib" and q.task.name == "charlm"
    assert quick.get_config("gru,runlocal").model.cell == "gru"


@pytest.mark.slow
def test_sweep_matches_parameter_counts(corpus_file):
    """``params=N``: every cell x depth gets the hidden size whose count is nearest N."""
    from seqlab.models.build import num_params
    from seqlab.tasks.base import ModelSpec
    from seqlab.tasks.corpora import load_corpus

    charlm = load_config("charlm")
    points = list(charlm.get_sweep(f"params=20000,corpus=file:{corpus_file}"))
    assert len(points) == 9
    c = charlm.get_config(f"corpus=file:{corpus_file}")
    spec = ModelSpec(family="lm", vocab_size=load_corpus(f"file:{corpus_file}").vocab.size)
    sizes = {}
    for p in points:
        c.model.cell, c.model.num_layers = p["model.cell"], p["model.num_layers"]
        c.model.hidden_size = p["model.hidden_size"]
        sizes[(c.model.cell, c.model.num_layers)] = c.model.hidden_size
        assert abs(num_params(c.model, spec) - 20_000) / 20_000 < 0.03
    # more gates or more layers: fewer units for the same budget
    assert sizes[("rnn", 1)] > sizes[("gru", 1)] > sizes[("lstm", 1)] > sizes[("lstm", 3)]


def test_quickstart_runlocal_task_builds_offline():
    c = load_config("quickstart").get_config("runlocal")
    task = make_task(c)
    assert task.vocab.size > 30 and task.train_batch(0)["inputs"].shape == (8, 32)


@pytest.mark.skipif(
    not (SHARED / "tinyshakespeare" / "input.txt").is_file(),
    reason="no shared tinyshakespeare copy",
)
def test_charlm_runlocal_learns(monkeypatch):
    """The real config shrunk: a few Adam steps on tiny Shakespeare lower the eval loss."""
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(SHARED))
    c = load_config("charlm").get_config("runlocal")
    task = make_task(c)
    model = build_model(c.model, task.spec, nnx.Rngs(c.seed))
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.chain(
        optax.clip_by_global_norm(c.optim.clip_value), optax.adam(c.optim.learning_rate)
    )

    @jax.jit
    def step(params, opt, carry, batch):
        def f(p):
            return task.loss(nnx.merge(graphdef, p, rest), batch, carry=carry)

        (_, (_, carry)), g = jax.value_and_grad(f, has_aux=True)(params)
        updates, opt = tx.update(g, opt, params)
        return optax.apply_updates(params, updates), opt, carry

    @jax.jit
    def evaluate(params, batch, carry):
        return task.eval_metrics(nnx.merge(graphdef, params, rest), batch, carry=carry)

    def eval_loss(params):
        carry, total = None, np.zeros(2)
        for batch in task.eval_batches():
            metrics, carry = evaluate(params, batch, carry)
            total += np.array(metrics["loss"], dtype=float)
        means = {"eval/loss": total[0] / total[1]}
        return means | task.summarize(means, "eval/")

    before = eval_loss(params)
    opt, carry = tx.init(params), task.initial_carry(model, task.batch_size)
    for s in range(150):
        params, opt, carry = step(params, opt, carry, task.train_batch(s))
    after = eval_loss(params)
    assert before["eval/loss"] == pytest.approx(math.log(task.vocab.size), abs=0.1)
    assert after["eval/loss"] < before["eval/loss"] - 0.7
    assert after["eval/bpc"] == pytest.approx(after["eval/loss"] / math.log(2))


def test_unigram_baseline_is_fit_on_train_and_scored_on_val(tmp_path):
    """Computed here from the text: add-one unigram counts of the first (train) part, the
    mean negative log-probability of the val part that follows it. The val part is written
    with other letter frequencies, so scoring any other split gives another number."""
    from collections import Counter

    text = "abab abba baba. " * 60 + "xyz ab zzy. " * 12 + "ab. " * 10
    path = tmp_path / "shifted.txt"
    path.write_text(text)
    task = make(path, val_fraction=0.2, test_fraction=0.05)
    n = len(text)
    n_val, n_test = int(n * 0.2), int(n * 0.05)
    train, val = text[: n - n_val - n_test], text[n - n_val - n_test : n - n_test]
    symbols = sorted(set(text))
    counts = Counter(train)
    total = len(train) + len(symbols)
    logp = {s: math.log((counts[s] + 1) / total) for s in symbols}
    score = lambda part: -sum(logp[ch] for ch in part) / len(part)
    base = task.baselines()
    assert base["loss"] == pytest.approx(score(val), rel=1e-9)
    assert base["bpc"] == pytest.approx(score(val) / math.log(2), rel=1e-9)
    assert abs(score(val) - score(train)) > 0.1 and abs(score(val) - score(text[-n_test:])) > 0.1
