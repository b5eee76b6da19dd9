"""What a user gets by default on a CPU: ``seqlab train``'s seconds per step under XLA's
default threading, one thread and one core, against the PyTorch script with its default
threads and with one (issue: "speed where researchers feel it", part 2).

Every contender trains the char LM of configs/charlm.py (2-layer 256-unit LSTM, batches of
64 x 100, seqlab's own batches) for ``--steps`` steps. A seqlab contender is a ``seqlab
train`` process; its seconds per step come from the logged ``perf/steps_per_sec`` of every
log window after the first (the first holds the compile). The PyTorch script times the same
steps after ``--warmup`` steps. Settings (environment of the child process):

* ``xla-default``: nothing set (what ``seqlab train`` does unless told otherwise): XLA:CPU
  sizes its thread pools to the cores the process may use, here 2;
* ``eigen-1-thread``: ``XLA_FLAGS=--xla_cpu_multi_thread_eigen=false`` (Eigen's matmuls on
  the calling thread; XLA's own pool still runs independent ops side by side);
* ``1-core``: the process pinned to one core (``os.sched_setaffinity``), so every pool has
  one thread. XLA has no flag for "two threads" other than its default on this machine;
* ``no-hugepages``: ``SEQLAB_HUGEPAGES=0``, the default before huge-page malloc
  (``seqlab_entry``: the heavy commands re-execute with ``glibc.malloc.hugetlb=1``);
* ``2-devices``: ``XLA_FLAGS=--xla_force_host_platform_device_count=2``: two XLA CPU
  devices, so ``seqlab train`` splits each batch over them (data parallel, one per core).

    python experiments/charlm_shakespeare/threads.py [--steps 150] [--repeats 2]

Writes threads.md next to this file (with the CPU model, flags and load average).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CONFIG = os.path.join(ROOT, "configs", "charlm.py")
SEQLAB_SETTINGS: dict[str, dict[str, str]] = {
    "xla-default": {},
    "eigen-1-thread": {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"},
    "1-core": {"PIN": "0"},
    "no-hugepages": {"SEQLAB_HUGEPAGES": "0"},
    "2-devices": {"XLA_FLAGS": "--xla_force_host_platform_device_count=2"},
}
TORCH_SETTINGS = {"torch-default": 0, "torch-1-thread": 1}


def cpu_info() -> str:
    """CPU model, cores and ISA flags, as ``seqlab bench`` records them."""
    from seqlab_bench.hardware import hardware

    hw = hardware()
    return (
        f"{hw['cpu_model']}, {hw['cores']} cores, flags: {' '.join(hw['cpu_flags']) or 'unknown'}"
    )


def run_seqlab(env_extra: dict[str, str], steps: int, log_every: int) -> float:
    """Median seconds per step of one ``seqlab train`` (log windows after the first)."""
    from seqlab.run.writers import read_metrics

    unset = ("XLA_FLAGS", "SEQLAB_CPU_THREADS", "SEQLAB_HUGEPAGES", "GLIBC_TUNABLES")
    env = {k: v for k, v in os.environ.items() if k not in unset}
    pin = env_extra.get("PIN")
    env.update({k: v for k, v in env_extra.items() if k != "PIN"})
    with tempfile.TemporaryDirectory() as workdir:
        subprocess.run(
            [sys.executable, "-m", "seqlab", "train", "--config", CONFIG, "--workdir", workdir]
            + [f"--config.train.num_steps={steps}", f"--config.train.log_every={log_every}"]
            + [
                f"--config.train.eval_every={10 * steps}",
                f"--config.train.checkpoint_every={steps}",
            ]
            + ["--config.task.sample_length=0", "--config.train.progress=False"]
            + ["--config.task.eval_batches=1"],
            env=env,
            check=True,
            preexec_fn=(lambda: os.sched_setaffinity(0, {int(pin)})) if pin else None,
            stdout=subprocess.DEVNULL,
        )
        rates = [
            r["perf/steps_per_sec"]
            for r in read_metrics(os.path.join(workdir, "metrics.jsonl"))
            if "perf/steps_per_sec" in r
        ]
    return statistics.median(1.0 / r for r in rates[1:])


def run_torch(threads: int, steps: int, warmup: int) -> float:
    """Seconds per step of the PyTorch script (in a child, so its thread pool is fresh)."""
    code = f"""
import json, sys, time, numpy as np, torch
from torch import nn
sys.path.insert(0, {os.path.dirname(CONFIG)!r})
from charlm import get_config
from seqlab.tasks import make_task
if {threads}: torch.set_num_threads({threads})
task = make_task(get_config()); v = task.vocab.size; torch.manual_seed(0)
emb, lstm, head = nn.Embedding(v, 256), nn.LSTM(256, 256, 2, batch_first=True), nn.Linear(256, v)
params = [*emb.parameters(), *lstm.parameters(), *head.parameters()]
opt = torch.optim.Adam(params, lr=2e-3)
t = lambda a: torch.from_numpy(np.asarray(a, np.int64))
times = []
for step in range({steps}):
    t0 = time.perf_counter(); b = task.train_batch(step)
    logits = head(lstm(emb(t(b["inputs"])))[0])
    loss = nn.functional.cross_entropy(logits.flatten(0, 1), t(b["targets"]).flatten())
    opt.zero_grad(); loss.backward(); nn.utils.clip_grad_norm_(params, 5.0); opt.step()
    times.append(time.perf_counter() - t0)
print(json.dumps({{"s": float(np.median(times[{warmup}:])), "threads": torch.get_num_threads()}}))
"""
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["s"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--log-every", type=int, default=25)
    ap.add_argument("--repeats", type=int, default=2, help="round-robin rounds")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    settings = dict(SEQLAB_SETTINGS)
    if os.environ.get("SEQLAB_THREADS_EXTRA"):  # e.g. seqlab-cpu-threads=1:SEQLAB_CPU_THREADS=1
        for item in os.environ["SEQLAB_THREADS_EXTRA"].split(","):
            name, kv = item.split(":", 1)
            k, v = kv.split("=", 1)
            settings[name] = {k: v}
    names = [*settings, *TORCH_SETTINGS]
    chosen = [n for n in args.only.split(",") if n] or names
    load0, times = os.getloadavg()[0], {n: [] for n in chosen}
    for _ in range(args.repeats):  # round-robin: load drifts hit every contender alike
        for name in chosen:
            if name in TORCH_SETTINGS:
                s = run_torch(TORCH_SETTINGS[name], args.steps, args.log_every)
            else:
                s = run_seqlab(settings[name], args.steps, args.log_every)
            times[name].append(s)
            print(f"{name}: {1000 * s:.0f} ms/step", flush=True)
    load1 = os.getloadavg()[0]
    best_torch = min((statistics.median(times[n]) for n in TORCH_SETTINGS if n in times), default=0)
    lines = [
        "# seqlab train vs PyTorch: seconds per step by threading setting",
        "",
        f"CPU: {cpu_info()}. Load average {load0:.1f} -> {load1:.1f}. Command: "
        f"`python experiments/charlm_shakespeare/threads.py --steps {args.steps} "
        f"--log-every {args.log_every} --repeats {args.repeats}` "
        f"({time.strftime('%Y-%m-%d')}).",
        "",
        "Char LM of configs/charlm.py (2-layer 256-unit LSTM, batch 64 x 100). seqlab: the "
        "median of its logged steps/s over the windows after the first (compile excluded); "
        "PyTorch: the median step (its batch included) after the first window. Each value "
        "is the median of the rounds (round-robin).",
        "",
        "| setting | ms/step (each round) | median ms/step | x best PyTorch setting |",
        "| --- | --- | --- | --- |",
    ]
    for name in chosen:
        med = statistics.median(times[name])
        each = ", ".join(f"{1000 * s:.0f}" for s in times[name])
        ratio = f"{best_torch / med:.2f}" if best_torch else ""
        lines.append(f"| {name} | {each} | {1000 * med:.0f} | {ratio} |")
    path = os.path.join(HERE, "threads.md")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
