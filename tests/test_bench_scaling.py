"""``seqlab bench --mode scaling`` reports what it measures: its growth arithmetic, that the
attention implementation it asks for reaches ``jax.nn.dot_product_attention``, one row per
mixer and T at tiny sizes, and a one-line refusal of cudnn on a CPU."""

from __future__ import annotations

import jax
import pytest

from seqlab.tools.cli import main
from seqlab_bench import scaling


def test_growth_is_per_doubling_of_T() -> None:
    rows = [
        {"cell": "a", "impl": "x", "length": 100, "cpu_ms_per_step": 1.0, "xla_temp_mib": 1.0},
        {"cell": "a", "impl": "x", "length": 400, "cpu_ms_per_step": 16.0, "xla_temp_mib": 4.0},
        {"cell": "b", "impl": "y", "length": 100, "cpu_ms_per_step": 2.0, "xla_temp_mib": None},
        {"cell": "b", "impl": "y", "length": 200, "cpu_ms_per_step": 4.0, "xla_temp_mib": 3.0},
    ]
    scaling.add_growth(rows)
    assert rows[0]["time_growth"] is None and rows[2]["mem_growth"] is None
    assert rows[1]["time_growth"] == pytest.approx(4.0)  # quadratic: x4 per doubling
    assert rows[1]["mem_growth"] == pytest.approx(2.0)  # linear: x2 per doubling
    assert rows[3]["time_growth"] == pytest.approx(2.0) and rows[3]["mem_growth"] is None


def test_attention_implementation_reaches_dot_product_attention_and_is_undone() -> None:
    original = jax.nn.dot_product_attention
    q = jax.numpy.ones((1, 3, 2, 4))
    with scaling.attention_implementation("xla"):
        assert jax.nn.dot_product_attention.keywords == {"implementation": "xla"}
        y = jax.nn.dot_product_attention(q, q, q, is_causal=True)
    assert jax.nn.dot_product_attention is original
    assert jax.numpy.allclose(y, original(q, q, q, is_causal=True))


@pytest.mark.slow
def test_scaling_mode_times_every_mixer_at_every_length() -> None:
    rows = scaling.bench_scaling(
        ["attention", "lstm", "lru"], [4, 8], batch=2, hidden=8, vocab=5, repeats=1, warmup=0
    )
    got = {(r["cell"], r["impl"], r["length"]) for r in rows}
    assert got == {(c, i, t) for c, i in scaling_impls() for t in (4, 8)}
    for r in rows:
        assert r["ms_per_step"] > 0 and r["params"] > 0 and r["xla_temp_mib"] is not None
        assert r["tokens_per_s"] == pytest.approx(2 * r["length"] / (r["ms_per_step"] / 1e3))
        assert (r["time_growth"] is None) == (r["length"] == 4)
    table = scaling.scaling_table(rows)
    assert "| attention (xla) | 8 |" in table and "| lru (parallel) | 4 |" in table


def scaling_impls() -> list[tuple[str, str]]:
    return [("attention", "xla"), ("lstm", "scan"), ("lru", "parallel")]


@pytest.mark.skipif(jax.default_backend() == "gpu", reason="cudnn exists on a GPU")
def test_cudnn_is_refused_on_cpu_in_one_line(capsys) -> None:
    argv = ["bench", "--mode=scaling", "--attention_impl=cudnn", "--threads=0"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "only implementation='xla'" in err and len(err.splitlines()) == 1
