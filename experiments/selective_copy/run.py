"""Experiment — selective copying (Gu & Dao 2023, "Mamba", Table 1): a selective recurrence
(Mamba's S6, Delta/B/C functions of the input) against a time-invariant one (the LRU, like
S4), with a GRU, the DeltaNet and causal attention (2 pre-norm Transformer blocks, 4 heads,
rotary positions, a window covering the whole T + 8 token sequence) beside them.

    nice -n 10 python experiments/selective_copy/run.py               # every cell
    nice -n 10 python experiments/selective_copy/run.py --cells mamba,lru --steps 1500
    python experiments/selective_copy/run.py --report-only

Each point is ``seqlab train --config=configs/selective.py:selective_copy,cell=<c>,
layers=2,T=32`` with 32 units (8 data tokens from a vocabulary of 8 in 32 noise steps; Adam
3e-3, clip 1, batch 64: what a shared 2-core CPU runs in minutes), one workdir per cell
under runs/selective_copy/; re-running resumes. results.md beside this file: published
beside measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
OUT = os.path.join(ROOT, "runs", "selective_copy")
#: cell -> (published accuracy, what it was published for)
PUBLISHED = {
    "mamba": ("99.8%", "S6 in Mamba's block (Gu & Dao 2023, Table 1)"),
    "lru": ("18.3%", "S4 without gating, time-invariant (Gu & Dao 2023, Table 1)"),
    "gru": ("", ""),
    "deltanet": ("", ""),
    # no attention row in Gu & Dao's Table 1; Jelassi et al. 2024 ("Repeat After Me") show
    # Transformers learning to copy strings far sooner than SSMs: a neighbouring task, no number
    "attention": ("", ""),
}
HEADS = 4  # attention: model.num_heads (the config default), head width hidden / 4
READINGS = ("Reading:", "Attention:")  # the paragraphs report() writes under the table
MARKERS = 8  # the selective_copy config's num_memorize: the sequence is T + 8 tokens long


def train(cell: str, steps: int, layers: int, hidden: int, T: int) -> None:
    workdir = os.path.join(OUT, point(cell, layers, hidden, T))
    cmd = [
        sys.executable,
        "-m",
        "seqlab",
        "train",
        f"--config=configs/selective.py:selective_copy,cell={cell},layers={layers},T={T}",
        f"--workdir={workdir}",
        f"--config.train.num_steps={steps}",
        "--config.train.progress=False",
        "--config.wandb.mode=disabled",
        f"--config.model.hidden_size={hidden}",
    ]
    if cell == "attention":  # every query sees every earlier token of the T + 8
        cmd += [f"--config.model.num_heads={HEADS}", f"--config.model.window={T + MARKERS}"]
    path = os.path.join(workdir, "timing.json")
    before = {"wall_s": 0.0, "load_start": os.getloadavg()[0]}
    if os.path.exists(path):  # a resumed (extended) run: add to the earlier runs' wall time
        with open(path) as f:
            before = json.load(f)
    t0 = time.time()
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = before["wall_s"] + time.time() - t0
    with open(path, "w") as f:
        json.dump({"wall_s": wall, "load_start": before["load_start"],
                   "load_end": os.getloadavg()[0]}, f)  # fmt: skip


def point(cell: str, layers: int, hidden: int, T: int) -> str:
    """The workdir name of one setting (a changed setting never resumes another's run)."""
    return f"{cell}_L{layers}_H{hidden}_T{T}"


def read(name: str) -> dict | None:
    path = os.path.join(OUT, name, "metrics.jsonl")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        evals = [r for r in map(json.loads, f) if "eval/accuracy" in r]
    if not evals:
        return None
    timing = os.path.join(OUT, name, "timing.json")
    t = {}
    if os.path.exists(timing):
        with open(timing) as f:
            t = json.load(f)
    best = max(evals, key=lambda r: r["eval/accuracy"])
    return {"last": evals[-1], "best": best, "evals": evals, **t}


def recorded() -> tuple[dict[str, str], dict[str, str]]:
    """What results.md already holds: its table rows by cell and its paragraphs by first word
    ("Reading:", "Attention:"). A row or reading whose run directory is gone (runs/ is not
    committed) stays as it was measured rather than vanishing on the next report."""
    path = os.path.join(HERE, "results.md")
    if not os.path.exists(path):
        return {}, {}
    with open(path) as f:
        text = f.read()
    rows = [ln for ln in text.splitlines() if ln.startswith("| ") and not ln.startswith("| cell")]
    cells = {r.split("|")[1].strip(): r for r in rows if not r.startswith("| ---")}
    paras = {p.split(" ", 1)[0]: p for p in text.split("\n\n") if p.startswith(READINGS)}
    return cells, paras


def report(layers: int, hidden: int, T: int) -> None:
    rows, paras = recorded()
    lines = [
        "# Selective copying: a selective SSM (Mamba) against a time-invariant one (LRU), "
        "and attention",
        "",
        "Command: `nice -n 10 python experiments/selective_copy/run.py`; each cell is "
        f"`seqlab train --config=configs/selective.py:selective_copy,cell=<c>,layers={layers},"
        f"T={T}`"
        f" --config.model.hidden_size={hidden} (8 data tokens, vocabulary 8, T={T} context "
        "steps, Adam 3e-3, clip 1, "
        "batch 64). Accuracy: fraction of the 8 data tokens recalled in order, on 1,024 "
        "fixed eval sequences; chance 12.5%. Machine: "
        f"{platform.machine()} 2-core VM shared with other jobs (1-min load at start/end).",
        "",
        "**Budget**: Gu & Dao train at T=4096 with 16 tokens from 16 (their appendix: 400K "
        "steps); these points are ~1,000 steps at T=32 with one seed each (the steps column), "
        "a much easier and much shorter setting. The published numbers are for theirs.",
        "",
        "| cell | published | measured eval accuracy (last) | best eval (step) | steps | "
        "wall s | load start/end |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for cell, (pub, what) in PUBLISHED.items():
        r = read(point(cell, layers, hidden, T))
        if r is None:
            if cell in rows:
                lines.append(rows[cell])
            continue
        last, best = r["last"], r["best"]
        lines.append(
            f"| {cell} | {pub + ' — ' + what if pub else '—'} | "
            f"{100 * last['eval/accuracy']:.1f}% | {100 * best['eval/accuracy']:.1f}% "
            f"({best['step']}) | {last['step']} | {r.get('wall_s', float('nan')):.0f} | "
            f"{r.get('load_start', float('nan')):.1f}/{r.get('load_end', float('nan')):.1f} |"
        )
    m, r = (read(point(c, layers, hidden, T)) for c in ("mamba", "lru"))
    if m and r and m["last"]["step"] == r["last"]["step"]:
        lines += [
            "",
            f"Reading: at equal steps ({m['last']['step']}) the selective Mamba is ahead of the "
            f"time-invariant LRU, {100 * m['last']['eval/accuracy']:.1f}% vs "
            f"{100 * r['last']['eval/accuracy']:.1f}% (one seed each: the direction of Gu & "
            "Dao's contrast, not its size, and no interval). Neither has converged. At T=32 a "
            "time-invariant recurrence can still place 8 tokens in its state by position, which "
            "a T=4096 context rules out, so the LRU's number here says little about S4's 18.3%.",
        ]
    elif "Reading:" in paras:
        lines += ["", paras["Reading:"].strip()]
    a = read(point("attention", layers, hidden, T))
    if a:
        lines += ["", attention_reading(a, layers, hidden)]
    elif "Attention:" in paras:
        lines += ["", paras["Attention:"].strip()]
    with open(os.path.join(HERE, "results.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


def attention_reading(a: dict, layers: int, hidden: int) -> str:
    """The sentence under the table on the attention row: what was published, what held."""
    acc = [(r["step"], 100 * r["eval/accuracy"]) for r in a["evals"]]
    (s0, a0), (sb, ab), (sl, al) = acc[0], max(acc, key=lambda e: e[1]), acc[-1]
    dips = [f"{a:.1f}% at {s}" for (_, p), (s, a) in zip(acc, acc[1:], strict=False) if a < p]
    if ab >= 99:
        held = "It holds here: attention solves the task"
    elif ab >= 90:
        held = "It nearly holds on this budget: attention comes close to solving the task"
    else:
        held = "It does not hold on this budget: attention has not solved the task"
    return (
        'Attention: published, Transformers learn to copy (Jelassi et al. 2024, "Repeat After '
        "Me\", for copying whole strings; Gu & Dao's Table 1 has no attention row, so no number "
        f"to set beside it). {held}, {a0:.1f}% at the first eval (step {s0}), best {ab:.1f}% "
        f"(step {sb}), last {al:.1f}% (step {sl})"
        + (
            f", not monotone (dips to {', '.join(dips)}; the training loss spikes at the "
            "constant Adam 3e-3, no warm-up)"
            if dips
            else ""
        )
        + f". One seed; {layers} pre-norm blocks of width {hidden}, {HEADS} heads of width "
        f"{hidden // HEADS}, rotary positions, causal over all T + {MARKERS} tokens. Wall "
        "times are not comparable across rows: each ran under a different load."
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", default=",".join(PUBLISHED))
    ap.add_argument("--steps", type=int, default=1200)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--hidden", type=int, default=32)
    ap.add_argument("--T", type=int, default=32)
    ap.add_argument("--report-only", action="store_true")
    args = ap.parse_args()
    if not args.report_only:
        for cell in args.cells.split(","):
            if cell not in PUBLISHED:
                sys.exit(f"unknown cell {cell!r}; choose from {', '.join(PUBLISHED)}")
            train(cell, args.steps, args.layers, args.hidden, args.T)
            report(args.layers, args.hidden, args.T)
    report(args.layers, args.hidden, args.T)


if __name__ == "__main__":
    main()
