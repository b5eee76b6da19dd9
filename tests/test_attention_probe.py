"""The residual-stream probe ||dL/dx_t|| (seqlab.run.probe.probe_log10): the log-space path
equals plain autodiff for recurrent stacks (bare on tokens, residual blocks), and attention
is probed by autodiff, with ``state`` refused in one line."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.errors import RunError
from seqlab.models import LanguageModel
from seqlab.run.probe import probe_log10, residual_grad_norms
from tests.test_logprobe import NextTokenTask, lm_batch

F64 = jnp.float64


def lm(cell: str, **kw) -> LanguageModel:
    return LanguageModel(
        7, cell=cell, hidden_size=8, num_layers=2, param_dtype=F64, rngs=nnx.Rngs(0), **kw
    )


@pytest.mark.parametrize("cell", ["lstm", "lru"])  # a bare stack on one-hot ids; blocks
@pytest.mark.slow
def test_log_space_residual_equals_autodiff(cell):
    with jax.enable_x64(True):
        model, task, batch = lm(cell), NextTokenTask(), lm_batch(6)
        got = np.asarray(jax.jit(lambda: probe_log10(model, task, batch, "residual"))())
        want = np.asarray(jax.jit(lambda: residual_grad_norms(model, task, batch))())
        assert got.shape == (2, 6)
        assert np.array_equal(np.isneginf(got), np.isneginf(want))  # padded in every example
        ok = np.isfinite(want)
        np.testing.assert_allclose(got[ok], want[ok], rtol=1e-9)


def test_attention_residual_probe_and_state_refused():
    model = LanguageModel(
        7,
        cell="attention",
        hidden_size=8,
        num_layers=2,
        cell_kwargs={"num_heads": 2, "window": 8},
        rngs=nnx.Rngs(0),
    )
    task, batch = NextTokenTask(), lm_batch(6, lengths=False)
    lg = np.asarray(jax.jit(lambda: probe_log10(model, task, batch, "residual"))())
    assert lg.shape == (2, 6) and np.all(np.isfinite(lg))
    # causal: x_t reaches the losses at t..T-1, so the first position has the most paths
    assert lg[0, 0] != lg[0, -1]
    with pytest.raises(RunError, match="probe.quantity=residual"):
        probe_log10(model, task, batch, "state")
