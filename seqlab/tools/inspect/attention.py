"""``seqlab inspect`` for a character LM whose mixer is attention (no recurrent state, so the
hidden-unit and gate sections do not apply): each layer's attention weights, per head, from
one chosen character (``--position``) to the characters it sees, and each layer's whole map
(heads averaged) over the text; one self-contained page (images inline) plus the PNGs.
"""

from __future__ import annotations

import base64
import html
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqlab.errors import UsageError
from seqlab.tasks.corpora import Vocab
from seqlab.tools.inspect.lm import symbol_chars

#: the whole-map figure shows at most this many characters (the last ones of the text)
MAP_CHARS = 160


@nnx.jit
def _weights(model: Any, ids: jax.Array) -> list[jax.Array]:
    """Each layer's (heads, T, T) attention weights over ``ids`` (1, T), read from position 0."""
    stack = model.rnn
    x = model.inputs(ids, ids_ok=True)
    x = stack.input_proj(x) if stack.input_proj is not None else x
    maps = []
    for block in stack.layers:
        maps.append(block.layer.attention_weights(block.norm(x))[0])
        x, _ = block(x)
    return maps


def attention_maps(model: Any, ids: np.ndarray) -> list[np.ndarray]:
    """(heads, N, N) float64 weights per layer for the text ``ids`` (N,)."""
    maps = _weights(model, jnp.asarray(np.asarray(ids, np.int32))[None])
    return [np.asarray(m, np.float64) for m in maps]


def _label(ch: str) -> str:
    return {"\n": "\\n", " ": "\u2423", "\t": "\\t"}.get(ch, ch)


def _png(fig: Any, path: str) -> str:
    fig.savefig(path, dpi=100)
    with open(path, "rb") as f:
        return base64.b64encode(f.read()).decode()


def draw(maps: list[np.ndarray], chars: list[str], position: int, out: str) -> list[str]:
    """Per layer: PNG of the chosen character's weights (heads x keys it sees) and of the
    whole map (heads averaged, the last ``MAP_CHARS`` characters); base64 for the page."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pngs = []
    for k, m in enumerate(maps):
        row = m[:, position, : position + 1]
        seen = np.nonzero(row.max(0) > 0)[0]
        lo = seen[0] if seen.size else 0
        fig, axes = plt.subplots(2, 1, figsize=(max(6, 0.18 * (position + 1 - lo)), 7))
        im = axes[0].imshow(row[:, lo:], aspect="auto", cmap="viridis", vmin=0)
        axes[0].set_xticks(range(position + 1 - lo), [_label(c) for c in chars[lo : position + 1]])
        axes[0].set_yticks(range(row.shape[0]))
        axes[0].set_ylabel("head")
        axes[0].set_title(f"layer {k}: weights from {_label(chars[position])!r} (#{position})")
        fig.colorbar(im, ax=axes[0])
        s = max(0, len(chars) - MAP_CHARS)
        axes[1].imshow(m.mean(0)[s:, s:], cmap="magma", interpolation="nearest")
        axes[1].set_title(f"layer {k}: all queries (rows) x keys, heads averaged, from #{s}")
        fig.tight_layout()
        pngs.append(_png(fig, os.path.join(out, f"attention_layer_{k}.png")))
        plt.close(fig)
    return pngs


def top_keys(maps: list[np.ndarray], chars: list[str], position: int, k: int = 5) -> list:
    """Per layer and head: the ``k`` most attended (index, character, weight) from ``position``."""
    rows = []
    for m in maps:
        heads = []
        for w in m[:, position, : position + 1]:
            best = np.argsort(-w, kind="stable")[:k]
            heads.append([(int(j), chars[j], round(float(w[j]), 4)) for j in best])
        rows.append(heads)
    return rows


def attention_page(
    model: Any, vocab: Vocab, ids: np.ndarray, out: str, *, position: int = -1, title: str = ""
) -> str:
    """Writes OUT/index.html (+ the PNGs) for the text ``ids``; returns the page's path."""
    n = len(ids)
    pos = position if position >= 0 else n + position
    if not 0 <= pos < n:
        raise UsageError(f"--position {position}: the inspected text has {n} characters")
    chars = [str(c) for c in symbol_chars(vocab)[np.asarray(ids, np.int64)]]
    maps = attention_maps(model, ids)
    os.makedirs(out, exist_ok=True)
    pngs = draw(maps, chars, pos, out)
    tops = top_keys(maps, chars, pos)
    text = "".join(
        f"<b style='background:#fd0'>{html.escape(c)}</b>" if i == pos else html.escape(c)
        for i, c in enumerate(chars)
    )
    parts = [
        f"<html><head><meta charset='utf-8'><title>attention: {html.escape(title)}</title>",
        "</head><body style='font-family:sans-serif'>",
        f"<h1>Attention maps</h1><p>{html.escape(title)}</p>",
        f"<p>Chosen character #{pos} ({html.escape(_label(chars[pos]))!s}), highlighted:</p>",
        f"<pre style='white-space:pre-wrap'>{text}</pre>",
    ]
    for k, (png, heads) in enumerate(zip(pngs, tops, strict=True)):
        parts.append(f"<h2>Layer {k}</h2><img src='data:image/png;base64,{png}'><ul>")
        for h, best in enumerate(heads):
            keys = ", ".join(f"#{j} {html.escape(_label(c))!s} {w}" for j, c, w in best)
            parts.append(f"<li>head {h}: {keys}</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    path = os.path.join(out, "index.html")
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(parts))
    return path
