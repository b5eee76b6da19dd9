"""Local sweeps (failures recorded, re-runs skip finished points), reports, W&B sweep specs."""

from __future__ import annotations

import json
import os
import textwrap

import pytest

from seqlab.errors import UsageError
from seqlab.tasks import get_task_class
from seqlab.tools.flags import expand_sweep_point
from seqlab.tools.report import collect, figure_metric, report
from seqlab.tools.sweep import (
    cells_by_lengths,
    point_name,
    product,
    run_sweep,
    wandb_sweep_yaml,
    zip_,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_config(tmp_path, points):
    path = tmp_path / "sweepcfg.py"
    path.write_text(
        textwrap.dedent(f"""
        import importlib.util  # by path: configs/ on sys.path would shadow packages (mnist1d)
        _spec = importlib.util.spec_from_file_location(
            "_long_range", {os.path.join(os.path.join(ROOT, "configs"), "long_range.py")!r})
        _mod = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_mod)
        _base = _mod.get_config

        def get_config(arg=None):
            c = _base("runlocal")
            c.train.num_steps = 4
            c.train.eval_every = 4
            c.train.checkpoint_every = 4
            return c

        def get_sweep(arg=None):
            yield from {points!r}
    """)
    )
    return str(path)


@pytest.mark.slow
def test_failures_are_recorded_and_rerun_skips_done(tmp_path):
    points = [{"model.cell": "gru"}, {"model.hidden_size": 0}]  # the second is invalid
    config = write_config(tmp_path, points)
    out = str(tmp_path / "sweep")
    logs = []
    st = run_sweep(config, out, parallel=2, log=logs.append)
    assert st["cell-gru"]["state"] == "done"
    bad = st["hidden_size-0"]
    assert bad["state"] == "failed" and "hidden_size" in bad["error"]
    logs.clear()
    st = run_sweep(config, out, parallel=2, log=logs.append)
    assert "1 done, 1 to run" in logs[0]  # only the failed point is retried
    rows = {r["run"]: r for r in collect(out)}
    assert rows["cell-gru"]["state"] == "done" and "eval/mse" in rows["cell-gru"]
    for name in ("cell-gru", "hidden_size-0"):  # status.json written whole, no temporaries
        files = os.listdir(os.path.join(out, name))
        assert "status.json" in files and not any(".tmp" in f for f in files)
        with open(os.path.join(out, name, "status.json")) as f:
            assert json.load(f)["overrides"] == (
                {"model.cell": "gru"} if "gru" in name else {"model.hidden_size": 0}
            )


def test_helpers_and_names():
    assert list(product(a=[1, 2], b=["x"])) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert list(zip_(a=[1, 2], b=[3, 4])) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
    assert point_name({"model.cell": "gru", "data.seq_len": 200}) == "cell-gru_seq_len-200"
    # points set the cell and the length only (the IRNN's identity init is its own default)
    assert list(cells_by_lengths("cells=irnn+gru,lengths=50", ("rnn", "irnn", "gru"), (9,))) == [
        {"model.cell": "irnn", "data.seq_len": 50},
        {"model.cell": "gru", "data.seq_len": 50},
    ]
    assert len(list(cells_by_lengths(None, ("rnn", "gru"), (5, 6, 7)))) == 6
    # cell/init picks an init preset; chrono's T_max is each point's own T
    assert list(cells_by_lengths("cells=lstm/chrono+gru,lengths=40+80", ("lstm", "gru"), ())) == [
        {
            "model.cell": "lstm",
            "data.seq_len": 40,
            "model.init": "chrono",
            "model.chrono_max_len": 40,
        },
        {
            "model.cell": "lstm",
            "data.seq_len": 80,
            "model.init": "chrono",
            "model.chrono_max_len": 80,
        },
        {"model.cell": "gru", "data.seq_len": 40},
        {"model.cell": "gru", "data.seq_len": 80},
    ]
    with pytest.raises(UsageError, match="unknown init 'chrona'"):
        list(cells_by_lengths("cells=lstm/chrona", ("lstm",), (5,)))


def test_report_labels_a_non_default_init_after_its_cell():
    from seqlab.tools.report import cell_label, cell_order

    assert cell_label({"cell": "lstm", "init": "chrono"}) == "lstm/chrono"
    assert cell_label({"cell": "gru", "init": "default"}) == "gru"
    assert cell_label({"cell": "gru"}) == "gru"
    assert cell_order(["gru", "lstm/chrono", "zzz", "lstm", "rnn"]) == [
        "rnn",
        "lstm",
        "lstm/chrono",
        "gru",
        "zzz",
    ]


def test_wandb_yaml_grid_and_zipped():
    grid = list(product(**{"model.cell": ["rnn", "lstm"], "data.seq_len": [50, 100]}))
    y = wandb_sweep_yaml("configs/long_range.py", "runs/s", grid)
    assert "config.model.cell:" in y and 'values: ["rnn", "lstm"]' in y
    assert "--workdir=runs/s/$WANDB_RUN_ID" in y
    zipped = list(zip_(**{"model.cell": ["rnn", "irnn"], "model.init": ["default", "irnn"]}))
    y = wandb_sweep_yaml("configs/long_range.py", "runs/s", zipped)
    assert "config.sweep_point:" in y
    # what the W&B agent passes back expands into exactly that point's overrides
    value = json.loads(y.split("values: ")[1].split("\n")[0])[1]
    assert expand_sweep_point([f"--config.sweep_point={value}"]) == [
        "--config.model.cell=irnn",
        "--config.model.init=irnn",
    ]


def write_run(root, name, task, rows, cell="lstm", seq_len=10):
    """A finished run directory written by hand: config.json and metrics.jsonl."""
    d = root / name
    d.mkdir(parents=True)
    config = {"task": {"name": task}, "model": {"cell": cell}, "data": {"seq_len": seq_len}}
    (d / "config.json").write_text(json.dumps({**config, "seed": 0}))
    (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


@pytest.fixture
def recall_is_max_accuracy(monkeypatch):
    """A task whose best is the highest eval/accuracy (the direction opposite to loss)."""
    cls = get_task_class("recall")
    monkeypatch.setattr(cls, "best_metric", "eval/accuracy")
    monkeypatch.setattr(cls, "best_mode", "max")


def test_report_best_is_the_tasks_metric_and_direction(tmp_path, recall_is_max_accuracy):
    assert (get_task_class("adding").best_metric, get_task_class("adding").best_mode) == (
        "eval/mse",
        "min",
    )
    train = [{"step": s, "train/loss": 1.0 / s, "perf/wall_s": 0.1 * s} for s in (10, 20, 30)]
    # adding: min eval/mse is at step 20; min eval/loss (10) and the last row (30) differ
    write_run(
        tmp_path,
        "adding_run",
        "adding",
        train
        + [
            {"step": 10, "eval/loss": 0.1, "eval/mse": 0.3},
            {"step": 20, "eval/loss": 0.9, "eval/mse": 0.1},
            {"step": 30, "eval/loss": 0.5, "eval/mse": 0.2},
        ],
    )
    # recall (max eval/accuracy): step 20; min eval/loss would say 30, min accuracy 10
    write_run(
        tmp_path,
        "recall_run",
        "recall",
        train
        + [
            {"step": 10, "eval/loss": 0.4, "eval/accuracy": 0.3},
            {"step": 20, "eval/loss": 0.8, "eval/accuracy": 0.9},
            {"step": 30, "eval/loss": 0.2, "eval/accuracy": 0.5},
            {"step": 40, "eval/loss": "nan", "eval/accuracy": "nan"},  # non-finite: skipped
        ],
        cell="gru",
    )
    rows = {r["run"]: r for r in collect(str(tmp_path))}
    a, r = rows["adding_run"], rows["recall_run"]
    assert (a["best/eval/mse"], a["best/step"]) == (0.1, 20)
    assert (r["best/eval/accuracy"], r["best/step"]) == (0.9, 20)
    assert "best/eval/loss" not in a and "best/eval/loss" not in r
    assert (a["eval/mse"], r["eval/accuracy"]) == (0.2, "nan")  # final = the last eval row
    md = report(str(tmp_path))  # mixed tasks: a table, figures, no probe section
    assert "best/eval/mse" in md and "best/eval/accuracy" in md and "Gradient probe" not in md
    assert (tmp_path / "report.csv").exists() and (tmp_path / "loss_curves.png").exists()
    assert not (tmp_path / "probe.json").exists()


def test_figure_metric_defaults_to_the_tasks_best(tmp_path, recall_is_max_accuracy):
    rows = [{"step": 10, "eval/loss": 0.4, "eval/accuracy": 0.3, "eval/mse": 0.1}]
    write_run(tmp_path / "one", "r", "recall", rows)
    assert figure_metric(collect(str(tmp_path / "one"))) == "eval/accuracy"
    write_run(tmp_path / "two", "a", "adding", rows)
    assert figure_metric(collect(str(tmp_path / "two"))) == "eval/mse"
    write_run(tmp_path / "two", "r", "recall", rows)
    assert figure_metric(collect(str(tmp_path / "two"))) == "eval/mse"  # mixed: headline
