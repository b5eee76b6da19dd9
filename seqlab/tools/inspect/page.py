"""``seqlab inspect``'s page: one HTML file, CSS and JS inline (``script``), the
per-character data as JSON in the page, gate saturation as inline SVG, other tasks' example
figures as base64 PNG. It works from file:// and inside a W&B Html panel."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from seqlab.tools.inspect.script import CSS, ERRORS_JS, PAGE_JS
from seqlab.tools.units import LEFT, RIGHT, SCORE

SECTIONS = (
    ("predictions", "1. Predictions"),
    ("cells", "2. Cells that mean something"),
    ("gates", "3. Gate saturation"),
    ("ngram", "4. Where the model beats the n-gram"),
    ("samples", "5. Samples over training"),
)
GATE_COLORS = {
    "input": "#1f77b4",
    "forget": "#2ca02c",
    "output": "#d62728",
    "reset": "#ff7f0e",
    "update": "#9467bd",
}


def _na(why: str) -> str:
    return f'<p class="na">Not applicable to this task: {escape(why)}</p>'


def _table(head: list[str], rows: list[list[str]], num_from: int = 1) -> str:
    """Cells are HTML already; columns from ``num_from`` are right-aligned numbers."""
    th = "".join(f"<th>{escape(h)}</th>" for h in head)
    body = "".join(
        "<tr>"
        + "".join(f"<td{' class=num' if j >= num_from else ''}>{c}</td>" for j, c in enumerate(r))
        + "</tr>"
        for r in rows
    )
    return f"<table><tr>{th}</tr>{body}</table>"


def _header(report: dict[str, Any]) -> str:
    run = report["run"]
    title = f"{run['task']}: {run['cell']} {run['layers']} x {run['hidden']}, step {run['step']}"
    metrics = ", ".join(f"{k} {v:.4g}" for k, v in sorted(run["metrics"].items()))
    lines = [f"<h1>seqlab inspect &mdash; {escape(title)}</h1>"]
    where = escape(run["workdir"]) + (f"; {escape(metrics)}" if metrics else "")
    lines.append(f'<p class="meta">{where}</p>')
    if "chars" in report:
        lines.append(
            f'<p class="meta">Text: {escape(report["source"])}, {len(report["chars"]):,} characters'
            + (
                f", read after the {report['context']:,} characters before it in the corpus "
                "(the model, the property lexer and the n-gram all start there)."
                if report["context"]
                else ", read from the model's initial state."
            )
            + "</p>"
        )
    lines += [f'<p class="note">{escape(n)}</p>' for n in report["notes"]]
    nav = " ".join(f'<a href="#{k}">{escape(t)}</a>' for k, t in SECTIONS)
    return "\n".join(lines) + f"\n<nav>{nav}</nav>"


def _predictions(report: dict[str, Any]) -> str:
    bits = [b for b in report["bits"] if b is not None]
    mean = sum(bits) / max(len(bits), 1)
    return (
        "<p>Each character is shaded by how unlikely the model found it before reading it "
        "(white: expected, red: surprising). Hover a character to see the model's five "
        f"likeliest guesses for that position (* marks the real one). Mean {mean:.3f} "
        "bits/character over this text.</p>"
        '<label>Shade by <select id="pred-mode"><option value="prob">1 - probability</option>'
        '<option value="bits">surprisal (bits, 8 = full)</option></select></label>'
        '<div id="pred-info" class="info">hover a character</div>'
        '<div id="pred-text" class="text"></div>'
    )


def _cells(report: dict[str, Any]) -> str:
    names = [s["name"] for s in report["series"]]
    rows, best = [], []
    for prop in report["ranking"]:
        buttons = " ".join(
            f'<button class="unit" data-pick="{u["series"]}:{u["unit"]}">'
            f"{escape(names[u['series']])} #{u['unit']} r={u['r']:+.2f}</button>"
            for u in prop["units"]
        )
        rows.append([escape(prop["name"]), escape(prop["desc"]), buttons or "constant here"])
        if prop["units"]:
            u = prop["units"][0]
            best.append(
                f"<h3>{escape(prop['name'])} cell? {escape(names[u['series']])} #{u['unit']}, "
                f"r = {u['r']:+.3f}</h3>"
                f'<div class="text small best-text" data-series="{u["series"]}" '
                f'data-unit="{u["unit"]}"></div>'
            )
    options = "".join(f'<option value="{i}">{escape(n)}</option>' for i, n in enumerate(names))
    return (
        f"<p>Every hidden unit (h, and tanh(c) for an LSTM) over the text, ranked per "
        f"property by {escape(SCORE)}; the sign of r says which way the unit moves. Red: "
        "positive activation, blue: negative. Click a unit to show it below.</p>"
        + _table(["property", "what", "best units (click one to show it below)"], rows, 9)
        + '<div id="unit-info" class="info">hover a character</div>'
        + "".join(best)
        + '<h3>Any unit</h3><p>Pick a unit: <select id="unit-series">'
        + options
        + '</select> unit <input id="unit-index" type="number" min="0" value="0" '
        + 'style="width:5em"> <b id="unit-label"></b></p>'
        + '<div id="unit-text" class="text"></div>'
    )


def _svg(layer: dict[str, Any], lm: bool) -> str:
    size, pad = 250, 30
    w = size - 2 * pad
    pos = lambda v: pad + v * w  # noqa: E731
    parts = [
        f'<svg width="{size}" height="{size}" viewBox="0 0 {size} {size}" '
        f'xmlns="http://www.w3.org/2000/svg"><rect x="{pad}" y="{pad}" width="{w}" '
        f'height="{w}" fill="none" stroke="#999"/>'
        f'<line x1="{pad}" y1="{pad}" x2="{pad + w}" y2="{pad + w}" stroke="#ddd"/>'
        f'<text x="{size / 2}" y="16" font-size="12" text-anchor="middle">'
        f"{escape(layer['name'])}</text>"
        f'<text x="{size / 2}" y="{size - 6}" font-size="10" text-anchor="middle">'
        f"left-saturated (&lt; {LEFT})</text>"
        f'<text x="10" y="{size / 2}" font-size="10" text-anchor="middle" '
        f'transform="rotate(-90 10 {size / 2})">right-saturated (&gt; {RIGHT})</text>'
    ]
    for gate, v in layer["gates"].items():
        color = GATE_COLORS.get(gate, "#555")
        for u, (x, y) in enumerate(zip(v["left"], v["right"], strict=True)):
            pick = f' data-pick-layer="{escape(layer["name"])}" data-unit="{u}"' if lm else ""
            parts.append(
                f'<circle cx="{pos(x):.1f}" cy="{pad + w - y * w:.1f}" r="2.6" fill="{color}" '
                f'fill-opacity="0.6"{pick}><title>{escape(gate)} gate, unit {u}: '
                f"{x:.2f} left, {y:.2f} right</title></circle>"
            )
    return "".join(parts) + "</svg>"


def _gates(report: dict[str, Any]) -> str:
    layers = report.get("gates") or []
    if not layers:
        cell = escape(report["run"]["cell"])
        return f'<p class="na">Not applicable to this cell: {cell} has no sigmoid gates.</p>'
    seen = list(dict.fromkeys(g for layer in layers for g in layer["gates"]))  # cell order
    legend = "".join(
        f'<span style="color:{GATE_COLORS.get(g, "#555")}">&#9679; {escape(g)}</span>' for g in seen
    )
    steps = "this text" if "chars" in report else f"{report['stats_examples']} eval examples"
    return (
        f"<p>Each dot is one gate of one unit: the fraction of the steps of {steps} it spends "
        f"left-saturated (&lt; {LEFT}) and right-saturated (&gt; {RIGHT}), as in Karpathy, "
        "Johnson &amp; Fei-Fei (2015), Fig. 3. Dots near the axes are switch-like; dots at "
        "the origin never saturate. Hover a dot for its unit.</p>"
        f'<p class="legend">{legend}</p><div class="svgs">'
        + "".join(_svg(layer, "chars" in report) for layer in layers)
        + "</div>"
    )


def _ngram(ngram: dict[str, Any]) -> str:
    if "na" in ngram:
        return f'<p class="na">{escape(ngram["na"])}</p>'

    def rows(kind: str) -> list[list[str]]:
        return [
            [
                escape(repr(r["name"]) if kind == "chars" else r["name"]),
                str(r["count"]),
                f"{r['model']:.3f}",
                f"{r['ngram']:.3f}",
                f"{r['ngram'] - r['model']:+.3f}",
            ]
            for r in ngram[kind]
        ]

    head = ["characters", "count", "model bits", f"{ngram['order']}-gram bits", "mean gain"]
    return (
        f"<p>Per character, the {ngram['order']}-gram's loss minus the model's (bits; the "
        f"n-gram is seqlab's interpolated absolute-discounting model fit on the last "
        f"{ngram['train_chars']:,} characters of the run's train split). Over this text: model "
        f"{ngram['mean_model']:.3f}, n-gram {ngram['mean_ngram']:.3f} bits/char. Green: the "
        "model is better; red: the n-gram is (the comparison with n-gram models in Karpathy, "
        "Johnson &amp; Fei-Fei 2015).</p><h3>By character class, largest mean gain first</h3>"
        + _table(head, rows("classes"))
        + "<h3>Characters seen at least 5 times, largest mean gain first</h3>"
        + _table(head, rows("chars"))
        + '<div id="gain-info" class="info">hover a character</div>'
        + '<div id="gain-text" class="text"></div>'
    )


def _samples(samples: dict[str, Any]) -> str:
    if not samples["rows"]:
        return f'<p class="na">{escape(samples["note"])}</p>'
    items = "".join(
        f'<div class="sample"><div class="sample-head">step {r["step"]}, temperature '
        f"{escape(r['temperature'])}</div><pre>{escape(r['text'])}</pre></div>"
        for r in samples["rows"]
    )
    return (
        "<p>The samples the run logged at its evals (WORKDIR/samples.jsonl), oldest first: "
        "the blog's evolution of samples while training.</p>"
        f'<div class="samples">{items}</div>'
    )


def _examples(report: dict[str, Any]) -> str:
    out = [
        "<p>The hidden state (and the LSTM's tanh(c)) and gates of each layer over time "
        "for a few eval examples, with the model's prediction beside the target.</p>"
    ]
    if report.get("examples_note"):
        out.append(f'<p class="note">{escape(report["examples_note"])}</p>')
    for ex in report["examples"]:
        rows = [[escape(k), f"<code>{escape(v)}</code>"] for k, v in ex["lines"]]
        out.append(
            f'<div class="example"><h3>{escape(ex["title"])}</h3>{_table(["", ""], rows, 9)}'
            f'<img alt="{escape(ex["title"])}" src="data:image/png;base64,{ex["png"]}"></div>'
        )
    return "".join(out)


def _data(report: dict[str, Any]) -> str:
    """The JSON the script reads; ``<`` escaped so no text can close the script element."""
    lm = "chars" in report
    keys = ("chars", "predictions", "bits", "series", "ranking") if lm else ()
    data = {k: report[k] for k in keys}
    data["lm"] = lm
    if lm and "gain" in report["ngram"]:
        data["ngram"] = {"gain": report["ngram"]["gain"], "order": report["ngram"]["order"]}
    return json.dumps(data, separators=(",", ":")).replace("<", "\\u003c")


def render(report: dict[str, Any]) -> str:
    """The whole page for a report from ``seqlab.tools.inspect``."""
    lm = "chars" in report
    task = f"{report['run']['task']} is a {report['run']['family']} task, not a character LM"
    body = {
        "predictions": _predictions(report) if lm else _na(task),
        "cells": _cells(report) if lm else _examples(report),
        "gates": _gates(report),
        "ngram": _ngram(report["ngram"]) if lm else _na(task),
        "samples": _samples(report["samples"]) if lm else _na(task),
    }
    titles = dict(SECTIONS)
    if not lm:
        titles["cells"] = "2. Hidden state and gates over time"
    sections = "".join(
        f'<section id="{k}"><h2>{escape(titles[k])}</h2>{body[k]}</section>' for k, _ in SECTIONS
    )
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>seqlab inspect: {escape(report['run']['workdir'])}</title>"
        f"<style>{CSS}</style><script>{ERRORS_JS}</script></head><body>"
        '<pre id="errors" hidden></pre>'
        + _header(report)
        + sections
        + '<pre id="selftest" hidden></pre>'
        + f'<script type="application/json" id="data">{_data(report)}</script>'
        + f"<script>{PAGE_JS}</script></body></html>\n"
    )
