"""The cuDNN engine (``seqlab.recurrence.cudnn``) on CPU: seqlab's LSTM parameters packed
into cuDNN's flat weight vector and run by ``jax.experimental.rnn.lstm_ref`` (the reference
the module ships, reading the vector with cuDNN's layout) agree with seqlab's scan engine --
outputs, final (c, h), gradients w.r.t. parameters, inputs and initial carries -- for 1 and 2
layers, one and both directions, with lengths; and where cuDNN cannot run, one log line and
the fast engine. On a GPU the same code calls ``jax.experimental.rnn.lstm`` instead
(``cudnn.lstm_fn``); bench/device_check.py compares the two there."""

from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.experimental import rnn

from seqlab.config import base_config
from seqlab.errors import ConfigError
from seqlab.recurrence import Recurrent, RNNStack, cudnn, fast
from seqlab.recurrence.layers import Bidirectional, resolve_backend
from seqlab.run.validate import validate

F, H, B, T = 3, 4, 3, 5
LENGTHS = [5, 2, 0]  # a full row, a short one and an empty one


@pytest.fixture(autouse=True)
def fresh_log():
    cudnn._said.clear()
    fast._said.clear()
    yield


@pytest.fixture
def gpu_ok(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lets backend=cudnn resolve on CPU: the engine then runs ``rnn.lstm_ref``."""
    monkeypatch.setattr(cudnn, "platform_unavailable", lambda: None)


def make_stack(
    layers: int, bidir: bool, backend: str, dtype: Any, in_features: int = F, **kw: Any
) -> RNNStack:
    """An LSTM stack with every parameter (biases too) drawn from N(0, 0.5^2); built from
    shapes only (no initializer runs)."""
    kw = {"num_layers": layers, "bidirectional": bidir, "backend": backend, **kw}
    s = nnx.eval_shape(
        lambda: RNNStack.build(
            in_features, cell="lstm", hidden_size=H, param_dtype=dtype, rngs=nnx.Rngs(0), **kw
        )
    )
    rng = np.random.default_rng(1)
    draw = lambda a: jnp.asarray(0.5 * rng.standard_normal(a.shape), dtype)
    nnx.update(s, jax.tree.map(draw, nnx.state(s, nnx.Param)))
    return s


def data(s: RNNStack, dtype: Any, seed: int = 2) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((B, T, F)), dtype)
    carry = jax.tree.map(
        lambda a: jnp.asarray(0.5 * rng.standard_normal(a.shape), dtype), s.initial_carry(B)
    )
    g_y = jnp.asarray(rng.standard_normal((B, T, s.output_size)), dtype)
    return x, carry, g_y


def value_and_grads(run, s: RNNStack, x, carry, g_y) -> tuple[Any, Any]:
    """((y, final carries), d loss / d (params, x, initial carries)) with cotangents on
    every output and every final carry."""
    graphdef, params, rest = nnx.split(s, nnx.Param, ...)

    def loss(p, x, carry):
        y, c = run(nnx.merge(graphdef, p, rest), x, carry)
        total = jnp.sum(g_y * jnp.sin(y)) + sum(jnp.sum(jnp.cos(a)) for a in jax.tree.leaves(c))
        return total, (y, c)

    (_, out), grads = jax.jit(jax.value_and_grad(loss, (0, 1, 2), has_aux=True))(params, x, carry)
    return out, grads


def assert_close(a: Any, b: Any, rtol: float, atol: float) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert u.dtype == v.dtype
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=rtol, atol=atol)


def stack_params(s: RNNStack) -> list[list[dict[str, Any]]]:
    cells = [
        (lay.forward.cell, lay.backward.cell) if s.bidirectional else (lay.cell,)
        for lay in s.layers
    ]
    return [[cudnn.lstm_params(c) for c in layer] for layer in cells]


def test_pack_is_cudnns_layout_and_unpack_inverts_it() -> None:
    s = make_stack(2, True, "scan", jnp.float32)
    layers = stack_params(s)
    w = cudnn.pack(layers)
    assert w.shape == (rnn.get_num_params_in_lstm(F, H, 2, True),)
    w_ih, w_hh, b_ih, b_hh = rnn.unpack_lstm_weights(w, F, H, 2, True)
    for i, p in enumerate(p for layer in layers for p in layer):  # fwd 0, rev 0, fwd 1, rev 1
        np.testing.assert_array_equal(w_ih[i], p["w_x"].T)
        np.testing.assert_array_equal(w_hh[i], p["w_h"].T)
        np.testing.assert_array_equal(b_ih[i], p["b"])
        np.testing.assert_array_equal(b_hh[i], 0.0)
    assert_close(cudnn.unpack(w, F, H, 2, True), layers, 0, 0)


def test_unpack_folds_both_biases_into_seqlabs_one() -> None:
    """Any cuDNN vector (both biases non-zero) -> seqlab params -> the same LSTM."""
    w = rnn.init_lstm_weight(jax.random.key(0), F, H, 2, False)
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((B, T, F)), jnp.float32)
    zeros = jnp.zeros((2, B, H))
    n = jnp.full((B,), T, jnp.int32)
    y0, h0, c0 = cudnn.lstm_reference(x, zeros, zeros, w, n, F, H, 2, 0.0, False)
    y1, carries = cudnn.run_lstm(cudnn.unpack(w, F, H, 2, False), x, [(zeros[0], zeros[0])] * 2)
    np.testing.assert_allclose(y1, y0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jnp.stack([c for c, _ in carries]), c0, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(jnp.stack([h for _, h in carries]), h0, rtol=1e-6, atol=1e-6)


def with_engine(s: Any, engine: str) -> Any:
    """A copy of ``s`` whose layers run ``engine`` (as ``seqlab_bench.peers.set_backend``
    does): backend=cudnn's own path on CPU, where it would resolve to fast."""
    s = nnx.clone(s)
    for _, m in nnx.iter_graph(s):
        if isinstance(m, Recurrent):
            m.engine = engine
    return s


@pytest.mark.parametrize(("bidir", "lengths"), [(False, None), (True, LENGTHS)])
@pytest.mark.slow
def test_matches_the_scan_engine(bidir: bool, lengths: Any) -> None:
    """Two layers, float32: the stack in ONE call on the packed vector (``run_lstm``), and
    RNNStack on the cudnn engine (one call per layer: what a GPU run does), against
    seqlab's autodiff engine with the same parameters."""
    s = make_stack(2, bidir, "scan", jnp.float32)
    x, carry, g_y = data(s, jnp.float32)
    n = None if lengths is None else jnp.asarray(lengths)

    def stack(m, x, c):
        y, aux = m(x, lengths=n, initial_carry=c)
        return y, aux["final_carry"]

    def one_call(m, x, c):
        return cudnn.run_lstm(stack_params(m), x, c, n)

    ref = value_and_grads(stack, s, x, carry, g_y)
    tol = {"rtol": 2e-5, "atol": 2e-6}
    assert_close(value_and_grads(one_call, s, x, carry, g_y), ref, **tol)
    assert_close(value_and_grads(stack, with_engine(s, "cudnn"), x, carry, g_y), ref, **tol)
    if lengths is not None:  # padded steps emit exact zeros; the empty row keeps its carry
        mask = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
        assert np.all(np.asarray(ref[0][0])[~mask] == 0.0)


def test_reverse_layer_sum_merge_and_token_ids() -> None:
    """A lone reverse layer reads each valid prefix backwards; a bidirectional layer can sum
    its directions; token ids are one-hot rows. Forward values against the scan engine."""
    V = 7
    tokens = jnp.asarray(np.random.default_rng(4).integers(0, V, (B, T)), jnp.int32)
    n = jnp.asarray(LENGTHS)
    s = make_stack(1, True, "scan", jnp.float32, in_features=V, merge="sum")
    lone = Recurrent(s.layers[0].backward.cell, reverse=True)

    @jax.jit
    def run(tokens: Any) -> dict[str, Any]:
        outs = {}
        for engine in ("cudnn", "scan"):
            y, aux = with_engine(s, engine)(tokens, lengths=n)
            outs[engine] = (y, aux["final_carry"], with_engine(lone, engine)(tokens, lengths=n))
        return outs

    outs = run(tokens)
    assert_close(outs["cudnn"], outs["scan"], rtol=2e-5, atol=2e-6)


def test_without_a_gpu_it_says_why_once_and_runs_fast(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        s = make_stack(2, True, "cudnn", jnp.float32)
    engines = [m.engine for _, m in nnx.iter_graph(s) if isinstance(m, Recurrent)]
    assert engines == ["fast"] * 4
    lines = [r.getMessage() for r in caplog.records if "backend=cudnn" in r.getMessage()]
    assert lines == [
        f"backend=cudnn: cuDNN needs a CUDA GPU and JAX runs on {jax.default_backend()}; "
        "running backend=fast"
    ]


@pytest.mark.parametrize(
    ("cell", "kw", "needle", "engine"),
    [
        ("gru", {}, "cuDNN runs the LSTM only, not GRUCell", "fast"),
        ("lstm", {"dtype": jnp.bfloat16}, "compute dtype bfloat16", "fast"),
        ("lstm", {"param_dtype": jnp.bfloat16}, "parameters bfloat16", "scan"),
    ],
)
def test_what_cudnn_cannot_run_falls_back_to_fast(
    gpu_ok: None, caplog: pytest.LogCaptureFixture, cell: str, kw: dict, needle: str, engine: str
) -> None:
    from seqlab.cells import make_cell

    c = nnx.eval_shape(lambda: make_cell(cell, F, H, rngs=nnx.Rngs(0), **kw))
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        assert resolve_backend(c, "cudnn") == engine
    lines = [r.getMessage() for r in caplog.records if "backend=cudnn" in r.getMessage()]
    assert len(lines) == 1 and needle in lines[0] and lines[0].endswith("running backend=fast")


@pytest.mark.slow
def test_calls_cudnn_cannot_run_fall_back_per_call(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe's perturbation, and vmap (num_seeds > 1), which the real rnn.lstm refuses
    at trace time (it has no batching rule): the fast engine's values, each said once."""
    ref = make_stack(1, True, "fast", jnp.float32)
    s = with_engine(ref, "cudnn")
    x, carry, _ = data(s, jnp.float32)
    layer, ref_layer = s.layers[0], ref.layers[0]
    assert isinstance(layer, Bidirectional)
    eps = (0.1 * jnp.ones((B, T, H)), -0.1 * jnp.ones((B, T, H)))
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        got = layer(x, initial_carry=carry[0], h_perturb=eps)
        assert_close(got, ref_layer(x, initial_carry=carry[0], h_perturb=eps), 0, 0)

        monkeypatch.setattr(cudnn, "lstm_fn", lambda: rnn.lstm)  # the GPU's op
        xs = jnp.stack([x, 2 * x])
        got = jax.vmap(lambda x: layer(x, initial_carry=carry[0]))(xs)
        assert_close(got, jax.vmap(lambda x: ref_layer(x, initial_carry=carry[0]))(xs), 0, 0)
    lines = [r.getMessage() for r in caplog.records if "backend=cudnn" in r.getMessage()]
    assert len(lines) == 2, lines
    assert "probe perturbs h" in lines[0] and "Batching rule" in lines[1]


def test_config_takes_cudnn() -> None:
    c = base_config()
    c.task.name = "adding"
    c.model.backend = "cudnn"
    validate(c)
    c.model.backend = "cudnnn"
    with pytest.raises(ConfigError, match="did you mean 'cudnn'"):
        validate(c)
