"""The few lines ``seqlab train`` ends with: how far the run got, what it reached, where its
files are and what to run next.

It reads what the run left on disk (``results.json``, ``metrics.jsonl``), so it says what a
later ``seqlab eval`` or ``seqlab report`` will find; ``results.json`` is the same final
metrics, machine-readable.
"""

from __future__ import annotations

import json
import math
import os
import shlex
from typing import Any

from ml_collections import ConfigDict

from seqlab.run.checkpoint import ASIDE
from seqlab.run.writers import read_metrics


class ResumePoint:
    """Where ``seqlab train`` resumed, seen from outside the loop: the newest finalized step
    folder before it started, less those it then set aside as unreadable. Only names are
    listed: nothing is read or written."""

    def __init__(self, workdir: str):
        self.ckdir = os.path.join(workdir, "checkpoints")
        self.steps = sorted(int(n) for n in _names(self.ckdir) if n.isdigit())
        self.aside = _names(self.ckdir + ASIDE)

    def step(self) -> int | None:
        """The step resumed from (None: a fresh run); call it after the run."""
        moved = {n.split(".")[0] for n in _names(self.ckdir + ASIDE) - self.aside}
        kept = [s for s in self.steps if str(s) not in moved]
        return kept[-1] if kept else None


def _names(directory: str) -> set[str]:
    try:
        return {n for n in os.listdir(directory) if os.path.isdir(os.path.join(directory, n))}
    except OSError:
        return set()


def best_eval(rows: list[dict[str, Any]], metric: str, mode: str) -> dict[str, Any] | None:
    """The eval row with the best finite ``metric`` (the earliest of equals), or None."""
    scored = [
        r
        for r in rows
        if isinstance(r.get(metric), (int, float)) and math.isfinite(float(r[metric]))
    ]
    if not scored:
        return None
    return (min if mode == "min" else max)(scored, key=lambda r: r[metric])


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def metric_line(metrics: dict[str, Any], headline: str = "") -> str:
    """``headline`` first, then the others by name; a num_seeds run shows each mean with its
    std over seeds, not every seed."""
    keys = [k for k in metrics if "/seed_" not in k and not k.endswith("/std")]
    order = sorted(keys, key=lambda k: (k != headline, k))
    parts = []
    for k in order:
        std = metrics.get(f"{k}/std")
        parts.append(f"{k}={_fmt(metrics[k])}" + (f" +- {_fmt(std)}" if std is not None else ""))
    return "  ".join(parts)


def summary(
    workdir: str,
    config: ConfigDict,
    metrics: dict[str, float],
    *,
    start: int | None,
    wall_s: float,
) -> str:
    """The summary of a ``seqlab train`` that returned ``metrics`` after ``wall_s`` seconds,
    having resumed from checkpoint ``start`` (None: a fresh run)."""
    from seqlab.tools.report import best_rule

    results = _read_json(os.path.join(workdir, "results.json"))
    step = int(results.get("step", 0))
    start = results.get("start_step", start)  # what the loop says it resumed from, if it does
    num_steps = int(config.train.num_steps)
    metric, mode = best_rule(config.task.name)
    run = step - (start or 0)
    how = f"{run} now, resumed from step {start}" if start else "from scratch"
    if start and run <= 0:
        how = "already there: nothing to train"
    done = "done" if step >= num_steps else "stopped"
    lines = [f"seqlab train: {done} at step {step} of {num_steps} ({how}) in {wall_s:.1f} s"]
    if step < num_steps and config.train.time_limit_s > 0:
        lines.append(
            f"  stopped  by train.time_limit_s={config.train.time_limit_s:g}; run the same "
            "command again to continue"
        )
    final = {k: v for k, v in metrics.items() if not k.startswith("baseline/")}
    if final:
        lines.append(f"  final    {metric_line(final, metric)}")
    if len(final) < len(metrics):
        base = {k: v for k, v in metrics.items() if k not in final}
        lines.append(f"  baseline {metric_line(base)} (no-memory references)")
    path = os.path.join(workdir, "metrics.jsonl")
    rows = read_metrics(path) if os.path.exists(path) else []
    best = best_eval(rows, metric, mode)
    if best is not None:
        word = "lowest" if mode == "min" else "highest"
        lines.append(
            f"  best     step {best['step']}: {metric}={_fmt(best[metric])} (the {word}; "
            "--best loads it)"
        )
    lines += ["  files    " + os.path.abspath(workdir), *_files(workdir, config)]
    lines += _next(workdir, config)
    return "\n".join(lines)


def _files(workdir: str, config: ConfigDict) -> list[str]:
    keep = int(config.train.keep_checkpoints)
    what = [
        ("results.json", "the final metrics, machine-readable"),
        ("metrics.jsonl", "every logged train and eval row"),
        ("samples.jsonl", "text produced at each eval"),
        ("probe.json", "gradient norms by distance (probe.every)"),
        ("checkpoints", f"the latest {keep} and the best"),
    ]
    out = [f"           {name:<15}{text}" for name, text in what if _exists(workdir, name)]
    drawn = ("loss_curves.png", "metric_vs_length.png", "grad_vs_distance.png", "report.md")
    figures = [f for f in drawn if _exists(workdir, f)]
    none = "none yet: `seqlab report` draws loss_curves.png and writes report.md"
    out.append(f"           {'figures':<15}" + (", ".join(figures) if figures else none))
    return out


def _next(workdir: str, config: ConfigDict) -> list[str]:
    w = shlex.quote(workdir)
    cmds = []
    if config.task.name == "charlm":
        cmds.append(f"seqlab sample --workdir {w} --temperature 0.5 --length 500")
    cmds += [f"seqlab eval --workdir {w} --best", f"seqlab report {w}"]
    return ["  next     " + cmds[0], *(f"           {c}" for c in cmds[1:])]


def _exists(workdir: str, name: str) -> bool:
    return os.path.exists(os.path.join(workdir, name))


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path) as f:
            out = json.load(f)
    except (OSError, ValueError):
        return {}
    return out if isinstance(out, dict) else {}
