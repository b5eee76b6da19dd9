"""The gradient-norm probe against the closed form of a linear recurrence, and its reports."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.models import SequenceClassifier
from seqlab.probe import grad_norms, summarize_curve


class LastStepTask:
    """Loss = sum over examples of the (linear) readout of h_T."""

    def loss(self, model, batch, *, carry=None, train=False, rng=None):
        out, _ = model(batch["inputs"])
        total = jnp.sum(out)
        return total / out.shape[0], ({"loss": (total, out.shape[0])}, carry)


@pytest.mark.parametrize("rho", [0.9, 1.0, 1.05])
def test_linear_recurrence_closed_form(rho):
    """h_t = W h_{t-1} + U x_t with W = rho Q (Q orthogonal): g_t = rho^(T-t) g_T."""
    H, T, B = 8, 40, 3
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
    graphdef, params = nnx.split(model)
    batch = {"inputs": jax.random.normal(jax.random.key(1), (B, T, 2))}
    g = np.asarray(grad_norms(graphdef, params, LastStepTask(), batch, T))[0]
    expected = rho ** (T - 1 - np.arange(T)) * g[-1]
    np.testing.assert_allclose(g, expected, rtol=2e-4)
    s = summarize_curve(g)
    assert s["decay_rate"] == pytest.approx(-np.log(rho), abs=1e-4)
    assert s["ratio"] == pytest.approx(rho ** (T - 1), rel=1e-3)


def test_summarize_horizon():
    g = 0.5 ** np.arange(30)[::-1]  # g_T = 1, halves with each step of distance
    s = summarize_curve(g)
    assert s["horizon"] == 10  # 2^-10 < 1e-3 <= 2^-9
    assert s["decay_rate"] == pytest.approx(np.log(2))
    assert summarize_curve(np.ones(5))["horizon"] is None


def test_probe_matches_a_split_backward_pass():
    """For an LSTM, g_t equals the norm of dL/dh_t computed by re-running from h_t."""
    H, T, B, t = 6, 12, 2, 4
    model = SequenceClassifier(1, num_features=2, cell="lstm", hidden_size=H, rngs=nnx.Rngs(0))
    graphdef, params = nnx.split(model)
    x = jax.random.normal(jax.random.key(2), (B, T, 2))
    g = np.asarray(grad_norms(graphdef, params, LastStepTask(), {"inputs": x}, T))[0]
    layer = model.rnn.layers[0]
    _, (c_t, h_t) = layer(x[:, : t + 1])

    def tail_loss(h):
        y, carry = layer(x[:, t + 1 :], initial_carry=(c_t, h))
        return jnp.sum(model.head(layer.cell.hidden(carry)))

    direct = jnp.linalg.norm(jax.grad(tail_loss)(h_t), axis=-1).mean()
    assert g[t] == pytest.approx(float(direct), rel=1e-4)


def test_probe_command_writes_json_and_figures(tmp_path):
    import json
    import os

    from seqlab.cli import main

    config = os.path.join(os.path.dirname(os.path.dirname(__file__)), "configs", "probe.py")
    assert main(["probe", "--config", f"{config}:runlocal", "--workdir", str(tmp_path)]) == 0
    with open(tmp_path / "probe.json") as f:
        results = json.load(f)
    assert set(results) == {"rnn", "lstm"} and set(results["rnn"]) == {"5", "20"}
    steps = results["lstm"]["20"]["layer_0"]
    assert set(steps) == {"step_0", "step_2", "step_4"}
    entry = steps["step_0"]
    assert len(entry["grad_norms"]) == 20 and {"decay_rate", "ratio", "horizon"} <= set(entry)
    for png in ("grad_vs_distance.png", "grad_heatmap.png"):
        assert (tmp_path / png).stat().st_size > 1000
    assert "| lstm | 20 | 4 |" in (tmp_path / "probe.md").read_text()
