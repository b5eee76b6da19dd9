"""Time-to-quality on the blog's char LM: seqlab's recipes against a 40-line PyTorch script,
on the same batches, the same val split and the same eval protocol (issue: "speed where
researchers feel it").

Every contender trains a 2-layer, 256-unit LSTM on tiny Shakespeare with batches of 64 x 100
characters. The batches are seqlab's own (``task.train_batch(step)``: random windows, a pure
function of (seed, step)) and the val loss is seqlab's (every chunk of the val streams,
``task.eval_batches()``), so the only differences are the ones a variant names. seqlab runs
are ordinary ``seqlab train`` processes (samples off, one checkpoint at the end, so that the
clock measures training and evaluation); their curve is read from metrics.jsonl. The PyTorch
script is the one a researcher writes in a few minutes: ``nn.Embedding(65, 256)`` ->
``nn.LSTM(256, 256, 2)`` -> ``nn.Linear``, Adam 2e-3 constant, global-norm clip 5, PyTorch's
default init and threads.

    python experiments/charlm_shakespeare/time_to_quality.py                 # every variant
    python experiments/charlm_shakespeare/time_to_quality.py --only torch,default --steps 100

Writes runs/charlm_ttq/<variant>/ and time_to_quality.md next to this file: val loss at
every eval step, seconds to each step, and the time each contender first reaches the
thresholds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.path.join(ROOT, "configs", "charlm.py")
THRESHOLDS = (2.0, 1.8, 1.7, 1.6)
# seqlab variants: the overrides each adds to configs/charlm.py (one factor at a time).
# "before" is the config before this comparison changed its default: one-hot rows at
# Flax's LeCun scale over the whole vocabulary (std 1/sqrt(65)) instead of unit variance.
SCRIPT_RECIPE = {
    "optim.learning_rate": 2e-3,
    "optim.schedule": "constant",
    "optim.warmup_steps": 0,
}
BEFORE = {"model.onehot_fan_in": 0}
EMBED_256 = {"model.input_kind": "embed", "model.embed_dim": 256}
# the script's init: PyTorch's U(+-1/sqrt(H)) LSTM (input kernel included), no forget bias
TORCH_INIT = {"model.init": "torch", "model.forget_bias": 0.0}
VARIANTS: dict[str, dict] = {
    "default": {},
    "before": BEFORE,
    "before+constant-2e-3": {**BEFORE, **SCRIPT_RECIPE},
    "before+embed-256": {**BEFORE, **EMBED_256},
    "before+embed-256+constant-2e-3": {**BEFORE, **EMBED_256, **SCRIPT_RECIPE},
    "before+torch-init": TORCH_INIT,
    "before+torch-init+forget-bias-1": {**TORCH_INIT, "model.forget_bias": 1.0},
    "before+torch-init+constant-2e-3": {**TORCH_INIT, **SCRIPT_RECIPE},
    "before+forget-bias-0": {**BEFORE, "model.forget_bias": 0.0},
    "before+forget-bias-0+constant-2e-3": {**BEFORE, "model.forget_bias": 0.0, **SCRIPT_RECIPE},
    "default+forget-bias-0": {"model.forget_bias": 0.0},
    "script": {**TORCH_INIT, **EMBED_256, "model.embed_init": "normal", **SCRIPT_RECIPE},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=600)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--only", default="", help="comma-separated contenders (torch, variants)")
    ap.add_argument("--report-only", action="store_true")
    ap.add_argument(
        "--core",
        type=int,
        default=-1,
        help="pin seqlab runs to this core with one XLA thread and keep only their per-step "
        "losses (for ablations run side by side; their clocks are not comparable)",
    )
    args = ap.parse_args()
    names = ["torch", *VARIANTS]
    chosen = [n for n in args.only.split(",") if n] or names
    unknown = [n for n in chosen if n not in names]
    if unknown:
        sys.exit(f"time_to_quality: unknown contender(s) {unknown}; choose from {names}")
    root = os.path.join(ROOT, "runs", "charlm_ttq")
    if args.core >= 0 and "torch" in chosen:
        sys.exit("time_to_quality: --core is for seqlab variants (ablations), not torch")
    for name in [] if args.report_only else chosen:
        path = os.path.join(root, name, "curve.json")
        # a fresh run each time: a resumed one would skip its clock
        shutil.rmtree(os.path.dirname(path), ignore_errors=True)
        os.makedirs(os.path.dirname(path))
        load0 = os.getloadavg()[0]
        if name == "torch":
            curve = run_torch(args.steps, args.eval_every)
        else:
            workdir = os.path.join(root, name)
            curve = run_seqlab(name, workdir, args.steps, args.eval_every, args.core)
        with open(path, "w") as f:
            json.dump(
                {"curve": curve, "load": [load0, os.getloadavg()[0]], "timed": args.core < 0}, f
            )
    curves = {}  # every contender run so far, so that side-by-side ablations share a report
    for name in names:
        path = os.path.join(root, name, "curve.json")
        if os.path.exists(path):
            with open(path) as f:
                curves[name] = json.load(f)
    write_report(curves)


def task_for_comparison():
    """seqlab's char-LM task under configs/charlm.py's defaults: the shared batches/evals."""
    sys.path.insert(0, os.path.dirname(CONFIG))
    from charlm import get_config

    from seqlab.tasks import make_task

    return make_task(get_config())


def run_torch(steps: int, eval_every: int) -> list[dict]:
    """The 40-line PyTorch script on seqlab's batches; [{step, wall_s, val}]."""
    import numpy as np
    import torch
    from torch import nn

    task = task_for_comparison()
    vocab = task.vocab.size
    torch.manual_seed(0)

    class CharLM(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab, 256)
            self.lstm = nn.LSTM(256, 256, 2, batch_first=True)
            self.head = nn.Linear(256, vocab)

        def forward(self, x):
            h, _ = self.lstm(self.embed(x))
            return self.head(h)

    model = CharLM()
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    as_t = lambda a: torch.from_numpy(np.asarray(a, np.int64))

    def val() -> float:
        total, count = 0.0, 0
        with torch.no_grad():
            for b in task.eval_batches():
                logits = model(as_t(b["inputs"]))
                t = as_t(b["targets"])
                nll = nn.functional.cross_entropy(
                    logits.flatten(0, 1), t.flatten(), reduction="sum"
                )
                total += float(nll)
                count += t.numel()
        return total / count

    curve, t0 = [], time.perf_counter()
    for step in range(steps):
        b = task.train_batch(step)
        logits = model(as_t(b["inputs"]))
        loss = nn.functional.cross_entropy(logits.flatten(0, 1), as_t(b["targets"]).flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            curve.append({"step": step + 1, "val": val(), "wall_s": time.perf_counter() - t0})
            p = curve[-1]
            print(f"torch step {p['step']}: val {p['val']:.4f} ({p['wall_s']:.0f} s)", flush=True)
    return curve


def run_seqlab(name: str, workdir: str, steps: int, eval_every: int, core: int) -> list[dict]:
    """``seqlab train`` with the variant's overrides; its eval curve from metrics.jsonl.
    ``core`` >= 0: pinned to that core with one XLA thread."""
    from seqlab.run.writers import read_metrics

    flags = [f"--config.{k}={v}" for k, v in VARIANTS[name].items()]
    env = dict(os.environ)
    if core >= 0:
        env["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false"
    subprocess.run(
        [sys.executable, "-m", "seqlab", "train", "--config", CONFIG, "--workdir", workdir]
        + flags
        + [f"--config.train.num_steps={steps}", f"--config.train.eval_every={eval_every}"]
        + [f"--config.train.checkpoint_every={steps}", "--config.task.sample_length=0"]
        + ["--config.train.progress=False"],
        check=True,
        env=env,
        preexec_fn=(lambda: os.sched_setaffinity(0, {core})) if core >= 0 else None,
    )
    rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    return [
        {"step": r["step"], "val": r["eval/loss"], "wall_s": r["perf/wall_s"]}
        for r in rows
        if "eval/loss" in r
    ]


def write_report(curves: dict[str, dict]) -> None:
    timed = {k: c for k, c in curves.items() if c.get("timed", True)}
    untimed = {k: c for k, c in curves.items() if not c.get("timed", True)}
    steps_seen = sorted({p["step"] for c in curves.values() for p in c["curve"]})
    head = "| contender | " + " | ".join(f"step {s}" for s in steps_seen)
    rule = "| --- |" + " --- |" * len(steps_seen)
    lines = [
        "# Time-to-quality: seqlab's recipes against a 40-line PyTorch script",
        "",
        "2-layer 256-unit LSTM, tiny Shakespeare, batches of 64 x 100 from seqlab's own batch "
        "stream, val loss (nats/char) on seqlab's val split, every contender from the same "
        "first batch; command: `python experiments/charlm_shakespeare/time_to_quality.py`. "
        "`torch` is the PyTorch script (nn.Embedding(65, 256), nn.LSTM(256, 256, 2), Adam "
        "2e-3 constant, clip 5, PyTorch's init and default threads). The seqlab variants are "
        "overrides of configs/charlm.py:",
        "",
        *[f"- `{k}`: {v or 'none (the config as committed)'}" for k, v in VARIANTS.items()],
        "",
        "## Alone on the machine: val loss (seconds since the start, compile included)",
        "",
        head + " | load (start, end) |",
        rule + " --- |",
    ]
    for name, c in timed.items():
        at = {p["step"]: p for p in c["curve"]}
        cells = [
            f"{at[s]['val']:.3f} ({at[s]['wall_s']:.0f} s)" if s in at else "" for s in steps_seen
        ]
        load = "{:.1f}, {:.1f}".format(*c["load"])
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {load} |")
    if untimed:
        lines += [
            "",
            "## Ablations: val loss only",
            "",
            "Run with `--core N`: pinned to one core with one XLA thread, two at a time, so "
            "their clocks say nothing; the loss at a step does not depend on the clock.",
            "",
            head + " |",
            rule,
        ]
        for name, c in untimed.items():
            at = {p["step"]: p["val"] for p in c["curve"]}
            lines.append(
                f"| {name} | "
                + " | ".join(f"{at[s]:.3f}" if s in at else "" for s in steps_seen)
                + " |"
            )
    lines += ["", "## First eval at or below each val loss: step (seconds)", ""]
    lines += ["| contender | " + " | ".join(f"<= {t}" for t in THRESHOLDS) + " |"]
    lines += ["| --- |" + " --- |" * len(THRESHOLDS)]
    for name, c in curves.items():
        cells = []
        for t in THRESHOLDS:
            hit = next((p for p in c["curve"] if p["val"] <= t), None)
            clock = f" ({hit['wall_s']:.0f} s)" if hit and c.get("timed", True) else ""
            cells.append(f"{hit['step']}{clock}" if hit else "—")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += reading(curves)
    path = os.path.join(HERE, "time_to_quality.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}")


def reading(curves: dict[str, dict]) -> list[str]:
    """Computed verdicts: seqlab's default against the script at equal steps and equal wall
    time, and each one-factor variant against ``before`` at the last step."""
    out = ["", "## Reading (computed from the rows above)", ""]
    last = lambda c: c["curve"][-1]
    if "torch" in curves and "default" in curves:
        t, d = curves["torch"], curves["default"]
        lt, ld = last(t), last(d)
        out.append(
            f"- Equal steps (step {ld['step']}): default {ld['val']:.3f} vs torch {lt['val']:.3f}"
            f" -> {'default ahead or even' if ld['val'] <= lt['val'] else 'torch ahead'}."
        )
        if d.get("timed", True) and t.get("timed", True):
            budget = min(lt["wall_s"], ld["wall_s"])
            at = lambda c: min(
                (p for p in c["curve"] if p["wall_s"] <= budget),
                key=lambda p: p["val"],
                default=None,
            )
            pd, pt = at(d), at(t)
            if pd and pt:
                out.append(
                    f"- Equal wall time ({budget:.0f} s, the shorter run): best eval so far "
                    f"default {pd['val']:.4f} (step {pd['step']}) vs torch {pt['val']:.4f} "
                    f"(step {pt['step']}) -> "
                    f"{'default ahead or even' if pd['val'] <= pt['val'] else 'torch ahead'}."
                )
    for ref in ("before", "default"):  # one factor at a time against the run it changes
        if ref not in curves:
            continue
        base = last(curves[ref])
        for name, c in curves.items():
            changed = name.startswith(ref + "+") or (ref == "before" and name == "default")
            if changed and last(c)["step"] == base["step"]:
                delta = last(c)["val"] - base["val"]
                out.append(f"- `{name}` vs `{ref}` at step {base['step']}: {delta:+.3f}")
    return out


if __name__ == "__main__":
    main()
