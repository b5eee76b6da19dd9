"""The attention row of the parity length-generalization experiment: the same protocol and
training function as length_generalization.py (train on 3-40 bits, test on 40-256), with
``model.cell=attention`` (rotary positions; ``model.window`` 256 covers the test lengths).

    nice -n 10 python experiments/state_tracking/length_generalization_attention.py

Prints one JSON row per seed; the table is in length_generalization_attention.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import length_generalization as lg  # noqa: E402

lg.VARIANTS["attention"] = ("attention", False, "0.022", "Grazzi et al. 2025")

if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=1000)
    a = ap.parse_args()
    args = argparse.Namespace(hidden=32, layers=2, heads=2, lr=0.003, batch=64)
    for seed in range(a.seeds):
        row = lg.run("attention", seed, a.steps, args)
        row.pop("loss_curve")
        print(json.dumps(row), flush=True)
