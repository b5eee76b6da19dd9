"""The gradient-norm probe against the closed form of a linear recurrence, and `seqlab probe`:
configs/probe.py's sweep run by the sweep machinery, then the report's figures and table."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import pathlib
import shutil
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.config import base_config
from seqlab.models import SequenceClassifier
from seqlab.run.loop import train_and_evaluate
from seqlab.run.probe import grad_norms, summarize_curve
from seqlab.tools.cli import main
from seqlab.tools.report import collect
from seqlab.tools.sweep import load_sweep, point_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBE_CONFIG = os.path.join(ROOT, "configs", "probe.py")


def load_config(path):
    spec = importlib.util.spec_from_file_location("probe_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class LastStepTask:
    """Loss = sum over examples of the (linear) readout of h_T."""

    def loss(self, model, batch, *, carry=None, rng=None):
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
    batch = {"inputs": jax.random.normal(jax.random.key(1), (B, T, 2))}
    g = np.asarray(jax.jit(lambda b: grad_norms(model, LastStepTask(), b, T))(batch))[0]
    expected = rho ** (T - 1 - np.arange(T)) * g[-1]
    np.testing.assert_allclose(g, expected, rtol=2e-4)
    s = summarize_curve(np.log10(g))
    assert s["decay_rate"] == pytest.approx(-np.log(rho), abs=1e-4)
    assert s["ratio"] == pytest.approx(rho ** (T - 1), rel=1e-3)
    assert s["log10_ratio"] == pytest.approx((T - 1) * np.log10(rho), rel=1e-3, abs=1e-6)


def test_summarize_horizon():
    g = 0.5 ** np.arange(30)[::-1]  # g_T = 1, halves with each step of distance
    s = summarize_curve(np.log10(g))
    assert s["horizon"] == 10  # 2^-10 < 1e-3 <= 2^-9
    assert s["decay_rate"] == pytest.approx(np.log(2))
    assert summarize_curve(np.zeros(5))["horizon"] is None


def test_summarize_beyond_the_float_range():
    """log10 g below float64's range: the logs, the rate and the horizon stay exact; only
    the plain numbers are 0.0, and steps where g is exactly 0 are None in the logs."""
    lg = -np.arange(500.0)[::-1]  # g_T = 1, g_1 = 1e-499
    lg[5] = -np.inf  # g exactly 0 (padding in every example)
    s = summarize_curve(lg)
    assert s["log10_ratio"] == -499.0 and s["ratio"] == 0.0
    assert s["decay_rate"] == pytest.approx(np.log(10))
    assert s["horizon"] == 4  # 1e-4 < 1e-3
    assert s["grad_norms"][0] == 0.0 and s["grad_norms"][-1] == 1.0
    assert s["log10_grad_norms"][5] is None and s["log10_grad_norms"][0] == -499.0
    json.dumps(s, allow_nan=False)  # valid JSON: no inf or nan


@pytest.mark.slow
def test_probe_matches_a_split_backward_pass():
    """For an LSTM, g_t equals the norm of dL/dh_t computed by re-running from h_t."""
    H, T, B, t = 6, 12, 2, 4
    model = SequenceClassifier(1, num_features=2, cell="lstm", hidden_size=H, rngs=nnx.Rngs(0))
    x = jax.random.normal(jax.random.key(2), (B, T, 2))
    g = np.asarray(jax.jit(lambda b: grad_norms(model, LastStepTask(), b, T))({"inputs": x}))[0]
    layer = model.rnn.layers[0]
    _, (c_t, h_t) = layer(x[:, : t + 1])

    def tail_loss(h):
        y, carry = layer(x[:, t + 1 :], initial_carry=(c_t, h))
        return jnp.sum(model.head(layer.cell.hidden(carry)))

    direct = jnp.linalg.norm(jax.grad(tail_loss)(h_t), axis=-1).mean()
    assert g[t] == pytest.approx(float(direct), rel=1e-4)


# -- `seqlab probe`: configs/probe.py's sweep, then the report -------------------------------
@pytest.fixture(scope="module")
def probe_run(tmp_path_factory):
    """`seqlab probe` on the runlocal variant (rnn, lstm x T = 5, 20), once per module."""
    wd = tmp_path_factory.mktemp("probe")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(
            ["probe", "--config", f"{PROBE_CONFIG}:runlocal", "--workdir", str(wd)]
            + ["--parallel", "2"]
        )
    assert code == 0, out.getvalue()
    return wd, out.getvalue()


def test_probe_sweep_is_what_the_config_declares():
    points = load_sweep(PROBE_CONFIG, "runlocal")
    assert points == [
        {"model.cell": c, "data.seq_len": T} for c in ("rnn", "lstm") for T in (5, 20)
    ]
    module = load_config(PROBE_CONFIG)
    full = load_sweep(PROBE_CONFIG, None)
    classic = [{"model.cell": c, "data.seq_len": T} for c in module.CELLS for T in module.LENGTHS]
    assert full[: len(classic)] == classic
    variants = full[len(classic) :]  # chrono LSTM/GRU (T_max = T) and the linear cells
    assert len(variants) == len(module.VARIANTS) * len(module.VARIANT_LENGTHS)
    assert {
        "model.cell": "lstm",
        "data.seq_len": 1000,
        "model.init": "chrono",
        "model.chrono_max_len": 1000,
    } in variants
    assert {"model.cell": "lru", "data.seq_len": 100} in variants
    assert load_sweep(PROBE_CONFIG, "full,cells=gru+irnn,lengths=7") == [
        {"model.cell": "gru", "data.seq_len": 7},
        {"model.cell": "irnn", "data.seq_len": 7},
    ]
    with pytest.raises(ValueError, match="unknown cell"):
        load_sweep(PROBE_CONFIG, "cells=lstn")
    for arg in (None, "full", "runlocal", "runlocal,cells=gru,lengths=7"):
        c = module.get_config(arg)
        assert c.task.name == "adding" and c.probe.every > 0  # every run writes probe.json
        assert 0 < c.probe.every <= c.train.num_steps
    assert "cells" not in base_config().probe and "lengths" not in base_config().probe


@pytest.mark.slow
def test_probe_command_writes_json_and_figures(probe_run):
    wd, out = probe_run
    with open(wd / "probe.json") as f:
        results = json.load(f)
    assert set(results) == {"rnn", "lstm"} and set(results["rnn"]) == {"5", "20"}
    assert set(results["lstm"]) == {"5", "20"}
    steps = results["lstm"]["20"]["layer_0"]
    assert set(steps) == {"step_0", "step_2", "step_4"}
    entry = steps["step_0"]
    assert len(entry["grad_norms"]) == 20 and {"decay_rate", "ratio", "horizon"} <= set(entry)
    assert len(entry["log10_grad_norms"]) == 20 and entry["log10_ratio"] is not None
    assert entry["grad_norms"][0] == pytest.approx(10 ** entry["log10_grad_norms"][0])
    for png in ("grad_vs_distance.png", "grad_heatmap.png"):
        assert (wd / png).stat().st_size > 1000
    table = (wd / "probe.md").read_text()
    assert "| lstm | 20 | 4 |" in table
    assert table.startswith(
        "| cell | T | step | decay rate / step | log10(g_1 / g_T) | horizon (g < 1e-3 g_T) |"
    )
    rows = [ln.split(" | ")[0:3] for ln in table.splitlines()[2:]]
    assert [r[0] for r in rows] == ["| rnn"] * 6 + ["| lstm"] * 6  # the config's cell order
    assert table in out and f"figures: {wd}/grad_vs_distance.png" in out  # printed, as before
    # one sub-workdir per point the config declares, each a finished, resumable run
    for point in load_sweep(PROBE_CONFIG, "runlocal"):
        sub = wd / point_name(point)
        with open(sub / "status.json") as f:
            assert json.load(f)["state"] == "done"
        with open(sub / "probe.json") as f:
            own = json.load(f)
        assert own == results[point["model.cell"]][str(point["data.seq_len"])]
        assert not (sub / "probe_curves.png").exists()  # drawn only for W&B
        with open(sub / "config.json") as f:
            config = json.load(f)
        assert (config["model"]["cell"], config["data"]["seq_len"]) == (
            point["model.cell"],
            point["data.seq_len"],
        )


def test_report_draws_the_probe(probe_run, tmp_path):
    """`seqlab report` on the probe's runs draws the same figures and table."""
    wd, _ = probe_run
    copy = tmp_path / "copy"
    shutil.copytree(wd, copy)
    expected = (copy / "probe.md").read_text()
    for name in ("probe.json", "probe.md", "grad_vs_distance.png", "grad_heatmap.png"):
        (copy / name).unlink()
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["report", str(copy)]) == 0
    assert (copy / "probe.md").read_text() == expected and expected in out.getvalue()
    with open(wd / "probe.json") as f, open(copy / "probe.json") as g:
        assert json.load(f) == json.load(g)
    for png in ("grad_vs_distance.png", "grad_heatmap.png"):
        assert (copy / png).stat().st_size > 1000
        assert f"![{png}]({png})" in (copy / "report.md").read_text()
    rows = {r["run"]: r for r in collect(str(copy))}
    assert (
        rows["cell-lstm_seq_len-20"]["best/step"] == 4
        and "best/eval/mse" in rows["cell-lstm_seq_len-20"]
    )  # the adding task's own best metric


def test_probe_rerun_skips_finished_points(probe_run):
    wd, _ = probe_run
    with open(wd / "probe.json") as f:
        before = json.load(f)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["probe", "--config", f"{PROBE_CONFIG}:runlocal", "--workdir", str(wd)])
    assert code == 0
    assert "4 points, 4 done, 0 to run" in out.getvalue()
    with open(wd / "probe.json") as f:
        assert json.load(f) == before


# -- the probe in W&B: curves as a line plot, figures as images ------------------------------
class FakeRun:
    dir = None

    def __init__(self):
        self.logged = []

    def log(self, row, step):
        self.logged.append((step, row))

    def finish(self):
        pass


def fake_wandb(run):
    """A stand-in ``wandb`` module (no network, no service): records what a run logs."""
    mod = types.ModuleType("wandb")
    mod.init = lambda mode, **kw: run
    mod.teardown = lambda: None
    mod.Table = lambda columns, data: {"columns": columns, "data": data}
    mod.Image = lambda path: {"image": path, "bytes": pathlib.Path(path).read_bytes()}
    mod.plot = types.SimpleNamespace(
        line=lambda table, x, y, stroke=None, title="": {"line": (x, y, stroke), "table": table}
    )
    return mod


@pytest.mark.slow
def test_training_logs_the_probe_to_wandb_as_a_picture(tmp_path, monkeypatch):
    """At every probe step the W&B writer gets, per layer, the g_t-vs-distance curves of every
    step probed so far as a line plot, and the run's probe figures as PNG images."""
    run = FakeRun()
    monkeypatch.setitem(sys.modules, "wandb", fake_wandb(run))
    c = base_config()
    c.task.name, c.model.hidden_size, c.model.num_layers = "adding", 8, 2
    c.data.seq_len, c.data.batch_size, c.task.eval_batches = 6, 4, 1
    c.train.num_steps, c.train.eval_every, c.train.checkpoint_every = 4, 4, 4
    c.train.log_every, c.train.progress = 2, False
    c.probe.every, c.wandb.mode = 2, "offline"
    train_and_evaluate(c, str(tmp_path))
    probes = [(step, row) for step, row in run.logged if "probe/layer_0/grad_vs_distance" in row]
    assert [step for step, _ in probes] == [0, 2, 4]
    with open(tmp_path / "probe.json") as f:
        results = json.load(f)
    step, row = probes[-1]
    for layer in ("layer_0", "layer_1"):
        chart = row[f"probe/{layer}/grad_vs_distance"]
        assert chart["line"] == ("distance", "log10_g", "step")
        table = chart["table"]
        assert table["columns"] == ["step", "distance", "log10_g"]
        assert {r[0] for r in table["data"]} == {"step 0", "step 2", "step 4"}
        curve = results[layer]["step_4"]["log10_grad_norms"]
        got = {r[1]: r[2] for r in table["data"] if r[0] == "step 4"}
        assert got == {5 - t: v for t, v in enumerate(curve)}  # distance T - t
    for name in ("probe_curves", "probe_heatmap"):
        image = row[f"probe/{name}"]
        assert image["image"] == str(tmp_path / f"{name}.png")
        assert image["bytes"].startswith(b"\x89PNG") and len(image["bytes"]) > 1000


def test_wandb_writer_builds_real_wandb_charts(tmp_path):
    """The same call against the real wandb package's objects (no run, no network): a line
    plot over a Table, curves subsampled to ``probe_points`` per probed step."""
    import wandb

    from seqlab.run.probe import draw_figures
    from seqlab.run.writers import WandbWriter

    T = 1000
    lg = -0.01 * np.arange(T)[::-1]
    results = {"layer_0": {f"step_{s}": summarize_curve(lg * (1 + s)) for s in (0, 10)}}
    writer = object.__new__(WandbWriter)  # the writer without wandb.init
    writer.wandb, writer.run = wandb, FakeRun()
    writer.write_probe(10, results, draw_figures(results, str(tmp_path)))
    ((step, row),) = writer.run.logged
    assert step == 10
    chart = row["probe/layer_0/grad_vs_distance"]
    assert isinstance(chart, wandb.plot.CustomChart)
    assert isinstance(row["probe/probe_curves"], wandb.Image)
    table = chart.table
    assert table.columns == ["step", "distance", "log10_g"]
    assert len(table.data) == 2 * writer.probe_points
    ends = {(r[0], r[1]): r[2] for r in table.data if r[1] in (0, T - 1)}
    assert ends[("step 10", T - 1)] == pytest.approx(-0.01 * (T - 1) * 11)
    assert ends[("step 0", 0)] == 0.0
