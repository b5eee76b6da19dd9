"""Experiment 3 — the blog's character LM (Karpathy 2015, "The Unreasonable Effectiveness of
Recurrent Neural Networks") on tiny Shakespeare: eval-loss curve, test loss against character
n-gram baselines computed here, and samples at temperatures 0.2 / 0.5 / 1.0.

    python experiments/charlm_shakespeare/run.py          # quick: 2x256 LSTM, 10 min on CPU
    python experiments/charlm_shakespeare/run.py --full   # GPU/TPU: the blog's 3x512 LSTM

Everything goes through the `seqlab` command (train, eval on the test split via this
script, sample); the workdir resumes like any run. Writes results.md and eval_curve.png
next to this file. Tiny Shakespeare must be reachable (downloaded once, or in
$SEQLAB_DATA_DIR/tinyshakespeare/input.txt).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.path.join(ROOT, "configs", "charlm.py")


def seqlab(*args: str, capture: bool = False) -> str:
    cmd = [sys.executable, "-m", "seqlab", *args]
    out = subprocess.run(cmd, check=True, text=True, stdout=subprocess.PIPE if capture else None)
    return out.stdout if capture else ""


def test_loss(workdir: str) -> float:
    """Test-split loss of the latest checkpoint (stateful, like eval)."""
    from seqlab import load_run
    from seqlab.run.evaluate import Evaluator
    from seqlab.tasks import make_task

    run = load_run(workdir)
    task = make_task(run.config)
    return Evaluator(run.mdef, task)(run.params, task.test_batches(), "test/")["test/loss"]


def ngram_baselines(orders=(3, 5, 7)) -> dict[int, float]:
    """n-gram test loss (nats/char), trained on the train split of the same corpus/splits."""
    from seqlab.tasks import make_task
    from seqlab.tasks.ngram import NGramLM

    sys.path.insert(0, os.path.dirname(CONFIG))
    from charlm import get_config

    task = make_task(get_config())
    decode = task.vocab.decode
    train, test = decode(task.splits["train"]), decode(task.splits["test"])
    return {n: NGramLM(n).fit(train).loss(test, context=train[-n:]) for n in orders}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--minutes", type=float, default=10.0, help="quick mode's time limit")
    ap.add_argument(
        "--steps",
        type=int,
        default=1800,
        help="quick mode's schedule length (the cosine decays to its end): what the time "
        "limit allows at ~3 steps/s on a 2-core CPU (measured 3.1 on 2026-11-21; 2.3 on "
        "2026-12-02, when the limit stopped it at step 1,360)",
    )
    args = ap.parse_args()
    workdir = os.path.join(ROOT, "runs", "charlm_shakespeare" + ("_full" if args.full else ""))
    if args.full:
        overrides = [
            "--config.model.num_layers=3",
            "--config.model.hidden_size=512",
            "--config.model.dropout=0.5",
            "--config.train.num_steps=20000",
            "--config.train.eval_every=500",
        ]
    else:
        overrides = [
            f"--config.train.time_limit_s={args.minutes * 60}",
            f"--config.train.num_steps={args.steps}",
            "--config.train.eval_every=150",
            "--config.task.sample_every=900",
            "--config.train.checkpoint_every=900",
        ]
    seqlab(
        "train",
        "--config",
        CONFIG,
        "--workdir",
        workdir,
        "--config.train.progress=False",
        *overrides,
    )

    from seqlab.run.writers import read_metrics

    rows = read_metrics(os.path.join(workdir, "metrics.jsonl"))
    evals = [r for r in rows if "eval/loss" in r]
    test = test_loss(workdir)
    grams = ngram_baselines()
    samples = {
        t: seqlab(
            "sample",
            "--workdir",
            workdir,
            "--prime",
            "ROMEO:",
            "--length",
            "400",
            "--temperature",
            str(t),
            "--seed",
            "0",
            capture=True,
        )
        for t in (0.2, 0.5, 1.0)
    }
    plot(evals, grams, os.path.join(HERE, "eval_curve.png"))
    last = evals[-1]
    with open(os.path.join(workdir, "config.json")) as f:
        m = json.load(f)["model"]
    best_gram = min(grams, key=grams.get)
    lines = [
        f"# The blog's char LM on tiny Shakespeare ({'full' if args.full else 'quick'} mode)",
        "",
        f"Command: `python experiments/charlm_shakespeare/run.py{' --full' if args.full else ''}`"
        f" — a {m['num_layers']}-layer, {m['hidden_size']}-unit LSTM ({m['init']} init, "
        f"one-hot input fan-in {m.get('onehot_fan_in', 0) or 'vocab'}), "
        f"{os.cpu_count()}-core CPU, load average {os.getloadavg()[0]:.1f} at the end.",
        "",
        "**Published:** the blog's 3-layer 512 LSTM writes play-like text (speaker names, line "
        "breaks, archaic words); Karpathy, Johnson, Fei-Fei (2015) report char-LSTM test "
        "losses well below a 20-gram model's on comparable corpora (1.077 vs 1.195 nats/char "
        "on War and Peace).",
        "",
        "**Measured here:**",
        "",
        "| model | steps | wall time | val loss | test loss | test bpc |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| LSTM {m['num_layers']}x{m['hidden_size']} | {last['step']} | "
        f"{last.get('perf/wall_s', 0) / 60:.1f} min | {last['eval/loss']:.3f} | {test:.3f} | "
        f"{test / 0.6931:.3f} |",
    ]
    lines += [
        f"| {n}-gram (interpolated absolute discounting) | — | — | — | {v:.3f} | {v / 0.6931:.3f} |"
        for n, v in grams.items()
    ]
    verdict = "below" if test < grams[best_gram] else "ABOVE"
    lines += [
        "",
        f"The LSTM's test loss is {verdict} the best n-gram ({best_gram}-gram, "
        f"{grams[best_gram]:.3f}).",
        "",
        "![eval loss](eval_curve.png)",
        "",
        "How fast it learns against a 40-line PyTorch script, on the same batches, and which "
        "default made the difference: [time_to_quality.md](time_to_quality.md).",
        "",
    ]
    for t, text in samples.items():
        lines += [f"## Sample at temperature {t}", "", "```", text.strip(), "```", ""]
    with open(os.path.join(HERE, "results.md"), "w") as f:
        f.write("\n".join(lines))
    print(f"wrote {os.path.join(HERE, 'results.md')}")


def plot(evals: list[dict], grams: dict[int, float], path: str) -> None:
    from seqlab.tools.figures import plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(
        [r.get("perf/wall_s", 0) / 60 for r in evals],
        [r["eval/loss"] for r in evals],
        "o-",
        ms=3,
        label="LSTM val loss",
    )
    for n, v in grams.items():
        ax.axhline(v, ls="--", lw=1, color=f"C{n}", label=f"{n}-gram test loss")
    ax.set_xlabel("minutes of training")
    ax.set_ylabel("nats / char")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
