"""``seqlab probe``: the probe over cells x sequence lengths, each a normal training run in
its own sub-workdir (with ``probe.every`` set), merged into ``DIR/probe.json``, figures and a
markdown table. Re-running skips finished runs (each sub-workdir resumes)."""

from __future__ import annotations

import json
import os

from ml_collections import ConfigDict

from seqlab import figures
from seqlab.train import train_and_evaluate


def _fmt(x: float | None, spec: str = ".3g") -> str:
    return "—" if x is None else format(x, spec)


def table(results: dict, layer: str = "layer_0") -> str:
    """Markdown: one row per (cell, T, probed step) with decay rate, ratio and horizon."""
    lines = [
        "| cell | T | step | decay rate / step | g_1 / g_T | horizon (g < 1e-3 g_T) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for cell, by_T in results.items():
        for T in sorted(by_T, key=int):
            steps = by_T[T].get(layer, {})
            for key in sorted(steps, key=lambda s: int(s.split("_")[1])):
                s = steps[key]
                lines.append(
                    f"| {cell} | {T} | {key.split('_')[1]} | {_fmt(s['decay_rate'])} "
                    f"| {_fmt(s['ratio'], '.2e')} | {_fmt(s['horizon'], 'd')} |"
                )
    return "\n".join(lines) + "\n"


def run_probe(config: ConfigDict, workdir: str) -> dict:
    cells = [c for c in str(config.probe.cells).split(",") if c]
    lengths = [int(t) for t in str(config.probe.lengths).split(",") if t]
    if not cells or not lengths:
        raise ValueError("probe.cells and probe.lengths must name at least one cell and T")
    results: dict = {}
    for cell in cells:
        for T in lengths:
            c = ConfigDict(config.to_dict())
            c.model.cell, c.data.seq_len = cell, T
            if c.probe.every <= 0:
                c.probe.every = c.train.num_steps
            sub = os.path.join(workdir, f"{cell}_T{T}")
            print(f"probe: {cell} T={T} -> {sub}", flush=True)
            train_and_evaluate(c, sub)
            with open(os.path.join(sub, "probe.json")) as f:
                results.setdefault(cell, {})[str(T)] = json.load(f)
    with open(os.path.join(workdir, "probe.json"), "w") as f:
        json.dump(results, f)
    figures.grad_vs_distance(results, os.path.join(workdir, "grad_vs_distance.png"))
    figures.grad_heatmap(results, os.path.join(workdir, "grad_heatmap.png"))
    with open(os.path.join(workdir, "probe.md"), "w") as f:
        f.write(table(results))
    return results
