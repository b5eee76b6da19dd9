"""Figures (matplotlib, headless): gradient norm against distance, and over training."""

from __future__ import annotations

from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from seqlab.run.probe import log10_curve  # noqa: E402
from seqlab.run.writers import save_figure  # noqa: E402


def grad_vs_distance(results: dict, path: str, layer: str = "layer_0") -> None:
    """One panel per T: log10 g_t against distance T - t, one line per cell, at the first
    (init, dashed) and last (solid) probed step."""
    cells = list(results)
    lengths = sorted({int(T) for c in cells for T in results[c]})
    fig, axes = plt.subplots(1, len(lengths), figsize=(3.2 * len(lengths), 3.2), squeeze=False)
    colors = dict(zip(cells, plt.rcParams["axes.prop_cycle"].by_key()["color"], strict=False))
    for ax, T in zip(axes[0], lengths, strict=True):
        for cell in cells:
            steps = results[cell].get(str(T), {}).get(layer, {})
            if not steps:
                continue
            order = sorted(steps, key=lambda s: int(s.split("_")[1]))
            for key, style in ((order[0], "--"), (order[-1], "-")):
                lg = np.array(log10_curve(steps[key]), dtype=float)  # None (g = 0) -> nan
                ax.plot(
                    np.arange(len(lg))[::-1],
                    lg,
                    style,
                    color=colors[cell],
                    label=f"{cell} {key.replace('_', ' ')}",
                )
        ax.set_title(f"T = {T}")
        ax.set_xlabel("distance T - t")
    axes[0][0].set_ylabel("log10 ||dL/dh_t||")
    labels: dict[str, Any] = {}  # every cell's lines, whichever panels have them
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            labels.setdefault(label, handle)
    fig.tight_layout()
    fig.legend(
        labels.values(), labels.keys(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=7
    )  # beside the panels, not over the longest T's curves
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def grad_heatmap(results: dict, path: str, layer: str = "layer_0") -> None:
    """For the longest T, log10 g over (training step, distance), one panel per cell."""
    cells = list(results)
    T = str(max(int(T) for c in cells for T in results[c]))
    fig, axes = plt.subplots(1, len(cells), figsize=(3.6 * len(cells), 3.2), squeeze=False)
    for ax, cell in zip(axes[0], cells, strict=True):
        steps = results[cell].get(T, {}).get(layer, {})
        order = sorted(steps, key=lambda s: int(s.split("_")[1]))
        if not order:
            continue
        grid = np.array([log10_curve(steps[k])[::-1] for k in order], dtype=float)
        im = ax.imshow(grid, aspect="auto", cmap="viridis", origin="lower", interpolation="none")
        ax.set_yticks(range(len(order)), [k.split("_")[1] for k in order], fontsize=6)
        ax.set_title(f"{cell}, T = {T}")
        ax.set_xlabel("distance T - t")
        ax.set_ylabel("training step")
        fig.colorbar(im, ax=ax, label="log10 ||dL/dh_t||")
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
