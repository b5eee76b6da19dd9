"""The ``seqlab study`` report as a W&B run in the study's group: the per-arm table (mean and
95% CI over seeds, the best trial, its capacity), every pair's Welch test with Holm's
correction, the ordering, and the learning-rate sensitivity figure. The trials' own runs are
grouped per arm (``NAME-ARM``); this one is ``NAME-report``, job type ``study``."""

from __future__ import annotations

import os
from typing import Any

from ml_collections import ConfigDict

from seqlab.run.writers import init_or_offline
from seqlab.tools import stats


def arm_rows(record: dict[str, Any], scores: dict[str, list[float]]) -> list[list[Any]]:
    """One row per arm: name, seeds, mean, CI low/high, std, best trial, its validation
    value, hidden size and parameters (None where capacity was not matched)."""
    rows = []
    for arm, values in scores.items():
        s = stats.summarize(arm, values)
        best = record["best"][arm]
        cap = record.get("capacity", {}).get(arm, {})
        rows.append([
            arm, s.n, s.mean, s.lo, s.hi, s.std, best["number"], best["value"],
            cap.get("hidden_size"), cap.get("params"),
        ])  # fmt: skip
    return rows


ARM_COLUMNS = ["arm", "seeds", "mean", "ci95_low", "ci95_high", "std", "best_trial"]
ARM_COLUMNS += ["best_validation", "hidden_size", "params"]
PAIR_COLUMNS = ["a", "b", "difference", "welch_t", "p", "p_holm", "separated"]


def log_report(
    workdir: str, record: dict[str, Any], scores: dict[str, list[float]], wandb: ConfigDict,
    name: str, mode: str,
) -> str | None:  # fmt: skip
    """Logs the report to W&B in ``mode`` (online falls back to offline when W&B cannot be
    reached); returns the run's directory, or None when ``mode`` is ``disabled``."""
    if mode == "disabled":
        return None
    import wandb as wb

    metric = f"test/{record['metric']}"
    kwargs = dict(
        project=wandb.project,
        entity=wandb.entity or None,
        group=name,
        name=f"{name}-report",
        job_type="study",
        dir=workdir,
        config={k: record[k] for k in ("config", "arm_key", "arms", "budget", "seeds")},
    )
    run, _ = init_or_offline(wb, mode, **kwargs)
    pairs = [[p.a, p.b, p.diff, p.t, p.p, p.p_holm, p.significant] for p in stats.compare(scores)]
    logs: dict[str, Any] = {
        "study/arms": wb.Table(columns=ARM_COLUMNS, data=arm_rows(record, scores)),
        "study/pairs": wb.Table(columns=PAIR_COLUMNS, data=pairs),
    }
    figure = os.path.join(workdir, "lr_sensitivity.png")
    if os.path.exists(figure):
        logs["study/lr_sensitivity"] = wb.Image(figure)
    run.log(logs)
    run.summary["ordering"] = stats.ordering(scores, record["mode"])
    run.summary["metric"] = metric
    directory = os.path.dirname(run.dir)
    run.finish()
    return directory
