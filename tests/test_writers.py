"""Metric sinks: metrics.jsonl resume semantics, W&B offline runs, TensorBoard files."""

from __future__ import annotations

import glob
import json
import os

import pytest

from seqlab.config import base_config
from seqlab.run.loop import train_and_evaluate
from seqlab.run.writers import JsonlWriter, read_metrics, wandb_mode


def test_jsonl_resume_drops_rows_after_the_checkpoint(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    w = JsonlWriter(path)
    for s in (10, 20, 30):
        w.write_scalars(s, {"train/loss": 1.0 / s})
    w.close()
    with open(path, "a") as f:
        f.write('{"step": 40, "train/lo')  # a writer killed mid-line
    w = JsonlWriter(path, resume_step=20)
    w.write_scalars(30, {"train/loss": 0.5})
    w.close()
    assert [r["step"] for r in read_metrics(path)] == [10, 20, 30]
    assert read_metrics(path)[-1]["train/loss"] == 0.5
    JsonlWriter(path).close()  # a fresh run (no checkpoint) starts a fresh file
    assert read_metrics(path) == []


def test_nonfinite_values_stay_valid_json(tmp_path):
    path = str(tmp_path / "m.jsonl")
    w = JsonlWriter(path)
    w.write_scalars(1, {"train/loss": float("nan")})
    w.close()
    with open(path) as f:
        assert json.loads(f.read())["train/loss"] == "nan"


def test_wandb_auto_mode(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    assert wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert wandb_mode("auto") == "online"
    assert wandb_mode("disabled") == "disabled"


def tiny(workdir, tensorboard=False, **extra):
    c = base_config()
    c.task.name = "adding"
    c.model.hidden_size = 8
    c.data.seq_len = 6
    c.data.batch_size = 4
    c.task.eval_batches = 1
    c.train.num_steps = 4
    c.train.log_every = 2
    c.train.eval_every = 4
    c.train.checkpoint_every = 4
    c.train.progress = False
    c.wandb.mode = "disabled"
    c.tensorboard = tensorboard
    for k, v in extra.items():
        section, key = k.split(".")
        c[section][key] = v
    return train_and_evaluate(c, str(workdir))


def test_wandb_offline_run(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_SILENT", "true")
    tiny(tmp_path, **{"wandb.mode": "offline", "wandb.tags": "adding,test"})
    runs = glob.glob(str(tmp_path / "wandb" / "offline-run-*"))
    assert len(runs) == 1 and glob.glob(os.path.join(runs[0], "*.wandb"))
    assert "wandb sync" in capsys.readouterr().out
    with open(tmp_path / "wandb_id.txt") as f:
        assert runs[0].endswith(f.read().strip())  # a resume continues the same run id


@pytest.mark.slow
def test_tensorboard_event_files(tmp_path):
    tiny(tmp_path / "off")
    assert not os.path.exists(tmp_path / "off" / "tensorboard")
    tiny(tmp_path / "on", tensorboard=True)
    assert glob.glob(str(tmp_path / "on" / "tensorboard" / "events.out.tfevents.*"))
