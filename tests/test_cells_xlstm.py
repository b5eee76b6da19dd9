"""xLSTM's sLSTM and mLSTM against float64 NumPy references of Beck et al. 2024's equations,
written unstabilized (exp(i~) gates, max(|n^T q|, 1)): the cells' stabilized forms must give
the same outputs. Lengths, reverse, a nonzero initial state, gradients against finite
differences, the probe, parameter counts, the exactness of the stabilizer at large gates."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.cells import make_cell
from seqlab.recurrence import Recurrent
from tests.cell_check import LENGTHS, B, T, check_probe, params_np, ref_run, sigmoid

F, H, NH = 3, 4, 2
D = H // NH


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


def make(kind: str, seed: int = 0):
    cell = make_cell(kind, F, H, rngs=nnx.Rngs(seed), param_dtype=jnp.float64, num_heads=NH)
    rng = np.random.default_rng(seed)
    cell.b = nnx.Param(jnp.asarray(0.5 * rng.standard_normal(cell.b[...].shape)))
    return cell


def slstm_ref(p: dict):
    """Unstabilized sLSTM; the carry holds (c, n, h) as the true values (m unused, 0)."""

    def step(carry, x):
        c, n, m, h = carry
        r = np.zeros(4 * H)
        for k in range(NH):  # block-diagonal: head k's units only see head k's units
            hk = h[k * D : (k + 1) * D]
            for g in range(4):
                r[g * H + k * D : g * H + (k + 1) * D] = hk @ p["w_h"][k, g]
        z, i, f, o = np.split(x @ p["w_x"] + p["b"] + r, 4)
        scale = np.exp(m)  # the initial carry's stabilizer: true c, n = stored * exp(m)
        c = sigmoid(f) * c * scale + np.exp(i) * np.tanh(z)
        n = sigmoid(f) * n * scale + np.exp(i)
        h = sigmoid(o) * c / n
        return (c, n, np.zeros_like(m), h), h

    return step


def mlstm_ref(p: dict):
    """Unstabilized mLSTM per head: C <- f C + exp(i~) v k^T, h = o * C q / max(|n^T q|, 1)."""

    def step(carry, x):
        C, n, m = carry
        z = x @ p["w_x"] + p["b"]
        C, n, out = C * np.exp(m)[:, None, None], n * np.exp(m)[:, None], []
        for k in range(NH):
            q, kk, v, o = (z[j * H + k * D : j * H + (k + 1) * D] for j in range(4))
            kk = kk / np.sqrt(D)
            i, f = np.exp(z[4 * H + k]), sigmoid(z[4 * H + NH + k])
            C[k] = f * C[k] + i * np.outer(v, kk)
            n[k] = f * n[k] + i * kk
            out.append(sigmoid(o) * (C[k] @ q) / max(abs(n[k] @ q), 1.0))
        return (C, n, np.zeros(NH)), np.concatenate(out)

    return step


def initial(kind: str, seed: int):
    """A nonzero carry (stabilizer m = 0, so stored values are the true values)."""
    rng = np.random.default_rng(seed)
    if kind == "slstm":
        c, h = rng.standard_normal((2, B, H)) * 0.5
        n = 0.5 + rng.random((B, H))
        return tuple(jnp.asarray(a) for a in (c, n, np.zeros((B, H)), h))
    C = rng.standard_normal((B, NH, D, D)) * 0.5
    return (jnp.asarray(C), jnp.asarray(0.5 + rng.random((B, NH, D))), jnp.zeros((B, NH)))


def reference(kind: str, cell):
    return (slstm_ref if kind == "slstm" else mlstm_ref)(params_np(cell))


@pytest.mark.parametrize("kind", ["slstm", "mlstm"])
@pytest.mark.slow
def test_stabilized_equals_the_papers_equations(kind: str) -> None:
    """Forward from a nonzero carry; reverse from zero (mLSTM's max(., 1) then binds). The
    stabilizer m differs from the reference's (0), so the outputs are compared."""
    cell = make(kind, seed=1)
    xs = np.random.default_rng(2).standard_normal((B, T, F))
    for reverse, carry0 in [(False, initial(kind, 3)), (True, cell.initial_carry(B))]:
        y_ref, _ = ref_run(reference(kind, cell), xs, carry0, LENGTHS, reverse)
        layer = Recurrent(cell, backend="scan", reverse=reverse)
        y, _ = layer(jnp.asarray(xs), lengths=jnp.asarray(LENGTHS), initial_carry=carry0)
        np.testing.assert_allclose(np.asarray(y), y_ref, rtol=1e-9, atol=1e-11)


@pytest.mark.parametrize("kind", ["slstm", "mlstm"])
@pytest.mark.slow
def test_gradients_match_finite_differences(kind: str) -> None:
    cell = make(kind, seed=4)
    xs = np.random.default_rng(5).standard_normal((B, T, F))
    ref, carry0 = reference(kind, cell), initial(kind, 6)
    w = np.random.default_rng(99).standard_normal((B, T, H))

    def loss(x):
        layer = Recurrent(cell, backend="fast")  # falls back to the autodiff scan, said once
        y, _ = layer(x, lengths=jnp.asarray(LENGTHS), initial_carry=carry0)
        return jnp.sum(w * jnp.sin(y))

    def ref_loss(x: np.ndarray) -> float:
        return float(np.sum(w * np.sin(ref_run(ref, x, carry0, LENGTHS)[0])))

    gx = np.asarray(jax.grad(loss)(jnp.asarray(xs)))
    for idx in [(0, 0, 0), (1, 3, 2), (0, 6, 1)]:
        e = np.zeros_like(xs)
        e[idx] = 1e-6
        fd = (ref_loss(xs + e) - ref_loss(xs - e)) / 2e-6
        np.testing.assert_allclose(gx[idx], fd, rtol=1e-5, atol=1e-8)
    assert np.all(gx[2, 1:] == 0)


def test_stabilizer_keeps_huge_input_gates_finite() -> None:
    """exp(i~) with i~ = 500 overflows float64 unstabilized; the cells stay finite."""
    for kind in ("slstm", "mlstm"):
        cell = make(kind)
        cell.b = nnx.Param(cell.b[...] + 500.0)
        y, _ = Recurrent(cell)(jnp.asarray(np.random.default_rng(6).standard_normal((B, T, F))))
        assert np.all(np.isfinite(np.asarray(y)))


@pytest.mark.slow
def test_probe_and_num_params() -> None:
    xs = np.random.default_rng(7).standard_normal((B, T, F))
    for kind in ("slstm", "mlstm"):
        cell = make(kind)
        check_probe(cell, xs)
        n = sum(int(x.size) for x in jax.tree.leaves(nnx.state(cell, nnx.Param)))
        expect = (F + 1) * 4 * H + NH * 4 * D * D if kind == "slstm" else (F + 1) * (4 * H + 2 * NH)
        assert n == expect
