"""The exact log-space probe (seqlab.run.logprobe): equal to plain autodiff where that does not
underflow (float64, every layer kind), exact where it does (T = 10,000), and its scaled
arithmetic at the ends of the float range."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.cells import CELLS
from seqlab.errors import RunError
from seqlab.models import LanguageModel, SequenceClassifier
from seqlab.recurrence import Recurrent
from seqlab.run.logprobe import add, log10_grad_norms, scale, split, unit
from seqlab.run.probe import autodiff_grad_norms, summarize_curve

F64 = jnp.float64


class LastStepTask:
    """Loss = sum over examples of the (linear) readout at each example's last step."""

    def loss(self, model, batch, *, carry=None, rng=None):
        out, _ = model(batch["inputs"], lengths=batch.get("lengths"))
        total = jnp.sum(out)
        return total / out.shape[0], ({"loss": (total, out.shape[0])}, carry)


class NextTokenTask:
    """A language model's summed cross-entropy: a direct gradient at every step."""

    def loss(self, model, batch, *, carry=None, rng=None):
        logits, _ = model(batch["inputs"], lengths=batch.get("lengths"))
        logp = jax.nn.log_softmax(logits)
        nll = -jnp.take_along_axis(logp, batch["targets"][..., None], -1)[..., 0]
        if "lengths" in batch:
            nll = jnp.where(jnp.arange(nll.shape[1]) < batch["lengths"][:, None], nll, 0)
        total = jnp.sum(nll)
        return total, ({"loss": (total, nll.size)}, carry)


def lm_batch(T: int, B: int = 3, V: int = 7, lengths: bool = True) -> dict:
    toks = jax.random.randint(jax.random.key(1), (B, T + 1), 0, V)
    batch = {"inputs": toks[:, :-1], "targets": toks[:, 1:]}
    if lengths:
        batch["lengths"] = jnp.array([T - 1, T - 3, 2])  # step T: padding in every example
    return batch


def assert_agrees(model, task, batch, T, rtol=1e-5):
    """log10 g from the scaled recursion == log10 of plain autodiff's g (0 <-> -inf)."""
    want = np.asarray(jax.jit(lambda: autodiff_grad_norms(model, task, batch, T))())
    got = np.asarray(jax.jit(lambda: log10_grad_norms(model, task, batch))())
    assert got.shape == want.shape
    assert np.array_equal(np.isneginf(got), want == 0)  # padded in every example
    np.testing.assert_allclose(10**got, want, rtol=rtol)
    return got


@pytest.mark.parametrize("cell", ["rnn", "lstm", "gru"])
@pytest.mark.slow
def test_equals_autodiff_in_float64(cell):
    """1 and 2 layers, with lengths (padded steps: g = 0 exactly) and without, a direct
    gradient at every step (LM) and at the last step only (many-to-one)."""
    with jax.enable_x64(True):
        T = 9
        lm = LanguageModel(
            7, cell=cell, hidden_size=5, num_layers=2, param_dtype=F64, rngs=nnx.Rngs(0)
        )
        got = assert_agrees(lm, NextTokenTask(), lm_batch(T), T)
        assert np.isneginf(got[:, T - 1]).all() and np.isfinite(got[:, : T - 1]).all()
        clf = SequenceClassifier(
            1, num_features=2, cell=cell, hidden_size=5, param_dtype=F64, rngs=nnx.Rngs(1)
        )
        x = jax.random.normal(jax.random.key(2), (3, T, 2), F64)
        assert_agrees(clf, LastStepTask(), {"inputs": x}, T)


class FinalCarryTask:
    """Loss read from the stack's final carry (``aux['final_carry']``), not its outputs."""

    def loss(self, model, batch, *, carry=None, rng=None):
        _, aux = model(batch["inputs"], lengths=batch.get("lengths"))
        total = jnp.sum(jnp.sin(model.rnn.top_hidden(aux["final_carry"])))
        return total, ({"loss": (total, 1)}, carry)


@pytest.mark.parametrize(("merge", "readout"), [("concat", "last"), ("sum", "mean")])
@pytest.mark.slow
def test_equals_autodiff_bidirectional(merge, readout):
    """Two bidirectional layers: the lower layer's g takes both directions of the upper one
    (g is the forward direction's); a loss on the outputs, and one on the final carries."""
    with jax.enable_x64(True):
        T = 8
        clf = SequenceClassifier(
            1,
            num_features=2,
            cell="gru",
            hidden_size=4,
            num_layers=2,
            bidirectional=True,
            merge=merge,
            readout=readout,
            param_dtype=F64,
            rngs=nnx.Rngs(0),
        )
        x = jax.random.normal(jax.random.key(2), (3, T, 2), F64)
        batch = {"inputs": x, "lengths": jnp.array([T, 5, 1])}
        assert_agrees(clf, LastStepTask(), batch, T)
        assert_agrees(clf, FinalCarryTask(), batch, T)


LINEAR = [c for c in ("lru", "mingru", "minlstm", "rglru") if c in CELLS]


@pytest.mark.skipif(not LINEAR, reason="no linear cells registered")
@pytest.mark.slow
def test_equals_autodiff_linear_cells_and_residual_blocks():
    """Every linear cell (the LRU's state is complex: g is the norm of dL/dRe h and dL/dIm h
    together), bare and in the pre-norm residual block, and the block around a nonlinear
    cell; 2 layers, with lengths."""
    cases = [(c, ("none", "residual")[i % 2]) for i, c in enumerate(LINEAR)]
    cases += [("lstm", "residual")]
    with jax.enable_x64(True):
        T = 6
        for cell, block in cases:
            lm = LanguageModel(
                7,
                cell=cell,
                hidden_size=4,
                num_layers=2,
                block=block,
                param_dtype=F64,
                rngs=nnx.Rngs(0),
            )
            assert_agrees(lm, NextTokenTask(), lm_batch(T), T)


def rotation_rnn(rho: float, H: int = 8) -> SequenceClassifier:
    """h_t = W h_{t-1} + U x_t with W = rho Q (Q orthogonal): g_t = rho^(T-t) g_T exactly."""
    model = SequenceClassifier(
        1,
        num_features=2,
        cell="rnn",
        hidden_size=H,
        cell_kwargs={"activation": "identity"},
        rngs=nnx.Rngs(0),
    )
    q, _ = np.linalg.qr(np.random.default_rng(0).normal(size=(H, H)))
    model.rnn.layers[0].cell.w_h[...] = jnp.asarray(rho * q, jnp.float32)
    return model


@pytest.mark.parametrize("rho", [0.9, 1.05])
def test_linear_recurrence_at_T_10000_in_float32(rho):
    """The issue's test: log10(g_1/g_T) = (T - 1) log10(rho) within 1e-3 relative (measured:
    ~1e-7), far outside float32's range either way (0.9^9999 = 1e-458, 1.05^9999 = 1e212);
    every step of distance multiplies g by rho."""
    T = 10_000
    model = rotation_rnn(rho)
    batch = {"inputs": jax.random.normal(jax.random.key(1), (2, T, 2))}
    lg = np.asarray(jax.jit(lambda b: log10_grad_norms(model, LastStepTask(), b))(batch))[0]
    s = summarize_curve(lg)
    expected = (T - 1) * np.log10(rho)
    assert s["log10_ratio"] == pytest.approx(expected, rel=1e-3)
    assert s["log10_ratio"] == pytest.approx(expected, rel=1e-5)  # what it does
    np.testing.assert_allclose(np.diff(lg), -np.log10(rho), atol=1e-4)
    assert s["decay_rate"] == pytest.approx(-np.log(rho), rel=1e-5)


def test_autodiff_underflows_where_the_log_probe_does_not():
    """Why the probe is in logs: at T = 1000, 0.9^999 = 1e-46 is 0 in float32."""
    T = 1000
    model = rotation_rnn(0.9)
    batch = {"inputs": jax.random.normal(jax.random.key(1), (2, T, 2))}
    plain = np.asarray(jax.jit(lambda: autodiff_grad_norms(model, LastStepTask(), batch, T))())
    lg = np.asarray(jax.jit(lambda: log10_grad_norms(model, LastStepTask(), batch))())[0]
    plain = plain[0]
    assert plain[0] == 0.0 and plain[-1] > 0
    assert lg[0] - lg[-1] == pytest.approx(999 * np.log10(0.9), rel=1e-5)
    t = 500  # where both are in range, they agree
    assert 10 ** lg[t] == pytest.approx(plain[t], rel=1e-4)


def test_scaled_arithmetic_at_the_ends_of_the_range():
    """unit/scale/add/split in float32 on values whose plain form is 0 or inf there."""
    v = jnp.array([[3e-30, 4e-30], [0.0, 0.0], [3e30, 4e30]], jnp.float32)
    ln, u = unit(v)  # squares of 1e-30 and 1e30 are outside float32
    np.testing.assert_allclose(ln, [np.log(5e-30), -np.inf, np.log(5e30)], rtol=1e-6)
    np.testing.assert_allclose(u, [[0.6, 0.8], [0, 0], [0.6, 0.8]], rtol=1e-6)
    z = unit(jnp.array([[3 + 4j]], jnp.complex64))  # |z|^2 = Re^2 + Im^2
    assert float(z[0][0]) == pytest.approx(np.log(5.0))
    a = scale(jnp.array([[1.0, 0.0]]), jnp.array([-1000.0]))  # e^-1000 (1, 0)
    b = scale(jnp.array([[0.0, 1.0]]), jnp.array([-1000.0 + np.log(2)]))  # e^-1000 (0, 2)
    ls, us = add(a, b)
    assert float(ls[0]) == pytest.approx(-1000 + 0.5 * np.log(5), abs=1e-4)
    # (a float32 log near -1000 is exact to ~6e-5, so is the weight exp(log_b - log_a))
    np.testing.assert_allclose(us, [[1 / np.sqrt(5), 2 / np.sqrt(5)]], rtol=1e-4)
    far = add(a, scale(jnp.array([[0.0, 1.0]]), jnp.array([-5000.0])))  # e^-4000 below
    np.testing.assert_allclose(far[0], [-1000.0]) and np.testing.assert_allclose(far[1], a[1])
    k, f = split(jnp.array([-1053.4, 2.25, -np.inf], jnp.float32))
    assert k.tolist() == [-1054, 2, 0] and f[1] == 0.25 and f[2] == -np.inf
    assert float(f[0]) == pytest.approx(0.6, abs=1e-4)


@pytest.mark.slow
def test_leaves_the_model_alone_and_says_what_it_cannot_probe():
    model = rotation_rnn(0.9)
    x = {"inputs": jnp.ones((2, 5, 2))}
    log10_grad_norms(model, LastStepTask(), x)
    assert isinstance(model.rnn.layers[0], Recurrent)  # the taps were on a copy

    class NoStack:
        def loss(self, model, batch, *, carry=None, rng=None):
            return 0.0, ({"loss": (jnp.float32(0), 1)}, carry)

    with pytest.raises(RunError, match="did not run the model's recurrent stack"):
        log10_grad_norms(model, NoStack(), x)
    with pytest.raises(RunError, match="has no `rnn` stack"):
        log10_grad_norms(nnx.Linear(2, 2, rngs=nnx.Rngs(0)), LastStepTask(), x)


@pytest.mark.slow
def test_keep_gate_initializations_set_the_memory_horizon() -> None:
    """At initialization a default GRU's gradient decays faster with distance than a vanilla
    RNN's (its update gate at ~0.5 halves the carried state each step); a carry bias or
    chrono initialization (Tallec and Ollivier 2018) makes it decay far slower."""

    from seqlab.models.build import build_model
    from seqlab.run.logprobe import log10_grad_norms
    from seqlab.tasks import make_task, task_config

    def log10_ratio(cell: str, **model: object) -> float:
        c = task_config("adding")
        c.data.seq_len, c.data.batch_size, c.model.hidden_size, c.model.cell = 100, 8, 32, cell
        for k, v in model.items():
            c.model[k] = v
        task = make_task(c)
        m = build_model(c.model, task.spec, nnx.Rngs(params=0))
        lg = np.asarray(log10_grad_norms(m, task, jax.tree.map(jnp.asarray, task.train_batch(0))))
        return float(lg[0, 0] - lg[0, -1])

    rnn, gru = log10_ratio("rnn"), log10_ratio("gru")
    carry = log10_ratio("gru", carry_bias=2.0)
    chrono = log10_ratio("gru", init="chrono", chrono_max_len=100)
    assert gru < rnn < -4  # both vanish; the default GRU faster (the measurement)
    assert carry > rnn + 3 and chrono > carry  # orders of magnitude less decay over 100 steps
