"""The fast engine (``seqlab.recurrence.fast.run_cell_fast``, driven by each cell's own
kernels) against the autodiff engine (``seqlab.recurrence.run_cell``) in float64: outputs,
final carry and gradients w.r.t. params, projected inputs, initial carry and h_perturb, for
every cell, with lengths, reverse, remat, vmap; and when it falls back, said once."""

from __future__ import annotations

import logging
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.cells import CELLS, Cell, LSTMCell, gru, lstm, make_cell, mgu, rnn  # noqa: F401
from seqlab.recurrence import Recurrent, RNNStack, run_cell
from seqlab.recurrence.fast import _said, run_cell_fast

F, H, B, T = 4, 5, 3, 6
KINDS = tuple(k for k, (cls, _) in CELLS.items() if cls.has_fast_kernels())  # the nonlinear
# (reverse, lengths, h_perturb, remat): lengths include an empty row and a full one.
CASES = {
    "plain": (False, None, False, False),
    "reverse": (True, None, True, False),
    "lengths_perturb": (False, [6, 3, 0], True, False),
    "reverse_lengths_perturb": (True, [6, 4, 1], True, False),
    "remat_lengths": (False, [5, 6, 2], True, True),
    "remat_reverse": (True, None, False, True),
}


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def cell64(kind: str, seed: int = 0) -> Any:
    cell = make_cell(kind, F, H, rngs=nnx.Rngs(seed), param_dtype=jnp.float64, init="char_rnn")
    state = nnx.state(cell, nnx.Param)
    rng = np.random.default_rng(seed)
    leaves, treedef = jax.tree.flatten(state)
    new = [jnp.asarray(0.6 * rng.standard_normal(v.shape)) for v in leaves]
    if kind == "irnn":  # keep relu pre-activations away from the kink
        new = [jnp.abs(v) + 0.3 if v.ndim == 1 else v for v in new]
    nnx.update(cell, jax.tree.unflatten(treedef, new))
    return cell


def inputs(cell: Any, seed: int, perturb: bool) -> tuple[Any, ...]:
    rng = np.random.default_rng(seed)
    xp = jnp.asarray(rng.standard_normal((B, T, cell.num_gates * H)))
    carry = jax.tree.map(
        lambda a: jnp.asarray(0.5 * rng.standard_normal(a.shape)), cell.initial_carry(B)
    )
    eps = jnp.asarray(0.2 * rng.standard_normal((B, T, H))) if perturb else None
    g_y = jnp.asarray(rng.standard_normal((B, T, H)))
    return xp, carry, eps, g_y


def loss_and_grads(fn, cell, xp, carry, eps, g_y, **kw) -> tuple[Any, Any]:
    """(outputs, final carry) and d loss / d (params, xp, carry, eps) for a loss with
    non-trivial cotangents on every output and on the final carry."""
    graphdef, params, rest = nnx.split(cell, nnx.Param, ...)

    def loss(p, xp, carry, eps):
        ys, c = fn(nnx.merge(graphdef, p, rest), xp, carry, h_perturb=eps, **kw)
        total = jnp.sum(g_y * jnp.sin(ys)) + sum(jnp.sum(jnp.cos(a)) for a in jax.tree.leaves(c))
        return total, (ys, c)

    grad = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2, 3), has_aux=True))
    (_, out), grads = grad(params, xp, carry, eps)
    return out, grads


def assert_close(a: Any, b: Any, rtol: float = 1e-10, atol: float = 1e-12) -> None:
    assert jax.tree.structure(a) == jax.tree.structure(b)
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert x.dtype == y.dtype
        np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=rtol, atol=atol)


# Every cell on the cases that exercise the most at once; the LSTM on all of them.
CORE = ("lengths_perturb", "reverse_lengths_perturb", "remat_lengths")
PAIRS = [(k, c) for k in KINDS for c in CORE] + [("lstm", c) for c in CASES if c not in CORE]


@pytest.mark.parametrize(("kind", "case"), PAIRS)
@pytest.mark.slow
def test_matches_run_cell(kind: str, case: str) -> None:
    reverse, lengths, perturb, remat = CASES[case]
    cell = cell64(kind, seed=KINDS.index(kind))
    assert type(cell).has_fast_kernels()  # the cell's kernels, not the fallback
    xp, carry, eps, g_y = inputs(cell, 1, perturb)
    kw = {
        "lengths": None if lengths is None else jnp.asarray(lengths),
        "reverse": reverse,
        "remat": remat,
    }
    out_ref, g_ref = loss_and_grads(run_cell, cell, xp, carry, eps, g_y, **kw)
    out, g = loss_and_grads(run_cell_fast, cell, xp, carry, eps, g_y, **kw)
    assert_close(out, out_ref)
    assert_close(g, g_ref)
    if lengths is not None:  # padded steps emit exact zeros, as run_cell's do
        mask = np.arange(T)[None, :] < np.asarray(lengths)[:, None]
        assert np.all(np.asarray(out[0])[~mask] == 0.0)


def test_unroll_is_only_a_schedule() -> None:
    cell = cell64("lstm", seed=3)
    xp, carry, eps, g_y = inputs(cell, 4, True)
    kw = {"lengths": jnp.asarray([6, 2, 5])}
    base = loss_and_grads(run_cell_fast, cell, xp, carry, eps, g_y, **kw)
    unrolled = loss_and_grads(run_cell_fast, cell, xp, carry, eps, g_y, unroll=4, **kw)
    assert_close(unrolled, base)


def test_float32_agrees_with_run_cell() -> None:
    with jax.enable_x64(False):
        cell = make_cell("lstm", F, H, rngs=nnx.Rngs(5))
        xp, carry, _, g_y = inputs(cell, 6, False)
        xp, carry = xp.astype(jnp.float32), jax.tree.map(lambda a: a.astype(jnp.float32), carry)
        g_y = g_y.astype(jnp.float32)
        out_ref, g_ref = loss_and_grads(run_cell, cell, xp, carry, None, g_y, reverse=True)
        out, g = loss_and_grads(run_cell_fast, cell, xp, carry, None, g_y, reverse=True)
        assert out[0].dtype == jnp.float32
        assert_close(out, out_ref, rtol=1e-5, atol=1e-6)
        assert_close(g, g_ref, rtol=1e-4, atol=1e-5)


def test_each_cell_owns_its_kernels() -> None:
    kinds = {k: cell64(k).kernels() for k in KINDS}
    assert kinds["lstm"] is lstm.KERNELS and kinds["mgu"] is mgu.KERNELS
    assert kinds["gru"] is gru.RESET_AFTER and kinds["gru_reset_before"] is gru.RESET_BEFORE
    assert kinds["rnn"] is rnn.rnn_kernels("tanh") and kinds["irnn"] is rnn.rnn_kernels("relu")


@pytest.mark.parametrize("kind", KINDS)
def test_step_is_the_forward_kernel(kind: str) -> None:
    """One statement of the math: ``step`` (decoding, the autodiff engine) runs the kernel."""
    cell = cell64(kind, seed=2)
    xp, carry, _, _ = inputs(cell, 3, False)
    k = cell.kernels()
    params = cell.recurrent_params()
    new, h, _ = k.fwd(k.prep(params), carry, xp[:, 0])
    assert_close(cell.step(params, carry, xp[:, 0]), (new, h), rtol=0, atol=0)


class PeepholeLSTM(LSTMCell):
    """A subclass that changes ``step``: run_cell_fast must not use its LSTM kernels."""

    def step(self, params, carry, xp):
        (c, h), _ = super().step(params, carry, xp)
        h = h + 0.1 * jnp.tanh(c)
        return (c, h), h


@pytest.mark.parametrize("variant", ["overridden_step", "bfloat16_params", "mixed_dtypes"])
@pytest.mark.slow
def test_falls_back_to_run_cell(variant: str) -> None:
    if variant == "overridden_step":
        cell = PeepholeLSTM(F, H, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
        assert not PeepholeLSTM.has_fast_kernels()
        dtype = jnp.float64
    else:
        dtype = jnp.bfloat16 if variant == "bfloat16_params" else jnp.float64
        cell = make_cell("gru", F, H, rngs=nnx.Rngs(0), param_dtype=dtype, init="char_rnn")
    xp, carry, eps, g_y = inputs(cell, 7, True)
    xp = xp.astype(jnp.float32 if variant == "mixed_dtypes" else dtype)
    carry = jax.tree.map(lambda a: a.astype(dtype), carry)
    kw = {"lengths": jnp.asarray([6, 1, 4]), "reverse": True}
    ref = loss_and_grads(run_cell, cell, xp, carry, eps, g_y, **kw)
    got = loss_and_grads(run_cell_fast, cell, xp, carry, eps, g_y, **kw)
    assert_close(got, ref, rtol=0, atol=0)  # the very same computation


@pytest.mark.slow
def test_vmap_over_params() -> None:
    """Replicas (num_seeds > 1) vmap the training step over stacked parameters."""
    cell = cell64("gru", seed=8)
    xp, carry, _, g_y = inputs(cell, 9, False)
    graphdef, params, rest = nnx.split(cell, nnx.Param, ...)
    stacked = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a, -a]), params)

    def grads(fn):
        def loss(p):
            ys, _ = fn(nnx.merge(graphdef, p, rest), xp, carry, lengths=jnp.asarray([6, 5, 2]))
            return jnp.sum(g_y * ys)

        return jax.jit(jax.vmap(jax.grad(loss)))(stacked)

    assert_close(grads(run_cell_fast), grads(run_cell))


@pytest.mark.slow
def test_rnn_stack_backends_agree() -> None:
    """``backend`` on a bidirectional two-layer stack changes the engine, not the numbers."""

    def run(backend: str) -> Any:
        stack = RNNStack(
            "lstm",
            F,
            H,
            num_layers=2,
            bidirectional=True,
            backend=backend,
            cell_kwargs={"param_dtype": jnp.float64, "init": "char_rnn"},
            rngs=nnx.Rngs(10),
        )
        assert {lay.forward.engine for lay in stack.layers} == {backend}
        graphdef, params, rest = nnx.split(stack, nnx.Param, ...)
        x = jnp.asarray(np.random.default_rng(11).standard_normal((B, T, F)))
        lengths = jnp.asarray([6, 3, 5])

        def loss(p):
            y, aux = nnx.merge(graphdef, p, rest)(x, lengths=lengths)
            return jnp.sum(jnp.sin(y)) + sum(jnp.sum(a) for a in jax.tree.leaves(aux))

        return jax.jit(jax.value_and_grad(loss))(params)

    assert_close(run("fast"), run("scan"))


class StepOnly(Cell):
    """A new cell written as ``step`` alone (no kernels): a leaky tanh RNN."""

    def step(self, params, carry, xp):
        h = 0.5 * carry + 0.5 * jnp.tanh(xp + carry @ params["w_h"])
        return h, h


def test_cell_without_kernels_runs_scan_and_says_so_once(caplog: pytest.LogCaptureFixture) -> None:
    _said.clear()
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        layers = [Recurrent(StepOnly(F, H, rngs=nnx.Rngs(i)), backend="fast") for i in range(3)]
    assert [lay.engine for lay in layers] == ["scan"] * 3
    said = [r.getMessage() for r in caplog.records if "StepOnly" in r.getMessage()]
    assert len(said) == 1 and "backend=fast" in said[0] and "autodiff scan" in said[0]
    x = jnp.asarray(np.random.default_rng(0).standard_normal((B, T, F)))
    y_fast, _ = layers[0](x)
    y_scan, _ = Recurrent(layers[0].cell, backend="scan")(x)
    assert_close(y_fast, y_scan, rtol=0, atol=0)
