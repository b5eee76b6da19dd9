"""What ``seqlab bench`` reports is right (not how fast anything is): the arithmetic of its
columns, its JSON, that every peer really trains, that peers given the same weights compute
the same loss, and that the command runs end to end."""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from seqlab.tools.cli import main
from seqlab_bench import memory, peers, probe_cost, tables, timing, workload
from seqlab_bench.report import JSON_KEYS, RESULT_KEYS

TINY = workload.Shape(batch=4, length=6, hidden=8, layers=1, vocab=11)


def test_throughput_is_tokens_over_median_time() -> None:
    t = timing.Timing(wall=[0.5, 0.1, 0.2, 0.3, 10.0], cpu=[0.2, 0.05, 0.1, 0.1, 0.3])
    out = timing.throughput(t, batch=32, length=100)
    assert out["median_s"] == 0.3 and out["median_cpu_s"] == 0.1
    assert out["tokens_per_s"] == pytest.approx(32 * 100 / 0.3)
    assert out["us_per_step"] == pytest.approx(0.3 / 100 * 1e6)
    assert out["cpu_us_per_step"] == pytest.approx(0.1 / 100 * 1e6)


def test_round_robin_times_every_call_and_rotates_the_order() -> None:
    now = [0.0]
    calls: list[str] = []

    def clock() -> tuple[float, float]:
        return now[0], now[0] / 2

    def work(name: str, seconds: float):
        def fn() -> None:
            calls.append(name)
            now[0] += seconds

        return fn

    timings = timing.round_robin({"a": work("a", 1.0), "b": work("b", 3.0)}, 4, clock)
    assert calls == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert timings["a"].wall == [1.0] * 4 and timings["b"].wall == [3.0] * 4
    assert timings["b"].cpu == [1.5] * 4
    row = timing.throughput(timings["b"], batch=2, length=3)
    assert row["tokens_per_s"] == pytest.approx(2.0)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.slow
def test_seqlab_and_torch_compute_the_same_loss_from_the_same_weights(cell: str) -> None:
    torch = pytest.importorskip("torch")
    from seqlab.models.interop import from_torch

    tokens = workload.make_tokens(TINY, seed=1)
    tm = peers.torch_model(cell, TINY, seed=2)
    model = peers.seqlab_model(cell, TINY)
    sd = {k.split(".", 1)[1]: v for k, v in tm.state_dict().items() if k.startswith("rnn.")}
    from_torch(model.rnn, sd)
    model.head.kernel[...] = jnp.asarray(tm.head.weight.detach().numpy().T)
    model.head.bias[...] = jnp.asarray(tm.head.bias.detach().numpy())
    with torch.no_grad():
        want = float(peers.torch_loss(tm, tokens))
    for impl in ("scan", "fast"):
        peers.set_backend(model, impl)
        loss_fn, _, params, _ = workload.lm_step_fns(model, lambda m, x: m(x)[0], 1e-3)
        jaxpr = str(jax.make_jaxpr(loss_fn)(params, tokens[:, :-1], tokens[:, 1:]))
        assert ("custom_vjp" in jaxpr) == (impl == "fast"), impl  # the backend is in effect
        got = float(jax.jit(loss_fn)(params, tokens[:, :-1], tokens[:, 1:]))
        assert got == pytest.approx(want, rel=1e-5), impl
    assert want == pytest.approx(np.log(TINY.vocab), rel=0.2)  # a sane untrained loss


@pytest.mark.slow
def test_every_peer_learns() -> None:
    """A few training steps on one fixed batch lower each peer's loss."""
    tokens = workload.make_tokens(TINY, seed=3)
    built = peers.build_peers(
        "lstm",
        TINY,
        tokens,
        ["seqlab", "flax", "torch"],
        ["scan", "fast"],
        lr=0.05,
        modes=("train",),
    )
    labels = [p.label for p in built]
    assert labels[:3] == ["seqlab-scan", "seqlab-fast", "flax"]
    assert labels[3:] in ([], ["torch"])
    for p in built:
        losses = [p.train() for _ in range(6)]
        assert losses[-1] < losses[0] - 0.05, (p.label, losses)


@pytest.mark.slow
def test_scan_and_fast_train_identically() -> None:
    """Same init, same batch: the two recurrence implementations follow the same losses."""
    tokens = workload.make_tokens(TINY, seed=4)
    losses = {}
    for impl in ("scan", "fast"):
        peer = peers.seqlab_peer("gru", TINY, tokens, impl=impl, lr=0.05, modes=("train",))
        losses[impl] = [peer.train() for _ in range(4)]
    np.testing.assert_allclose(losses["fast"], losses["scan"], rtol=1e-4)


def test_peers_exist_only_for_their_cells() -> None:
    assert peers.build_peers("mgu", TINY, workload.make_tokens(TINY), ["flax", "torch"], []) == []
    with pytest.raises(ValueError, match="stock Flax has no"):
        peers.flax_model("mgu", TINY)


def test_memory_mode_skips_what_does_not_fit() -> None:
    rows = memory.bench_memory("rnn", TINY, ["fast"], [TINY.length], budget_gib=0.0)
    assert [r["remat"] for r in rows] == [False, True]
    for r in rows:
        assert "skipped" in r and r["xla_need_gib"] > 0
        assert "error" not in r and "maxrss_mib" not in r  # no subprocess was started
    table = tables.memory_table(rows)
    assert table.count("skipped") == 0 and table.count("XLA plans") == 2


@pytest.mark.slow
def test_cli_end_to_end_writes_the_documented_json(tmp_path, capsys) -> None:
    path = tmp_path / "bench.json"
    argv = [
        "bench",
        "--cells=lstm",
        "--length=5",
        "--hidden=8",
        "--repeats=2",
        "--warmup=0",
        "--threads=0",  # leave this test process's threads alone
        "--peers=seqlab,torch",
        "--impl=fast",
        "--passes=train",
        f"--json={path}",
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| lstm | 32,5,8,1 | train | seqlab-fast |" in out
    report = json.loads(path.read_text())
    assert set(JSON_KEYS) <= set(report)
    assert report["hardware"]["cores"] >= 1 and report["hardware"]["cpu_model"]
    assert isinstance(report["hardware"]["cpu_flags"], list)
    assert len(report["load_avg"]["start"]) == 3
    assert report["versions"]["jax"] == jax.__version__
    rows = report["results"]
    assert {r["peer"] for r in rows} >= {"seqlab"}
    for r in rows:
        assert set(RESULT_KEYS) <= set(r)
        assert len(r["times_s"]) == 2
        assert r["tokens_per_s"] == pytest.approx(32 * 5 / np.median(r["times_s"]))
        if r["peer"] == "torch":
            assert r["ratio_torch"] == pytest.approx(1.0)
        assert r["gflops_per_s"] > 0 and r["peak_fraction"] > 0
    assert report["peak"]["gflops_per_s"] > 0 and "% peak" in out


def test_cli_rejects_unknown_names(capsys) -> None:
    assert main(["bench", "--cells=lstm,nope", "--threads=0"]) == 2
    err = capsys.readouterr().err
    assert "unknown cell 'nope'" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow
def test_probe_mode_times_the_probe_against_a_gradient_on_the_same_batch() -> None:
    shape = workload.Shape(4, 6, 8, 1, 5)
    rows = probe_cost.bench_probe(
        "gru", shape, ["scan", "fast"], ["adding", "copy_memory"], [6], repeats=2, warmup=0
    )
    assert [(r["task"], r["impl"]) for r in rows] == [
        ("adding", "scan"),
        ("adding", "fast"),
        ("copy_memory", "scan"),
        ("copy_memory", "fast"),
    ]
    for r in rows:
        assert r["ratio"] == pytest.approx(r["probe_s"] / r["grad_s"]) and r["probe_s"] > 0
    for a, b in (rows[:2], rows[2:]):  # same model, same batch, either backend
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert "| gru | fast | copy_memory | 6 |" in tables.probe_table(rows)


def test_markdown_tables_share_one_shape() -> None:
    rows = [{"a": 1, "b": None}, {"a": 2, "b": 0.5}]
    cols = [("A", tables.key("a")), ("B", tables.key("b", ".2f")), ("C", lambda r: "")]
    assert tables.markdown_table(cols, rows).splitlines() == [
        "| A | B | C |",
        "|---|---|---|",
        "| 1 | n/a | |",
        "| 2 | 0.50 | |",
    ]
    for table in (tables.SPEED, tables.COMPILE, tables.MEMORY, tables.PROBE):
        head, rule = tables.markdown_table(table, []).splitlines()
        assert head.count("|") == rule.count("|") == len(table) + 1


@pytest.mark.slow
def test_memory_child_runs_in_a_fresh_process() -> None:
    """Each memory point runs ``seqlab_bench.memory.memory_child`` in a new process."""
    rows = memory.bench_memory("gru", TINY, ["fast"], [TINY.length], budget_gib=100.0)
    assert [r["remat"] for r in rows] == [False, True]
    for r in rows:
        assert "error" not in r and "skipped" not in r, r
        assert r["step_s"] > 0 and r["maxrss_mib"] > 0 and r["xla"]
    assert tables.memory_table(rows).count("| gru | fast | 6 |") == 2


@pytest.mark.slow
def test_compile_mode_reports_each_length_against_the_shortest() -> None:
    from seqlab_bench.compile_time import bench_compile

    rows = bench_compile("rnn", TINY, ["scan"], [3, 6], repeats=1, losses=("take", "optax"))
    assert [(r["loss"], r["length"]) for r in rows] == [
        ("take", 3),
        ("take", 6),
        ("optax", 3),
        ("optax", 6),
    ]
    for r in rows:
        assert r["total_s"] == pytest.approx(r["lower_s"] + r["compile_s"]) and r["total_s"] > 0
    assert rows[0]["ratio_to_shortest"] == rows[2]["ratio_to_shortest"] == 1.0
    assert rows[1]["ratio_to_shortest"] == pytest.approx(rows[1]["total_s"] / rows[0]["total_s"])
    assert "| rnn | scan | optax | 6 |" in tables.compile_table(rows)


def test_generate_mode_measures_without_targets() -> None:
    from seqlab_bench.generate import bench_generate

    g = bench_generate("lstm", 8, 1, 12, vocab=11, repeats=2, prime_len=3)
    assert len(g["times_s"]) == 2 and g["chars"] == 12
    assert g["chars_per_s"] == pytest.approx(12 / np.median(g["times_s"]))
    assert not any("target" in k for k in g)
    assert tables.generate_line(g).startswith("generate 12 chars, 1x8 lstm: first call ")


@pytest.mark.parametrize(
    "flag, says",
    [
        ("--probe_lengths=10,x", "--probe_lengths must be comma-separated integers"),
        ("--impl=cudnnn", "unknown backend 'cudnnn' in --impl"),
        ("--batch=0", "--batch must be >= 1"),
        ("--batch=two", "--batch"),
        ("--celss=lstm", "unknown flag --celss (did you mean --cells?)"),
        ("extra", "unexpected argument 'extra'"),
    ],
)
def test_cli_rejects_bad_flags_in_one_line(flag: str, says: str, capsys) -> None:
    assert main(["bench", flag, "--threads=0"]) == 2
    err = capsys.readouterr().err
    assert says in err and len(err.strip().splitlines()) == 1, err


def test_cli_help_lists_the_flags(capsys) -> None:
    assert main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: seqlab bench")
    for flag in ("--cells", "--mode", "--threads", "--json", "--probe_tasks"):
        assert flag in out
