"""seqlab_bench.flops: the step's FLOPs from its shapes, checked against XLA's own count."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import pytest

from seqlab_bench.flops import achieved, gates, matmul_peak, step_flops
from seqlab_bench.peers import seqlab_model
from seqlab_bench.workload import Shape, lm_step_fns, make_tokens


def test_step_flops_by_hand() -> None:
    """2-layer LSTM, H=10, V=7, B=3, T=5: per token 2 recurrent (2*10*40) + 1 input
    (2*10*40) + output (2*10*7) = 2540 FLOPs; x 15 tokens; x 3 for a training step."""
    shape = Shape(batch=3, length=5, hidden=10, layers=2, vocab=7)
    assert step_flops("lstm", shape, "forward") == 2540 * 15
    assert step_flops("lstm", shape, "train") == 3 * 2540 * 15
    assert gates("gru") == 3 and gates("rnn") == 1 and gates("mgu") == 2
    assert gates("lru") is None and step_flops("lru", shape) is None  # not counted
    assert gates("nope") is None


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.slow
def test_step_flops_match_xla_on_one_step(cell: str) -> None:
    """At T = 1 XLA's cost analysis counts the whole step (a scan body is counted once):
    the shape count agrees with it within 5%, forward and training step alike."""
    shape = Shape(batch=16, length=1, hidden=64, layers=2, vocab=65)
    loss_fn, train_step, p, o = lm_step_fns(
        seqlab_model(cell, shape, 0), lambda m, x: m(x)[0], 1e-3
    )
    tokens = make_tokens(shape)
    x, y = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])
    for mode, fn, args in (("forward", loss_fn, (p, x, y)), ("train", train_step, (p, o, x, y))):
        cost = jax.jit(fn).lower(*args).compile().cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        assert step_flops(cell, shape, mode) == pytest.approx(cost["flops"], rel=0.05), mode


def test_achieved_and_peak() -> None:
    row = {"cell": "rnn", "mode": "train", "batch": 2, "length": 4, "hidden": 8}
    row |= {"layers": 1, "vocab": 5, "median_s": 1e-6}
    flops = 3 * (2 * 8 * 8 + 2 * 8 * 5) * 8
    out = achieved(row, peak_gflops=2 * flops / 1e-6 / 1e9)
    assert out["gflops_per_s"] == pytest.approx(flops / 1e-6 / 1e9)
    assert out["peak_fraction"] == pytest.approx(0.5)
    assert achieved({**row, "cell": "lru"}, 1.0)["peak_fraction"] is None
    peak = matmul_peak(n=128, repeats=2)
    assert peak["gflops_per_s"] > 0 and peak["best_s"] > 0
