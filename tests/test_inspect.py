"""``seqlab inspect``: unit ranking on constructed activations, the traced internals against
the model's own states, the page's numbers against a direct forward pass of the loaded model,
the page for a task that is not a char LM, the W&B eval hook, and bad input as one line."""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.tools import units
from seqlab.tools.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK = os.path.join(ROOT, "configs", "quickstart.py")
TEXT = 'def area(r):\n    """Circle area."""\n    return 3.14 * (r * r)  # pi r^2\n' * 3


SAMPLES = {4: {"sample/t=0.8": "def f(x):", "sample/t=1": "def g(y)"}, 8: {"sample/t=0.8": "x"}}


def save_run(workdir: str, config, step: int, metrics: dict) -> None:
    """A workdir holding one checkpoint of ``config``'s initialized model, as the loop saves
    it (same metadata): what seqlab inspect reads, without paying to compile a train step."""
    from seqlab.run.checkpoint import Checkpointer
    from seqlab.run.state import checkpoint_meta, init_train_state
    from seqlab.tasks import make_task

    task = make_task(config)
    _, state, _ = init_train_state(config, task)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), async_save=False)
    ckpt.save(step, state, checkpoint_meta(config, task), metrics=metrics)
    ckpt.close()


def lm_workdir(tmp_path_factory) -> str:
    """configs/quickstart.py:runlocal (a 1 x 32 LSTM on 40,000 characters of the stdlib) at
    initialization, with the samples of two evals written by the loop's own writer; made
    once per process, shared by tests/test_inspect.py and tests/test_inspect_browser.py."""
    import importlib.util

    from seqlab.run.writers import JsonlWriter

    wd = str(tmp_path_factory.getbasetemp() / "inspect_lm")
    if not os.path.exists(os.path.join(wd, "metrics.jsonl")):
        spec = importlib.util.spec_from_file_location("quickstart", QUICK)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        config = module.get_config("runlocal")
        config.model.init = "char_rnn"  # uniform: quicker to initialize than orthogonal
        save_run(wd, config, 8, {"eval/loss": 4.0})
        writer = JsonlWriter(os.path.join(wd, "metrics.jsonl"))
        for step, texts in SAMPLES.items():
            writer.write_texts(step, texts)
        writer.close()
    return wd


@pytest.fixture(scope="module")
def lm(tmp_path_factory):
    return lm_workdir(tmp_path_factory)


@nnx.jit
def forward(model, x):
    """The loaded model's own forward pass, ``model(x)`` (jitted: one compile)."""
    return model(x)


def page_data(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        html = f.read()
    m = re.search(r'<script type="application/json" id="data">(.*?)</script>', html, re.S)
    return json.loads(m.group(1))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot(d):
    return sorted(
        (os.path.join(r, f), os.path.getsize(os.path.join(r, f)))
        for r, _, fs in os.walk(d)
        for f in fs
    )


# -- the ranking, on activations built to track a property --------------------------------
def test_a_unit_that_is_the_quote_indicator_ranks_first():
    text = 'print("a(b)")\nx = "yes" + \'no\'\n    # done "q"\n' * 4
    quote = units.in_quote(text)
    rng = np.random.default_rng(0)
    h = rng.normal(size=(len(text), 8))
    c = rng.normal(size=(len(text), 8))
    k = 5
    c[:, k] = quote  # the unit IS the quote indicator
    h[:, 2] = -0.5 * quote + 0.4 * rng.normal(size=len(text))  # tracks it, noisily, inverted
    ranked = units.rank_units({"layer 0 h": h, "layer 0 tanh(c)": c}, units.text_properties(text))
    best, second = ranked["quote"][:2]
    assert (best.series, best.unit) == ("layer 0 tanh(c)", k) and best.r == pytest.approx(1.0)
    assert (second.series, second.unit, second.r < 0) == ("layer 0 h", 2, True)
    flat = units.rank_units({"a": h}, {"constant": np.zeros(len(text))})
    assert flat["constant"] == []  # no correlation is defined: no units, not NaN scores


def test_text_properties_by_hand():
    text = "a(\"x(#\")  # c\n  b'\\''\n"
    p = units.text_properties(text)
    assert p["quote"].tolist()[:6] == [0, 0, 1, 1, 1, 1] and p["quote"][7] == 0
    assert p["bracket_depth"].tolist()[:8] == [0, 1, 1, 1, 2, 2, 2, 1]  # in strings too
    assert p["line_position"][13] == 0 and p["line_position"][16] == 3
    assert p["indentation"][14:17].tolist() == [1, 2, 2]
    # '#' inside the string is not a comment; the one after the call is, to the newline
    assert p["comment"][4] == 0 and p["comment"][10:13].tolist() == [1, 1, 1]
    assert p["comment"][13] == 0
    assert p["string"][2:7].tolist() == [1] * 5 and p["string"][8] == 0
    assert p["string"][17:21].tolist() == [1, 1, 1, 1]  # 'a \' escape' stays in the string
    left, right = units.saturation(np.array([[0.05, 0.5], [0.95, 0.5], [0.02, 0.99]]))
    assert left.tolist() == pytest.approx([2 / 3, 0]) and right.tolist() == pytest.approx(
        [1 / 3, 1 / 3]
    )
    assert (
        units.char_class("(", ")") == "closing bracket"
        and units.char_class("\n", "d") == "line start"
    )


# -- the traced internals are the model's own ---------------------------------------------
@pytest.mark.slow
def test_traced_states_are_the_stacks_own():
    """A 2-layer bidirectional LSTM with padded examples: every layer and direction's h is
    the stack's own, and h = o * tanh(c) (the output gate and the cell state read right)."""
    from seqlab.cells import make_cell
    from seqlab.recurrence import RNNStack
    from seqlab.tools.internals import gate_names, to_host, trace_stack

    # the stack's shapes, then uniform parameters from NumPy: no eager initializer to compile
    abstract = nnx.eval_shape(
        lambda: RNNStack("lstm", 3, 5, 2, bidirectional=True, rngs=nnx.Rngs(1))
    )
    graphdef, shapes = nnx.split(abstract)
    rng = np.random.default_rng(1)
    values = jax.tree.map(lambda s: jnp.asarray(rng.uniform(-0.6, 0.6, s.shape), s.dtype), shapes)
    stack = nnx.merge(graphdef, values)
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 7, 3)), jnp.float32)
    lengths = jnp.array([7, 4])

    @nnx.jit
    def both(stack, x, lengths):
        return stack(x, lengths=lengths)[1]["hidden_states"], trace_stack(stack, x, lengths=lengths)

    states, traces = both(stack, x, lengths)
    traces = to_host(traces)
    assert [t.name for t in traces] == [
        f"layer {i} {d}" for i in (0, 1) for d in ("forward", "backward")
    ]
    for i, layer_states in enumerate(states):
        mine = np.concatenate([t.h for t in traces[2 * i : 2 * i + 2]], -1)
        for b, n in enumerate([7, 4]):
            np.testing.assert_allclose(mine[b, :n], np.asarray(layer_states)[b, :n], atol=1e-5)
    for t in traces:
        assert tuple(t.gates) == ("input", "forget", "output")
        assert all(((g >= 0) & (g <= 1)).all() for g in t.gates.values())
        np.testing.assert_allclose(t.h, t.gates["output"] * np.tanh(t.c), atol=1e-5)
    rngs = nnx.Rngs(0)
    assert gate_names(make_cell("gru", 2, 2, rngs=rngs)) == ("reset", "update")
    assert gate_names(make_cell("gru_reset_before", 2, 2, rngs=rngs)) == ("reset", "update")
    assert gate_names(make_cell("mgu", 2, 2, rngs=rngs)) == ("forget",)
    assert gate_names(make_cell("rnn", 2, 2, rngs=rngs)) == ()  # no gates: none read
    assert gate_names(make_cell("mingru", 2, 2, rngs=rngs)) == ()


# -- the page's numbers are the loaded model's --------------------------------------------
@pytest.mark.slow
def test_page_numbers_equal_a_direct_forward_pass(lm, tmp_path, capsys):
    from seqlab import load_run

    path = tmp_path / "text.py"
    path.write_text(TEXT)
    out = tmp_path / "page"
    code, stdout, err = run(
        capsys,
        "inspect",
        "--workdir",
        lm,
        "--text",
        str(path),
        "--out",
        str(out),
        "--max_chars",
        "120",
    )
    assert code == 0, err
    assert "is longer than 120 chars; inspecting the first 120 (--max_chars)" in err
    data = page_data(str(out / "index.html"))
    assert data["chars"] == TEXT[:120]
    run_ = load_run(lm)
    ids = run_.vocab.encode(TEXT[:120])
    logits, aux = forward(run_.model(), jnp.asarray(ids)[None])
    probs = np.asarray(jax.nn.softmax(logits[0], -1))
    assert data["predictions"]["prob"][0] is None  # nothing precedes a --text file
    for t in (1, 7, 50, 119):
        expect = np.argsort(-probs[t - 1], kind="stable")[:5]
        got = data["predictions"]["top5"][t]
        assert [c for c, _ in got] == [run_.vocab.symbols[k] for k in expect]
        np.testing.assert_allclose([p for _, p in got], probs[t - 1][expect], atol=2e-6)
        assert data["predictions"]["prob"][t] == pytest.approx(probs[t - 1][ids[t]], abs=1e-6)
    series = data["series"][0]  # "layer 0 h": int8 per unit scale on the page
    assert series["name"] == "layer 0 h"
    q = np.frombuffer(base64.b64decode(series["q"]), np.int8).reshape(120, series["H"])
    decoded = q / 127 * np.asarray(series["scale"])
    np.testing.assert_allclose(decoded, np.asarray(aux["hidden_states"][0][0]), atol=0.005)
    assert {"gate_saturation.png", "unit_scores.png", "ngram_gain.png"} <= set(os.listdir(out))
    html = (out / "index.html").read_text()
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in html  # self-contained: nothing to fetch


# -- tasks that are not a char LM, and the W&B hook ---------------------------------------
@pytest.fixture(scope="module")
def adding(tmp_path_factory):
    """A many-to-one run (the adding problem, a 6-unit LSTM) at initialization."""
    from seqlab.tasks import task_config

    wd = str(tmp_path_factory.mktemp("adding"))
    c = task_config("adding")
    c.model.hidden_size, c.data.seq_len, c.data.batch_size = 6, 12, 4
    c.task.eval_batches, c.model.init = 1, "char_rnn"
    save_run(wd, c, 3, {"eval/mse": 0.2})
    return wd


def test_a_many_to_one_run_gets_its_examples(adding, tmp_path, capsys, monkeypatch):
    from seqlab.tools.inspect import examples

    monkeypatch.setattr(examples, "NUM_EXAMPLES", 1)
    code, _, err = run(capsys, "inspect", "--workdir", adding, "--out", str(tmp_path))
    assert code == 0, err
    html = (tmp_path / "index.html").read_text()
    assert html.count("Not applicable to this task") == 3  # predictions, n-gram, samples
    assert html.count('src="data:image/png;base64,') == 1 and "prediction" in html
    assert html.count("<circle") == 3 * 6  # input, forget, output gate of 6 units


def test_eval_hook_logs_the_val_split_page_to_wandb(lm, tmp_path, monkeypatch):
    """config.inspect.every's hook, on the live task and model: the page of the val split,
    read after the CONTEXT characters before it, equals a direct pass over both."""
    import shutil

    from seqlab import load_run
    from seqlab.tasks import make_task
    from seqlab.tools.inspect import CONTEXT, log_page

    logged = []
    fake = types.SimpleNamespace(
        Html=lambda html, inject=True: ("Html", html),
        run=types.SimpleNamespace(log=lambda d, step: logged.append((step, d))),
    )
    monkeypatch.setitem(sys.modules, "wandb", fake)
    run_ = load_run(lm)
    config = run_.config
    config.inspect.every = 4
    task, model = make_task(config), run_.model()
    wd = str(tmp_path)
    shutil.copy(os.path.join(lm, "samples.jsonl"), wd)
    assert log_page(task, model, config, wd, 6) is None  # not an inspect step
    path = log_page(task, model, config, wd, 8)
    assert path == os.path.join(wd, "inspect", "index.html")
    [(step, d)] = logged
    assert step == 8 and d["inspect"][0] == "Html" and "Gate saturation" in d["inspect"][1]
    data = page_data(path)
    start = len(task.splits["train"])
    full = task.corpus.ids[start - CONTEXT : start + len(data["chars"])]
    logits, _ = forward(model, jnp.asarray(full)[None])
    probs = np.asarray(jax.nn.softmax(logits[0], -1))
    ids = full[CONTEXT:]
    for t in (0, 3, 40):  # position 0 is predicted from the context
        assert data["predictions"]["prob"][t] == pytest.approx(
            probs[CONTEXT + t - 1][ids[t]], abs=1e-5
        )
    html = d["inspect"][1]
    assert "step 4, temperature 0.8" in html and "step 4, temperature 1<" in html  # samples
    assert html.index("def g(y)") < html.index("step 8, temperature 0.8")  # by step


# -- bad input: one line, exit 2, nothing written ------------------------------------------
@pytest.mark.parametrize(
    "make, argv, needle",
    [
        ("empty_dir", ["--workdir", "{empty}"], "no checkpoints"),
        ("text", ["--text", "{file}"], "3 char(s) not in the vocab"),
        ("", ["--text", "{file}"], "is empty"),
        ("", ["--text", "{missing}"], "No such file"),
        ("text", ["--text", "{file}", "--split", "val"], "not both"),
        ("", ["--out", "{file}/sub"], "is not a directory"),
        ("", ["--workdir", "{adding}", "--split", "test"], "inspected on its eval examples"),
        ("", ["--max_chars", "1"], "--max_chars"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(lm, adding, tmp_path, capsys, make, argv, needle):
    f = tmp_path / "in.txt"
    f.write_text("x = '\u20ac\u00df\u2603'\n" if make == "text" else "")
    (tmp_path / "empty").mkdir()
    subs = {"{empty}": str(tmp_path / "empty"), "{file}": str(f), "{adding}": adding}
    subs["{missing}"] = str(tmp_path / "nope.txt")
    argv = [next((a.replace(k, v) for k, v in subs.items() if k in a), a) for a in argv]
    if "--workdir" not in argv:
        argv = ["--workdir", lm, *argv]
    wd = argv[argv.index("--workdir") + 1]
    before = snapshot(wd)
    code, out, err = run(capsys, "inspect", *argv)
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1, err
    assert snapshot(wd) == before and not os.path.exists(os.path.join(wd, "inspect"))
    if needle.startswith("3 char"):
        assert all(repr(c) in err for c in "\u20ac\u00df\u2603")  # each one listed
