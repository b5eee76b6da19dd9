"""``seqlab report DIR``: one row per run under DIR (a sweep, or any folder of workdirs):
its overrides, final and best eval metrics, steps and wall time, as markdown and CSV, plus
figures (final metric against sequence length per cell; loss curves).

"Best" is each run's task's own ``best_metric`` and ``best_mode`` (the rule that picks its
best checkpoint). When runs hold ``probe.json`` (trained with ``probe.every > 0``, as
``configs/probe.py``'s sweep is), the report also merges them into ``DIR/probe.json``
({cell: {T: run's probe.json}}) and draws the gradient-norm figures and decay table
(``seqlab probe`` is a sweep followed by this report)."""

from __future__ import annotations

import csv
import math
import os
from typing import Any

from seqlab.errors import DataError, UsageError
from seqlab.run import records
from seqlab.run.writers import atomic_open, save_figure, write_json


def best_rule(task_name: str) -> tuple[str, str]:
    """(metric, "min" | "max"): what "best" means for a task, as its checkpoints use it."""
    from seqlab.tasks import get_task_class

    try:
        cls = get_task_class(task_name)
    except DataError:  # a task this version does not know: the base rule
        from seqlab.tasks import Task

        cls = Task
    return cls.best_metric, cls.best_mode


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _json(path: str) -> Any:
    """A JSON file's object, or None when it is missing or cannot be used (one warning)."""
    return records.read_json(path)


def _metrics(path: str) -> tuple[list[dict[str, Any]], str]:
    """(rows, "") of a metrics.jsonl, or ([], why) when none can be read from it. Lines that
    cannot be used are skipped and counted in one warning line."""
    try:
        lines = records.scan_jsonl(path, records.METRICS)
    except OSError as e:
        return [], f"cannot read metrics.jsonl ({e.strerror or e})"
    if lines.skipped:
        records.log.warning(lines.summary(path))
    if not lines.rows:
        if not lines.skipped:
            return [], "metrics.jsonl is empty"
        why = ", ".join(f"{n} {r}" for r, n in lines.skipped.most_common())
        if set(lines.skipped) == {"not UTF-8"}:
            return [], f"metrics.jsonl is not text ({why})"
        return [], f"metrics.jsonl has no readable rows ({why})"
    return lines.rows, ""


def collect(root: str) -> list[dict[str, Any]]:
    """Rows for every directory under ``root`` holding a config.json and metrics.jsonl. A run
    whose metrics (or config) cannot be read is a row in state ``unreadable`` saying why,
    never ``done`` with 0 steps."""
    rows = []
    for dirpath, _, files in sorted(os.walk(root)):
        if "config.json" not in files or "metrics.jsonl" not in files:
            continue
        rows.append(_row(root, dirpath))
    return rows


def _row(root: str, dirpath: str) -> dict[str, Any]:
    config = _json(os.path.join(dirpath, "config.json"))
    status = _json(os.path.join(dirpath, "status.json"))
    status = status if isinstance(status, dict) else {}
    metrics, why = _metrics(os.path.join(dirpath, "metrics.jsonl"))
    if not isinstance(config, dict):
        config, why = {}, "config.json is not readable JSON"
    section = lambda name: config.get(name) if isinstance(config.get(name), dict) else {}
    evals = [r for r in metrics if any(k.startswith("eval/") for k in r)]
    train = [r for r in metrics if "train/loss" in r]
    row: dict[str, Any] = {
        "run": os.path.relpath(dirpath, root),
        "task": section("task").get("name", "?"),
        "cell": cell_label(section("model")),
        "seq_len": section("data").get("seq_len", 0),
        "seed": config.get("seed", "?"),
        "state": "unreadable" if why else run_state(dirpath, status, section("train")),
        "steps": max((r["step"] for r in metrics if _number(r["step"])), default=0),
        "wall_time_s": round(max((r.get("perf/wall_s", 0) for r in train), default=0), 1),
    }
    for k, v in status.get("overrides", {}).items():
        row[f"override:{k}"] = v
    if evals:
        last = evals[-1]
        row.update({k: v for k, v in last.items() if k != "step"})
        metric, mode = best_rule(row["task"])
        scored = [r for r in evals if _number(r.get(metric))]
        if scored:  # the earliest of equals, as the checkpointer keeps it
            best = (min if mode == "min" else max)(scored, key=lambda r: r[metric])
            row[f"best/{metric}"], row["best/step"] = best[metric], best["step"]
    if why or "error" in status:
        row["error"] = "; ".join(x for x in (why, status.get("error", "")) if x)
    return row


def run_state(dirpath: str, status: dict[str, Any], train: dict[str, Any]) -> str:
    """``running`` (a live process holds the run's lock), ``failed`` (its sweep attempt
    failed), ``done`` (results.json at train.num_steps), else ``stopped at step S of N``: S
    is the newest complete checkpoint, where re-running the same command resumes."""
    from seqlab.run.checkpoint import complete_steps
    from seqlab.run.workdir import CHECKPOINTS, lock_holder

    if lock_holder(dirpath) is not None:
        return "running"
    if status.get("state") == "failed":
        return "failed"
    num_steps = train.get("num_steps")
    results = records.read_json(os.path.join(dirpath, "results.json"), {"step": int})
    if results is not None and (not isinstance(num_steps, int) or results["step"] >= num_steps):
        return "done"
    steps = complete_steps(os.path.join(dirpath, CHECKPOINTS))
    at = f"step {steps[-1]}" if steps else "step 0 (no checkpoint yet)"
    return f"stopped at {at}" + (f" of {num_steps}" if isinstance(num_steps, int) else "")


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
    from seqlab.tools.figures import plt

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
        save_figure(fig, path, dpi=110)
        plt.close(fig)
        out.append(path)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    for r in rows:
        m, _ = _metrics(os.path.join(root, r["run"], "metrics.jsonl"))
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
    save_figure(fig, path, dpi=110)
    plt.close(fig)
    return [*out, path]


def figure_metric(rows: list[dict[str, Any]]) -> str:
    """The figures' default metric: the task's own best_metric when all runs share a task;
    for mixed tasks a headline metric they report (mse, accuracy, exact match), else loss."""
    tasks = {r["task"] for r in rows}
    if len(tasks) == 1:
        return best_rule(tasks.pop())[0]
    names = {k for r in rows for k in r}
    return next(
        (m for m in ("eval/mse", "eval/accuracy", "eval/exact_match") if m in names),
        "eval/loss",
    )


# -- the gradient-norm probe ----------------------------------------------------------------
def _fmt_probe(x: float | None, spec: str = ".3g") -> str:
    return "—" if x is None else format(x, spec)


def cell_label(model: dict[str, Any]) -> str:
    """A run's cell as reports name it: ``lstm``, or ``lstm/chrono`` when the run chose an
    initialization preset other than the cell's default (the sweeps' ``cell/init`` syntax)."""
    cell, init = str(model.get("cell", "?")), model.get("init", "default")
    return cell if init in ("default", "", None) else f"{cell}/{init}"


def cell_order(cells: Any) -> list[str]:
    """Cells in the registry's order (rnn, irnn, lstm, gru, ...; ``lstm/chrono`` after
    ``lstm``), then any others by name."""
    from seqlab.cells import CELLS

    known = list(CELLS)

    def key(label: str) -> tuple[int, str]:  # "lstm/chrono" right after "lstm"
        base = label.split("/")[0]
        return (known.index(base), label) if base in known else (len(known), label)

    return sorted(cells, key=key)


def probe_table(results: dict, layer: str = "layer_0") -> str:
    """Markdown: one row per (cell, T, probed step) with decay rate, log10(g_1 / g_T) (never
    underflows: the probe measures log10 g) and horizon."""
    lines = [
        "| cell | T | step | decay rate / step | log10(g_1 / g_T) | horizon (g < 1e-3 g_T) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for cell in cell_order(results):
        by_T = results[cell]
        for T in sorted(by_T, key=int):
            steps = by_T[T].get(layer, {})
            for key in sorted(steps, key=lambda s: int(s.split("_")[1])):
                s = steps[key]
                log_ratio = s.get("log10_ratio")  # a probe.json from before it: the ratio
                if "log10_ratio" not in s and s.get("ratio"):
                    log_ratio = math.log10(s["ratio"])
                lines.append(
                    f"| {cell} | {T} | {key.split('_')[1]} | {_fmt_probe(s['decay_rate'])} "
                    f"| {_fmt_probe(log_ratio, '.4g')} | {_fmt_probe(s['horizon'], 'd')} |"
                )
    return "\n".join(lines) + "\n"


def probe_results(root: str, rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """{cell: {T: probe.json}} over the runs in ``rows`` that hold a probe.json, cells in
    registry order and T ascending. Two runs with the same cell and T (other overrides
    differ) are told apart by their run directory: ``lstm (run)``."""
    found = []
    for r in rows:
        probe = _json(os.path.join(root, r["run"], "probe.json"))
        if isinstance(probe, dict) and r["state"] != "unreadable":
            found.append((r, probe))
    counts: dict[tuple[str, int], int] = {}
    for r, _ in found:
        counts[(r["cell"], r["seq_len"])] = counts.get((r["cell"], r["seq_len"]), 0) + 1
    merged: dict[str, dict[int, Any]] = {}
    for r, probe in found:
        label = r["cell"] if counts[(r["cell"], r["seq_len"])] == 1 else f"{r['cell']} ({r['run']})"
        merged.setdefault(label, {})[int(r["seq_len"])] = probe
    return {c: {str(T): merged[c][T] for T in sorted(merged[c])} for c in cell_order(merged)}


def probe_report(root: str, rows: list[dict[str, Any]]) -> dict[str, Any] | None:
    """When runs under ``root`` hold probe.json: writes DIR/probe.json (merged; not when
    ``root`` is itself a run, whose own probe.json it is), grad_vs_distance.png,
    grad_heatmap.png and probe.md. Returns the merged results, or None."""
    results = probe_results(root, rows)
    if not results:
        return None
    from seqlab.tools.figures import grad_heatmap, grad_vs_distance

    if not any(r["run"] == "." for r in rows):
        write_json(os.path.join(root, "probe.json"), results)
    grad_vs_distance(results, os.path.join(root, "grad_vs_distance.png"))
    grad_heatmap(results, os.path.join(root, "grad_heatmap.png"))
    with atomic_open(os.path.join(root, "probe.md")) as f:
        f.write(probe_table(results))
    return results


def report(root: str, metric: str | None = None) -> str:
    """Writes DIR/report.md, DIR/report.csv and figures (and the probe's, when runs hold
    probe.json); returns the markdown."""
    if os.path.isfile(root):
        raise UsageError(f"{root} is a file; give the directory of a run or of a sweep")
    rows = collect(root)
    if not rows:
        raise UsageError(f"no runs under {root} (looked for config.json + metrics.jsonl)")
    if metric is not None and not any(metric in r for r in rows):
        have = sorted({k for r in rows for k in r if k.startswith(("eval/", "best/eval/"))})
        raise UsageError(
            f"--metric {metric!r}: no run under {root} has it; choose from {', '.join(have)}"
            if have
            else f"--metric {metric!r}: no run under {root} has eval metrics yet"
        )
    try:
        return _write(root, rows, metric)
    except OSError as e:  # a read-only or full directory: nothing to report into
        raise UsageError(
            f"cannot write the report into {root}: {e.strerror or e} ({e.filename or root})"
        ) from None


def _write(root: str, rows: list[dict[str, Any]], metric: str | None) -> str:
    cols = columns_of(rows)
    with atomic_open(os.path.join(root, "report.csv"), newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    paths = figures(rows, root, metric or figure_metric(rows))
    md = markdown(rows, cols)
    probe = probe_report(root, rows)
    if probe is not None:
        md += "\n## Gradient probe (layer 0)\n\n" + probe_table(probe)
        paths += [os.path.join(root, p) for p in ("grad_vs_distance.png", "grad_heatmap.png")]
    with atomic_open(os.path.join(root, "report.md")) as f:
        f.write(
            md
            + "\n"
            + "\n".join(f"![{os.path.basename(p)}]({os.path.basename(p)})" for p in paths)
            + "\n"
        )
    return md
