"""Statistics for comparing arms over seeds: mean and t confidence interval per arm, Welch's
t-test for every pair with Holm's correction for the number of pairs, and the ordering
they support (``gru ~ lstm > rnn``: ``>`` only where the corrected test separates
neighbours). Experiments reuse it for their tables and claims."""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ArmSummary:
    name: str
    n: int
    mean: float
    std: float  # sample std (ddof=1); 0 for one seed
    lo: float  # the confidence interval (nan for one seed)
    hi: float


@dataclass(frozen=True)
class Pair:
    a: str
    b: str
    diff: float  # mean(a) - mean(b)
    t: float
    p: float  # Welch's two-sided p
    p_holm: float  # corrected for every pair
    significant: bool


def mean_ci(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): Student's t interval over the values (seeds)."""
    from scipy import stats

    x = np.asarray(values, np.float64)
    m = float(x.mean())
    if len(x) < 2:
        return m, math.nan, math.nan
    half = stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x))
    return m, m - half, m + half


def summarize(name: str, values: Sequence[float], level: float = 0.95) -> ArmSummary:
    x = np.asarray(values, np.float64)
    m, lo, hi = mean_ci(x, level)
    return ArmSummary(name, len(x), m, float(x.std(ddof=1)) if len(x) > 1 else 0.0, lo, hi)


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(t, two-sided p) of Welch's unequal-variance t-test; p = 1 where undefined (one seed
    per arm, or no spread and equal means), 0 for different means without spread."""
    from scipy import stats

    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if len(x) < 2 or len(y) < 2:
        return math.nan, 1.0
    vx, vy = x.var(ddof=1) / len(x), y.var(ddof=1) / len(y)
    if vx + vy == 0:
        return (
            (math.nan, 1.0)
            if x.mean() == y.mean()
            else (math.copysign(math.inf, x.mean() - y.mean()), 0.0)
        )
    t, p = stats.ttest_ind(x, y, equal_var=False)
    return float(t), float(p)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (step-down, monotone, capped at 1)."""
    p = np.asarray(pvalues, np.float64)
    order = np.argsort(p)
    out = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        out[i] = running
    return out.tolist()


def compare(arms: dict[str, Sequence[float]], alpha: float = 0.05) -> list[Pair]:
    """Every pair of arms: Welch's t-test, Holm-corrected over all pairs."""
    pairs = list(itertools.combinations(arms, 2))
    raw = [welch(arms[a], arms[b]) for a, b in pairs]
    adjusted = holm([p for _, p in raw]) if raw else []
    return [
        Pair(a, b, float(np.mean(arms[a]) - np.mean(arms[b])), t, p, q, q < alpha)
        for (a, b), (t, p), q in zip(pairs, raw, adjusted, strict=True)
    ]


def ordering(arms: dict[str, Sequence[float]], mode: str = "max", alpha: float = 0.05) -> str:
    """Arms best first, ``>`` between neighbours the corrected test separates, ``~`` where it
    does not: ``gru ~ lstm > rnn``."""
    ranked = sorted(arms, key=lambda k: float(np.mean(arms[k])), reverse=mode == "max")
    sig = {frozenset((p.a, p.b)): p.significant for p in compare(arms, alpha)}
    out = ranked[:1]
    for prev, cur in itertools.pairwise(ranked):
        out += [">" if sig[frozenset((prev, cur))] else "~", cur]
    return " ".join(out)


def markdown(arms: dict[str, Sequence[float]], metric: str, alpha: float = 0.05) -> str:
    """Two tables: per arm mean [95% CI] over seeds; every pair with raw and Holm p."""
    lines = [f"| arm | seeds | {metric} mean | 95% CI | std |", "| --- | --- | --- | --- | --- |"]
    for name, v in arms.items():
        s = summarize(name, v)
        lines.append(f"| {name} | {s.n} | {s.mean:.4g} | [{s.lo:.4g}, {s.hi:.4g}] | {s.std:.3g} |")
    lines += ["", "| pair | difference | Welch t | p | p (Holm) | separated |"]
    lines.append("| --- | --- | --- | --- | --- | --- |")
    for p in compare(arms, alpha):
        mark = "yes" if p.significant else "no"
        lines.append(
            f"| {p.a} vs {p.b} | {p.diff:+.4g} | {p.t:.3g} | {p.p:.3g} | {p.p_holm:.3g} | {mark} |"
        )
    return "\n".join(lines)


def csv_rows(arms: dict[str, Sequence[float]], metric: str) -> str:
    """One row per arm: name, seeds, mean, CI, std, and the per-seed values."""
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["arm", "seeds", f"{metric}_mean", "ci95_low", "ci95_high", "std", "values"])
    for name, v in arms.items():
        s = summarize(name, v)
        w.writerow([name, s.n, s.mean, s.lo, s.hi, s.std, " ".join(f"{x:.6g}" for x in v)])
    return buf.getvalue()
