"""Local sweeps (failures recorded, re-runs skip finished points), reports, W&B sweep specs."""

from __future__ import annotations

import json
import os
import textwrap

from seqlab.cli import _expand_sweep_point
from seqlab.report import collect
from seqlab.sweep import point_name, product, run_sweep, wandb_sweep_yaml, zip_

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write_config(tmp_path, points):
    path = tmp_path / "sweepcfg.py"
    path.write_text(
        textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {os.path.join(ROOT, "configs")!r})
        from long_range import get_config as _base

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


def test_helpers_and_names():
    assert list(product(a=[1, 2], b=["x"])) == [{"a": 1, "b": "x"}, {"a": 2, "b": "x"}]
    assert list(zip_(a=[1, 2], b=[3, 4])) == [{"a": 1, "b": 3}, {"a": 2, "b": 4}]
    assert point_name({"model.cell": "gru", "data.seq_len": 200}) == "cell-gru_seq_len-200"


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
    assert _expand_sweep_point([f"--config.sweep_point={value}"]) == [
        "--config.model.cell=irnn",
        "--config.model.init=irnn",
    ]
