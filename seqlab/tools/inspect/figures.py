"""The PNG figures of ``seqlab inspect`` (matplotlib, headless), written beside the page:
gate saturation (Karpathy, Johnson & Fei-Fei 2015, Fig. 3), the best unit per text property,
the model's gain over the n-gram by character class, and for tasks other than a char LM the
hidden state and gates of each example over time (also embedded in the page)."""

from __future__ import annotations

import base64
import os
from typing import Any

import numpy as np
from matplotlib.ticker import MaxNLocator

from seqlab.tools.figures import plt

GATE_COLORS = {"input": "C0", "forget": "C2", "output": "C3", "reset": "C1", "update": "C4"}


def _save(fig: Any, out: str, name: str) -> str:
    from seqlab.run.writers import save_figure

    fig.tight_layout()
    save_figure(fig, os.path.join(out, name), dpi=100)
    plt.close(fig)
    return name


def gate_saturation(layers: list[dict], out: str) -> str:
    """One panel per layer: each gate of each unit at (fraction of steps < 0.1, fraction
    > 0.9), as KJF15's Fig. 3."""
    n = len(layers)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.4), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        for gate, v in layer["gates"].items():
            ax.scatter(v["left"], v["right"], s=9, alpha=0.6, label=gate, c=GATE_COLORS.get(gate))
        ax.plot([0, 1], [1, 0], color="0.8", lw=0.8)
        ax.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title=layer["name"])
        ax.set_xlabel("fraction left-saturated (< 0.1)")
    axes[0][0].set_ylabel("fraction right-saturated (> 0.9)")
    axes[0][0].legend(fontsize=7, loc="upper right")
    return _save(fig, out, "gate_saturation.png")


def unit_scores(report: dict[str, Any], out: str) -> str:
    """Per text property, |r| of its best units (labelled layer/kind/unit)."""
    ranking = report["ranking"]
    names = [s["name"] for s in report["series"]]
    fig, axes = plt.subplots(1, len(ranking), figsize=(2.2 * len(ranking), 3.0), sharey=True)
    for ax, prop in zip(np.atleast_1d(axes), ranking, strict=True):
        best = prop["units"][:3]
        ax.bar(range(len(best)), [abs(u["r"]) for u in best], color="C0")
        labels = [f"{names[u['series']].replace('layer ', 'L')}\n#{u['unit']}" for u in best]
        ax.set_xticks(range(len(best)), labels, fontsize=6)
        ax.set_title(prop["name"], fontsize=8)
        ax.set_ylim(0, 1)
    np.atleast_1d(axes)[0].set_ylabel("|Pearson r|")
    return _save(fig, out, "unit_scores.png")


def ngram_gain(ngram: dict[str, Any], out: str) -> str:
    rows = ngram["classes"]
    fig, ax = plt.subplots(figsize=(6, 3.2))
    gains = [r["ngram"] - r["model"] for r in rows]
    ax.barh(range(len(rows)), gains, color=["C2" if g > 0 else "C3" for g in gains])
    ax.set_yticks(range(len(rows)), [f"{r['name']} ({r['count']})" for r in rows], fontsize=7)
    ax.invert_yaxis()
    ax.axvline(0, color="0.5", lw=0.8)
    ax.set_xlabel(f"mean gain over the {ngram['order']}-gram (bits/char)")
    return _save(fig, out, "ngram_gain.png")


def example(ex: dict[str, Any], out: str, name: str) -> str:
    """Each traced layer's h, tanh(c) and gates over time (units x steps), one row each."""
    panels = []
    for tr in ex["traces"]:
        panels.append((f"{tr.name} h", tr.h, "RdBu_r", (-1, 1)))
        if tr.c is not None:
            panels.append((f"{tr.name} tanh(c)", tr.c, "RdBu_r", (-1, 1)))
        panels += [(f"{tr.name} {g} gate", v, "viridis", (0, 1)) for g, v in tr.gates.items()]
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, 1.5 * len(panels) + 0.4), squeeze=False)
    for ax, (title, a, cmap, lim) in zip(axes[:, 0], panels, strict=True):
        lo, hi = lim if np.abs(a).max() <= 1 else (-np.abs(a).max(), np.abs(a).max())
        im = ax.imshow(a.T, aspect="auto", cmap=cmap, vmin=lo, vmax=hi, interpolation="none")
        ax.set_title(title, fontsize=8)
        ax.set_ylabel("unit", fontsize=7)
        fig.colorbar(im, ax=ax, fraction=0.03)
    axes[-1, 0].set_xlabel("step")
    axes[-1, 0].xaxis.set_major_locator(MaxNLocator(integer=True))
    return _save(fig, out, name)


def draw_figures(report: dict[str, Any], out: str) -> dict[str, str]:
    """Writes the report's figures into ``out``: {what: file name}. Example figures are also
    put in the report as base64 (``png``) so the page stays one file."""
    names = {}
    if report.get("gates"):
        names["gate_saturation"] = gate_saturation(report["gates"], out)
    if report.get("ranking"):
        names["unit_scores"] = unit_scores(report, out)
    if report.get("ngram") and "classes" in report["ngram"]:
        names["ngram_gain"] = ngram_gain(report["ngram"], out)
    for i, ex in enumerate(report.get("examples") or []):
        name = example(ex, out, f"example_{i + 1}.png")
        with open(os.path.join(out, name), "rb") as f:
            ex["png"] = base64.b64encode(f.read()).decode("ascii")
        names[f"example_{i + 1}"] = name
    return names
