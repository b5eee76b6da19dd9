"""nanoGPT's CPU configuration on tiny Shakespeare under seqlab, beside the 2x256 LSTM on the
same data protocol; prints the table in nanogpt.md.

    python experiments/charlm_shakespeare/nanogpt.py --root /tmp/nanogpt_runs

Each row is one ``seqlab train`` run in ROOT/<name> (a finished workdir is read, not re-run;
an unfinished one resumes). Runs one at a time, niced; the machine's load is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import jax
from flax import nnx

from seqlab.run import load_run
from seqlab.run.writers import read_metrics

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
PROTOCOL = [  # nanoGPT's data: batch 12 x 64 characters, 2,000 steps, its 90/10 split
    "--config.data.batch_size=12",
    "--config.data.seq_len=64",
    "--config.data.val_fraction=0.1",
    "--config.data.test_fraction=0.0",
    "--config.train.num_steps=2000",
]
ROWS = {
    "transformer": ("Transformer 4x4x128 (`:nanogpt_cpu`)", ["configs/charlm.py:nanogpt_cpu"], []),
    "transformer_fan0": (
        "same, one-hot rows at 1/sqrt(V) (`model.onehot_fan_in=0`)",
        ["configs/charlm.py:nanogpt_cpu"],
        ["--config.model.onehot_fan_in=0"],
    ),
    "transformer_learned": (
        "same, learned absolute positions (`model.positions=learned`)",
        ["configs/charlm.py:nanogpt_cpu"],
        ["--config.model.positions=learned"],
    ),
    "lstm": ("LSTM 2x256 (`configs/charlm.py`, its Adam recipe)", ["configs/charlm.py"], PROTOCOL),
}
PUBLISHED = 1.88  # karpathy/nanoGPT README, "I only have a macbook": val loss ~1.88


def run(name: str, root: str) -> str:
    wd = os.path.join(root, name)
    if not os.path.exists(os.path.join(wd, "results.json")):
        _, config, extra = ROWS[name]
        cmd = ["nice", "-n", "10", sys.executable, "-m", "seqlab", "train"]
        cmd += [f"--config={config[0]}", f"--workdir={wd}", "--config.train.progress=False"]
        subprocess.run(cmd + ["--config.wandb.mode=disabled", *extra], cwd=ROOT, check=True)
    return wd


def row(name: str, wd: str) -> list[str]:
    rows = read_metrics(os.path.join(wd, "metrics.jsonl"))
    evals = {r["step"]: r for r in rows if "eval/loss" in r}
    with open(os.path.join(wd, "results.json")) as f:
        res = json.load(f)
    model = load_run(wd).model(0)
    params = sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
    at = lambda s: f"{evals[s]['eval/loss']:.3f}" if s in evals else "—"  # noqa: E731
    return [
        ROWS[name][0],
        f"{params / 1e6:.2f}M",
        at(500),
        at(1000),
        f"{res['eval/loss']:.3f}",
        f"{res['wall_time_s'] / 60:.1f} min",
    ]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--root", default="/tmp/nanogpt_runs")
    a = p.parse_args()
    load = os.getloadavg()[0]
    table = [row(n, run(n, a.root)) for n in ROWS]
    head = ["model", "params", "val @500", "val @1000", "val @2000", "wall time"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in table]
    print("\n".join(lines))
    print(f"\nload average (1 min) before: {load:.1f}, after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
