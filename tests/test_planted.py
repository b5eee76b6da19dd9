"""Tests that notice one-line bugs the rest of the suite let through (issue 22): every
dropout site drawing its own key, the parallel engine's reverse flipping its inputs, the
chrono initialization's bounds, and the memory estimate's split of the batch over devices.
Each was checked by planting the bug and seeing the test fail."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.cells import make_cell
from seqlab.cells.base import chrono_bias
from seqlab.models import LanguageModel, Seq2Seq, SequenceClassifier
from seqlab.recurrence import Bidirectional, Recurrent, RNNStack
from seqlab.run import memory
from seqlab.tasks import ModelSpec, task_config
from tests.compile_flags import xla_flags

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# -- dropout: one key per site, per layer, per step ----------------------------------------
@pytest.fixture
def dropout_masks(monkeypatch):
    """Records the zero pattern of every nnx.Dropout call (run eagerly), in call order."""
    masks: list[np.ndarray] = []
    original = nnx.Dropout.__call__

    def record(self, x, *args, **kw):
        y = original(self, x, *args, **kw)
        masks.append(np.asarray(y) == 0)
        return y

    monkeypatch.setattr(nnx.Dropout, "__call__", record)
    return masks


def _assert_all_differ(masks: list[np.ndarray]) -> None:
    assert len(masks) >= 2
    for i in range(len(masks)):
        assert 0.2 < masks[i].mean() < 0.8  # dropout ran, at about its rate
        for j in range(i):
            same = masks[i].shape == masks[j].shape and np.array_equal(masks[i], masks[j])
            assert not same, f"dropout sites {j} and {i} drew the same mask"


H, V = 16, 7


@pytest.mark.slow
def test_every_lm_dropout_site_draws_its_own_key(dropout_masks) -> None:
    model = LanguageModel(V, cell="gru", hidden_size=H, num_layers=4, dropout=0.5, rngs=nnx.Rngs(0))
    tokens = jnp.asarray(np.random.default_rng(0).integers(0, V, (3, 11)))
    model(tokens, train=True, rng=jax.random.key(5))
    assert len(dropout_masks) == 4  # between layers 1-2, 2-3, 3-4, and after the top layer
    _assert_all_differ(dropout_masks)
    first = list(dropout_masks)
    dropout_masks.clear()  # another step's key: every site draws anew
    model(tokens, train=True, rng=jax.random.fold_in(jax.random.key(5), 1))
    _assert_all_differ(first + dropout_masks)
    dropout_masks.clear()  # the same key: the same masks (pure function of the key)
    model(tokens, train=True, rng=jax.random.key(5))
    for a, b in zip(first, dropout_masks, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_classifier_and_bidirectional_stack_sites_differ(dropout_masks) -> None:
    model = SequenceClassifier(
        4, num_features=3, cell="lstm", hidden_size=H, num_layers=3, dropout=0.5,
        bidirectional=True, rngs=nnx.Rngs(1),
    )  # fmt: skip
    x = jnp.asarray(np.random.default_rng(1).standard_normal((4, 9, 3)), jnp.float32)
    model(x, train=True, rng=jax.random.key(2))
    assert len(dropout_masks) == 2
    _assert_all_differ(dropout_masks)


@pytest.mark.slow
def test_seq2seq_encoder_decoder_and_output_sites_differ(dropout_masks) -> None:
    model = Seq2Seq(
        V, V, embed_dim=H, cell="gru", hidden_size=H, num_layers=2, dropout=0.5,
        rngs=nnx.Rngs(2),
    )  # fmt: skip
    rng = np.random.default_rng(2)
    src, tgt = (jnp.asarray(rng.integers(0, V, (3, 8))) for _ in range(2))
    model(src, tgt, train=True, rng=jax.random.key(3))
    assert len(dropout_masks) == 3  # encoder 1-2, decoder 1-2, output
    _assert_all_differ(dropout_masks)


# -- the parallel engine in reverse, without lengths (its own flip) -------------------------
LINEAR = ("lru", "mingru", "minlstm", "rglru")


@pytest.mark.slow
@pytest.mark.parametrize("kind", LINEAR)
def test_parallel_reverse_reads_inputs_backwards_on_every_linear_engine(kind: str) -> None:
    """Without lengths the parallel engine flips time itself (with lengths the layer does
    it): reverse == forward over the time-reversed input, on every engine, against the
    sequential scan, with a nonzero initial state and an output that depends on x."""
    with jax.enable_x64(True):
        cell = make_cell(kind, 3, 4, rngs=nnx.Rngs(0), param_dtype=jnp.float64)
        cell.b = nnx.Param(
            jnp.asarray(0.4 * np.random.default_rng(1).standard_normal(cell.b.shape))
        )
        rng = np.random.default_rng(2)
        xs = jnp.asarray(rng.standard_normal((2, 11, 3)))
        h0 = cell.initial_carry(2)
        h0 = h0 + jnp.asarray(0.3 + 0.4 * rng.random(h0.shape), h0.dtype)
        ref_y, ref_h = Recurrent(cell, backend="scan", reverse=True)(xs, initial_carry=h0)
        fwd_y, fwd_h = Recurrent(cell, backend="scan")(xs[:, ::-1], initial_carry=h0)
        np.testing.assert_allclose(np.asarray(ref_y), np.asarray(fwd_y)[:, ::-1], rtol=1e-10)
        np.testing.assert_allclose(np.asarray(ref_h), np.asarray(fwd_h), rtol=1e-10)
        for chunk in (0, 4):  # one associative scan; chunks, the last one padded
            layer = Recurrent(cell, backend="parallel", chunk_size=chunk, reverse=True)
            y, h = layer(xs, initial_carry=h0)  # no lengths: the engine flips time itself
            np.testing.assert_allclose(np.asarray(y), np.asarray(ref_y), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(np.asarray(h), np.asarray(ref_h), rtol=1e-9, atol=1e-12)
            # the probe's perturbation (added to b_t; log-space cells leave log space)
            width = cell.hidden(h0).shape[-1]
            eps = jnp.asarray(0.1 * rng.standard_normal((*ref_y.shape[:2], width)))
            want = Recurrent(cell, backend="scan", reverse=True)(
                xs, initial_carry=h0, h_perturb=eps
            )
            y, h = layer(xs, initial_carry=h0, h_perturb=eps)
            np.testing.assert_allclose(np.asarray(y), np.asarray(want[0]), rtol=1e-9, atol=1e-12)
            np.testing.assert_allclose(np.asarray(h), np.asarray(want[1]), rtol=1e-9, atol=1e-12)


def test_bidirectional_linear_stack_backward_direction_without_lengths() -> None:
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 7, 3)))
        out = {}
        for backend in ("scan", "parallel"):
            stack = RNNStack(
                "mingru", 3, 4, bidirectional=True, backend=backend, block="none", rngs=nnx.Rngs(4),
                cell_kwargs={"param_dtype": jnp.float64},
            )  # fmt: skip
            out[backend] = np.asarray(stack(x)[0])
        np.testing.assert_allclose(out["parallel"], out["scan"], rtol=1e-9, atol=1e-12)
        assert isinstance(stack.layers[0], Bidirectional)


# -- chrono initialization: log(U[1, T_max - 1]) ----------------------------------------------
@pytest.mark.parametrize("t_max", [3, 40, 1000])
def test_chrono_bias_is_log_uniform_between_its_bounds(t_max: int) -> None:
    """log(U[1, T_max - 1]): every bias in [0, log(T_max - 1)], and exp of them spread
    uniformly over the whole interval (quantiles), not over [0, T_max - 1] or [1, T_max]."""
    keep = np.asarray(chrono_bias(nnx.Rngs(7), 20_000, t_max, jnp.float32), np.float64)
    assert keep.min() >= 0.0, "chrono bias below log(1): the uniform's lower bound is gone"
    assert keep.max() <= np.log(t_max - 1) + 1e-5
    lo, hi = 1.0, t_max - 1.0
    q = np.array([0.001, 0.05, 0.25, 0.5, 0.75, 0.95, 0.999])
    np.testing.assert_allclose(np.quantile(np.exp(keep), q), lo + (hi - lo) * q, atol=0.02 * hi)


def gate_blocks(b: jax.Array, gates: int) -> list[np.ndarray]:
    return np.split(np.asarray(b), gates, axis=-1)


@pytest.mark.parametrize("kind", ["lstm", "gru", "gru_reset_before"])
def test_chrono_gate_bias_of_each_cell_has_both_bounds(kind: str) -> None:
    """T_max = 3: exp(bias) in [1, 2]; with the lower bound dropped, half would be below 1."""
    cell = make_cell(kind, 2, 64, rngs=nnx.Rngs(7), init="chrono", chrono_max_len=3)
    blocks = gate_blocks(cell.b[...], cell.num_gates)
    keep = np.exp(np.asarray(blocks[1], np.float64))
    assert keep.min() >= 1.0 - 1e-6 and keep.max() <= 2.0 + 1e-6
    assert keep.max() - keep.min() > 0.5  # drawn, not a constant
    if kind == "lstm":  # the input gate at minus the forget gate's bias
        np.testing.assert_array_equal(np.asarray(blocks[0]), -np.asarray(blocks[1]))


def test_chrono_reaches_cells_through_the_config() -> None:
    from seqlab.models.build import build_model

    c = task_config("charlm")
    c.model.update(cell="lstm", init="chrono", chrono_max_len=3, hidden_size=64)
    spec = ModelSpec(family="lm", vocab_size=5)
    model = build_model(c.model, spec, nnx.Rngs(0))

    cell = model.rnn.layers[0].cell
    f = np.exp(np.asarray(gate_blocks(cell.b[...], 4)[1], np.float64))
    assert f.min() >= 1.0 - 1e-6 and f.max() <= 2.0 + 1e-6 and f.max() - f.min() > 0.9


# -- the memory estimate splits the batch over the devices -------------------------------------
def _tiny_config():
    c = task_config("charlm")
    c.model.update(hidden_size=64, num_layers=2)
    c.data.update(batch_size=16, seq_len=32)
    return c


@pytest.mark.parametrize("devices", [1, 2, 4])
def test_activation_estimate_divides_by_devices(devices: int) -> None:
    c, spec = _tiny_config(), ModelSpec(family="lm", vocab_size=65)
    one = memory.train_need(c, spec, 16 * 32, eval_tokens=8 * 32)
    need = memory.train_need(c, spec, 16 * 32, eval_tokens=8 * 32, devices=devices)
    assert need.state == one.state  # parameters and optimizer state are replicated
    assert need.activations == pytest.approx(one.activations / devices, rel=0.01)
    # an odd token count: each device holds its ceiling share, never less
    odd = memory.train_need(c, spec, 16 * 32 + 1, devices=devices)
    assert odd.activations >= memory.train_need(c, spec, 16 * 32 + 1).activations / devices


def test_a_run_that_fits_only_when_split_is_refused_on_one_device_only() -> None:
    c, spec = _tiny_config(), ModelSpec(family="lm", vocab_size=65)
    n1 = memory.train_need(c, spec, 16 * 32, devices=1).total
    n4 = memory.train_need(c, spec, 16 * 32, devices=4).total
    free = ((n1 + n4) // 2, "test memory")
    memory.check_train(c, spec, 16 * 32, devices=4, free=free)
    with pytest.raises(memory.ConfigError, match="per device"):
        memory.check_train(c, spec, 16 * 32, devices=1, free=free)


_TRAIN_PROBE = textwrap.dedent(
    """
    import json, sys
    import jax
    from seqlab.run import loop, memory
    from seqlab.tasks import task_config, make_task
    from seqlab.tasks import complete_config

    c = complete_config(task_config("copy_memory"))  # generated data: nothing to read
    c.model.update(hidden_size=64, num_layers=1)
    c.data.update(batch_size=8)
    task = make_task(c)
    tokens = int(task.tokens_per_batch())
    d = jax.device_count()
    need = {n: memory.check_run(c, task, n, free=(None, "")).total for n in (1, d)}

    class Reached(Exception):
        pass

    def stop(*a, **k):
        raise Reached

    loop.claim = stop  # the memory check has passed: stop before the workdir
    out = []
    for free in ((need[1] + need[d]) // 2, need[d] - 1):
        memory.available = lambda: (free, "test memory")
        try:
            loop.train_and_evaluate(c, sys.argv[1])
            out.append("trained")
        except Reached:
            out.append("fits")
        except memory.ConfigError as e:
            out.append("refused: " + str(e))
    print(json.dumps({"devices": d, "result": out, "need": need}))
    """
)


@pytest.mark.slow
@pytest.mark.parametrize("devices", [4])
def test_train_checks_memory_per_device_of_the_real_mesh(tmp_path, devices: int) -> None:
    """``train_and_evaluate`` on 4 (host) devices with the free memory between the
    1-device and the N-device need: it fits exactly when the batch is split."""
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    env["XLA_FLAGS"] = xla_flags(f"--xla_force_host_platform_device_count={devices}")
    env.pop(memory.SKIP_ENV, None)
    proc = subprocess.run(
        [sys.executable, "-c", _TRAIN_PROBE, str(tmp_path / "w")],
        env=env, capture_output=True, text=True, timeout=120, cwd=ROOT,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["devices"] == devices
    between, below = out["result"]
    assert between == "fits", between  # (1 device: the budget is the need itself)
    assert below.startswith("refused: this run needs about"), below  # the check does run
    if devices > 1:
        assert out["need"][str(devices)] < out["need"]["1"]
