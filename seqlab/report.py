"""``seqlab report DIR``: one row per run under DIR (a sweep, or any folder of workdirs):
its overrides, final and best eval metrics, steps and wall time, as markdown and CSV, plus
figures (final metric against sequence length per cell; loss curves)."""

from __future__ import annotations

import csv
import json
import os
from typing import Any

from seqlab.writers import read_metrics


def collect(root: str) -> list[dict[str, Any]]:
    """Rows for every directory under ``root`` holding a config.json and metrics.jsonl."""
    rows = []
    for dirpath, _, files in sorted(os.walk(root)):
        if "config.json" not in files or "metrics.jsonl" not in files:
            continue
        with open(os.path.join(dirpath, "config.json")) as f:
            config = json.load(f)
        metrics = read_metrics(os.path.join(dirpath, "metrics.jsonl"))
        status = {}
        if os.path.exists(os.path.join(dirpath, "status.json")):
            with open(os.path.join(dirpath, "status.json")) as f:
                status = json.load(f)
        evals = [r for r in metrics if "eval/loss" in r]
        train = [r for r in metrics if "train/loss" in r]
        row: dict[str, Any] = {
            "run": os.path.relpath(dirpath, root),
            "task": config["task"]["name"],
            "cell": config["model"]["cell"],
            "seq_len": config["data"]["seq_len"],
            "seed": config["seed"],
            "state": status.get("state", "done" if evals else "unknown"),
            "steps": max((r["step"] for r in metrics), default=0),
            "wall_time_s": round(max((r.get("perf/wall_s", 0) for r in train), default=0), 1),
        }
        for k, v in status.get("overrides", {}).items():
            row[f"override:{k}"] = v
        if evals:
            last = evals[-1]
            row.update({k: v for k, v in last.items() if k != "step"})
            best = min(evals, key=lambda r: r["eval/loss"])
            row["best/eval/loss"], row["best/step"] = best["eval/loss"], best["step"]
        if "error" in status:
            row["error"] = status["error"]
        rows.append(row)
    return rows


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def markdown(rows: list[dict[str, Any]], columns: list[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + " --- |" * len(columns)]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in columns) + " |")
    return "\n".join(lines) + "\n"


def columns_of(rows: list[dict[str, Any]]) -> list[str]:
    first = ["run", "task", "cell", "seq_len", "seed", "state", "steps", "wall_time_s"]
    metric_keys = sorted({k for r in rows for k in r if k.startswith(("eval/", "best/"))})
    base = sorted({k for r in rows for k in r if k.startswith("baseline/")})
    extra = ["error"] if any("error" in r for r in rows) else []
    return first + metric_keys + base + extra


def figures(rows: list[dict[str, Any]], root: str, metric: str) -> list[str]:
    from seqlab.figures import plt

    out = []
    done = [r for r in rows if metric in r]
    if done:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        for task, cell in sorted({(r["task"], r["cell"]) for r in done}):
            pts = sorted(
                (r["seq_len"], r[metric]) for r in done if (r["task"], r["cell"]) == (task, cell)
            )
            ax.plot([p[0] for p in pts], [p[1] for p in pts], "o-", label=f"{cell} ({task})")
        bkey = "baseline/" + metric.split("/", 1)[1]
        bases = sorted({r[bkey] for r in done if bkey in r})
        for b in bases[:1]:
            ax.axhline(b, color="gray", ls="--", label="no-memory baseline")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(metric)
        ax.set_xscale("log")
        ticks = sorted({r["seq_len"] for r in done})
        ax.set_xticks(ticks, [str(t) for t in ticks])
        ax.minorticks_off()
        ax.legend(fontsize=7)
        fig.tight_layout()
        path = os.path.join(root, "metric_vs_length.png")
        fig.savefig(path, dpi=110)
        plt.close(fig)
        out.append(path)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in rows:
        m = read_metrics(os.path.join(root, r["run"], "metrics.jsonl"))
        pts = [(x["step"], x["train/loss"]) for x in m if "train/loss" in x]
        if pts:
            ax.plot(*zip(*pts, strict=True), label=r["run"], lw=1)
    ax.set_xlabel("step")
    ax.set_ylabel("train/loss")
    ax.set_yscale("log")
    if len(rows) <= 12:
        ax.legend(fontsize=6)
    fig.tight_layout()
    path = os.path.join(root, "loss_curves.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [*out, path]


def report(root: str, metric: str | None = None) -> str:
    """Writes DIR/report.md, DIR/report.csv and figures; returns the markdown."""
    rows = collect(root)
    if not rows:
        raise ValueError(f"no runs under {root} (looked for config.json + metrics.jsonl)")
    cols = columns_of(rows)
    with open(os.path.join(root, "report.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    if metric is None:  # the task's headline metric: mse, accuracy, exact match, else loss
        names = {k for r in rows for k in r}
        metric = next(
            (m for m in ("eval/mse", "eval/accuracy", "eval/exact_match") if m in names),
            "eval/loss",
        )
    paths = figures(rows, root, metric)
    md = markdown(rows, cols)
    with open(os.path.join(root, "report.md"), "w") as f:
        f.write(
            md
            + "\n"
            + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in paths)
            + "\n"
        )
    return md
