"""Estimated TPU/GPU time of every experiment's full mode (standard where there is no full
one), from ``seqlab plan``: no accelerator is needed, and none was used.

    PYTHONPATH=/tmp/seqlab_cuda nice -n 10 python experiments/accelerator_plan.py

(PYTHONPATH: where ``pip install --target`` put the ``aot-gpu`` extra, for the H100 target;
``pip install -e '.[aot]'`` brings libtpu.) For each experiment it lists the points its mode
trains (the same config, flags and sweep points its run.py passes to ``seqlab train`` or
``seqlab sweep``), then

- counts every point's FLOPs and bytes per device per step as ``seqlab plan`` does
  (``seqlab.tools.plan.analyze(compile=False)``: the traced step, scan trip counts included,
  arguments and outputs from their shapes) and sums the roofline time of the whole mode on
  each target (identical points, e.g. a cell run by two of the experiment's sets into one
  workdir, counted once: the sweep resumes them);
- compiles the heaviest point's train and eval steps for each target (``seqlab plan
  --json``): memory per device, whether it fits, and XLA's answer where it does not.

Caches each answer under runs/accelerator_plan/ (re-running resumes) and prints each
experiment's table for docs/ACCELERATORS.md. The roofline is a lower bound; the page says
what it leaves out.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import io
import json
import os
import platform
import sys
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
CACHE = os.path.join(ROOT, "runs", "accelerator_plan")
#: one slice per chip, 8 chips each (v4-16 is 8 chips over 2 hosts; v4-8 has only 4)
TARGETS = ("v5e:2x4", "v6e:2x4", "v4:2x2x2", "h100:8")
#: MNIST-1D's batch of 100 (and eval batch of 500) does not split 8 ways: 4 chips each
TARGETS_4 = ("v5e:2x2", "v6e:2x2", "v4:2x2x1", "h100:4")
#: keys that change a point's initial values, not its shapes or cost
COST_FREE = ("model.init", "model.chrono_max_len")


def _sweep_points(config: str, arg: str) -> list[dict[str, Any]]:
    path = os.path.join(ROOT, "configs", config)
    spec = importlib.util.spec_from_file_location(f"plan_cfg_{config[:-3]}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return list(module.get_sweep(arg))


def _flags(d: dict[str, Any]) -> list[str]:
    return [f"--config.{k}={v}" for k, v in d.items()]


def _mode(name: str, mode: str, points: list, args: str = "", **extra: Any) -> dict[str, Any]:
    """One experiment mode: ``python experiments/NAME/run.py ARGS`` as its points."""
    command = f"python experiments/{name}/run.py {args}".strip()
    return dict(name=name, mode=mode, command=command, points=points, **extra)


def experiments(only: set[str] | None = None) -> list[dict[str, Any]]:
    """Each experiment's mode as (config, flags) points, with its steps, from its run.py
    (those in ``only``, or all)."""
    out: list[dict[str, Any]] = []
    want = lambda name: not only or name in only
    if want("charlm_shakespeare"):
        # experiments/charlm_shakespeare/run.py --full: the blog's 3 x 512 LSTM
        flags = ["--config.model.num_layers=3", "--config.model.hidden_size=512"]
        flags += ["--config.model.dropout=0.5", "--config.train.num_steps=20000"]
        flags += ["--config.train.eval_every=500"]
        out.append(_mode("charlm_shakespeare", "full", [("configs/charlm.py", flags)], "--full"))
    if want("cell_depth"):
        # experiments/cell_depth/run.py --full: cells x depths at ~800k parameters, two corpora
        pts = []
        for corpus in ("tinyshakespeare", "python_stdlib"):
            arg = f"params=800000,corpus={corpus},max_chars=0"
            common = ["--config.train.num_steps=5000", "--config.train.eval_every=5000"]
            for p in _sweep_points("charlm.py", arg):
                pts.append((f"configs/charlm.py:corpus={corpus}", common + _flags(p)))
        out.append(_mode("cell_depth", "full", pts, "--full"))
    if want("long_range_comparison"):
        # experiments/long_range_comparison/run.py --full --set all: 3 tasks x (classic cells at
        # T = 25..400, every cell at T = 100, 200, 400), 3 seeds in one run, 3,000 steps
        pts = []
        tasks = {
            "long_range.py:task=adding": "long_range.py",
            "long_range.py:task=recall": "long_range.py",
            "copy_memory.py": "copy_memory.py",
        }
        sets = {
            "classic": ("rnn+lstm+gru", "25+50+100+200+400"),
            "variants": (
                "lstm/chrono+gru/chrono+lru+mingru+minlstm+rglru+rnn+lstm+gru",
                "100+200+400",
            ),
        }
        common = ["--config.num_seeds=3", "--config.task.eval_batches=16"]
        common += ["--config.train.num_steps=3000", "--config.train.eval_every=3000"]
        for config, module in tasks.items():
            for cells, lengths in sets.values():
                for p in _sweep_points(module, f"cells={cells},lengths={lengths}"):
                    pts.append((f"configs/{config}", common + _flags(p)))
        out.append(_mode("long_range_comparison", "full", pts, "--full --set all"))
    if want("vanishing_gradients"):
        # experiments/vanishing_gradients/run.py --full: configs/probe.py:full's sweep, 2,000 steps
        pts = [("configs/probe.py:full", _flags(p)) for p in _sweep_points("probe.py", "full")]
        note = "the probe's gradient measurements (every 250 steps) are not counted"
        out.append(_mode("vanishing_gradients", "full", pts, "--full", note=note))
    if want("mnist1d"):
        # experiments/mnist1d/run.py --standard (no full mode): every cell, 3 seeds, 1,000 steps
        cells = "gru+lstm+rnn+lru+mingru+minlstm+rglru"
        common = ["--config.num_seeds=3", "--config.train.num_steps=1000"]
        common += ["--config.train.eval_every=250"]
        pts = [
            ("configs/mnist1d.py", common + _flags(p))
            for p in _sweep_points("mnist1d.py", f"cells={cells},recipe=paper")
        ]
        out.append(_mode("mnist1d", "standard", pts, "--standard", targets=TARGETS_4))
    if want("state_tracking"):
        # experiments/state_tracking/run.py --standard: parity and S3, 7 cells x T in 128/64/16
        pts = []
        common = ["--config.num_seeds=3", "--config.task.eval_batches=8"]
        common += ["--config.train.num_steps=500", "--config.train.eval_every=125"]
        for task in ("parity", "s3"):
            for T in (128, 64, 16):
                arg = f"cells=rnn+lstm+gru+lru+mingru+minlstm+rglru,lengths={T}"
                for p in _sweep_points("state_tracking.py", arg):
                    pts.append((f"configs/state_tracking.py:{task},per_step", common + _flags(p)))
        out.append(_mode("state_tracking", "standard", pts, "--standard"))
    if want("selective_copy"):
        # experiments/selective_copy/run.py (one mode): 5 cells, 2 layers of 32, T = 32, 1,200 steps
        pts = []
        for cell in ("mamba", "lru", "gru", "deltanet", "attention"):
            flags = ["--config.train.num_steps=1200", "--config.model.hidden_size=32"]
            if cell == "attention":
                flags += ["--config.model.num_heads=4", "--config.model.window=40"]
            pts.append((f"configs/selective.py:selective_copy,cell={cell},layers=2,T=32", flags))
        out.append(_mode("selective_copy", "its only", pts))
    return out


def _key(config: str, flags: list[str], target: str, compiled: bool) -> str:
    kept = [f for f in flags if f.split("=")[0].removeprefix("--config.") not in COST_FREE]
    text = json.dumps([config, kept, target, compiled])
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _config(config: str, flags: list[str]) -> Any:
    from seqlab.tasks import complete_config
    from seqlab.tools.flags import parse

    fv = parse("plan", ["--config", os.path.join(ROOT, config), *flags], lambda fv: None, True)
    return complete_config(fv.config)


def estimate(config: str, flags: list[str], target: Any) -> dict[str, Any]:
    """``seqlab plan``'s counts for one point, without compiling (the cached answer)."""
    from seqlab.errors import UsageError
    from seqlab.tools import plan

    path = os.path.join(CACHE, _key(config, flags, target.name, False) + ".json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    t0 = time.perf_counter()
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            c = _config(config, flags)
            run, r = plan.plan(c, target, compile=False)
        ans = {
            "steps": int(c.train.num_steps),
            "wall_s": plan.wall_seconds(r, c, run["eval_batches"]),
            **{
                w: {k: r[w][k] for k in ("flops", "bytes", "roofline_s", "serial_iterations")}
                for w in ("train", "eval")
            },  # fmt: skip
            "eval_batches": run["eval_batches"],
            "evals": int(c.train.num_steps) // max(1, int(c.train.eval_every)) + 1,
        }
    except UsageError as e:
        ans = {"error": str(e)}
    ans["trace_s"] = time.perf_counter() - t0
    with open(path, "w") as f:
        json.dump(ans, f)
    return ans


def compiled(config: str, flags: list[str], target: str) -> dict[str, Any]:
    """``seqlab plan --config CONFIG FLAGS --target TARGET --json``'s answer (cached)."""
    from seqlab.tools.cli import main

    path = os.path.join(CACHE, _key(config, flags, target, True) + ".json")
    if not os.path.exists(path):
        argv = ["plan", "--config", config, *flags, "--target", target, "--json", path]
        out = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(out):
            rc = main(argv)
        with open(path) as f:
            r = json.load(f)
        r.update(rc=rc, printed=out.getvalue(), wall_plan_s=time.perf_counter() - t0)
        r["load"] = os.getloadavg()[0]
        with open(path, "w") as f:
            json.dump(r, f, indent=1)
    with open(path) as f:
        return json.load(f)


def _cached(config: str, flags: list[str], target: str) -> bool:
    return os.path.exists(os.path.join(CACHE, _key(config, flags, target, True) + ".json"))


def _targets(names: tuple[str, ...]) -> dict[str, Any]:
    from seqlab.tools import plan_targets

    return {n: plan_targets.make(n) for n in names}


def _rescale(est: dict[str, Any], chip: Any, flops_only: bool = False) -> float | None:
    """The point's roofline on ``chip`` (seqlab plan's: the larger of FLOPs at the bf16 peak
    and bytes at the HBM bandwidth, per device), all its steps and evals; ``flops_only``:
    FLOPs at the peak alone, the floor no on-chip reuse of operands can lower."""
    if "error" in est:
        return None
    per = lambda s: max(s["flops"] / chip.peak_flops, 0 if flops_only else s["bytes"] / chip.hbm_bw)
    return per(est["train"]) * est["steps"] + per(est["eval"]) * est["eval_batches"] * est["evals"]


def _hms(s: float) -> str:
    if s < 120:
        return f"{s:.3g} s"
    return f"{s / 60:.3g} min" if s < 7200 else f"{s / 3600:.3g} h"


def _mib(b: float) -> str:
    return f"{b / 2**20:.3g} MiB"


def run_experiment(exp: dict[str, Any], log: Any) -> dict[str, Any]:
    """Every point traced on the first target (all targets share the device count, and TPU
    and GPU build the same step), the mode's roofline summed per chip, the heaviest compiled."""
    from seqlab.tools import plan_targets

    names = exp.get("targets", TARGETS)
    targets = _targets(names[:1])
    first = targets[names[0]]
    seen, rows = set(), []
    for config, flags in exp["points"]:
        k = _key(config, flags, "", False)
        if k in seen:
            continue
        seen.add(k)
        est = estimate(config, flags, first)
        rows.append((config, flags, est))
        print(f"  {exp['name']}: {len(rows)} points", file=log, flush=True)
    ok = [r for r in rows if "error" not in r[2]]
    totals = {}
    for n in names:
        chip = plan_targets.CHIPS[plan_targets.parse(n)[0]]
        totals[n] = sum(_rescale(e, chip) for _, _, e in ok)
        totals[n + " flops"] = sum(_rescale(e, chip, True) for _, _, e in ok)
    heavy = max(ok, key=lambda r: r[2]["wall_s"])
    # compiled: the first TPU (the smallest HBM of the four) and the GPU, and any other
    # target already planned; v6e and v4 have twice v5e's HBM and the same compiler
    comp = {
        n: compiled(heavy[0], heavy[1], n)
        for n in names
        if n in (names[0], names[-1]) or _cached(heavy[0], heavy[1], n)
    }
    return dict(exp, rows=rows, totals=totals, heavy=heavy, compiled=comp, targets=names)


def section(res: dict[str, Any]) -> list[str]:
    """One experiment's table for the doc."""
    rows, heavy = res["rows"], res["heavy"]
    failed = [r for r in rows if "error" in r[2]]
    ok = [r[2] for r in rows if "error" not in r[2]]
    steps = sorted({e["steps"] for e in ok})
    serial = max(e["train"]["serial_iterations"] for e in ok)
    # every dependent loop iteration the mode runs: train steps and eval batches
    chain = sum(
        e["train"]["serial_iterations"] * e["steps"]
        + e["eval"]["serial_iterations"] * e["eval_batches"] * e["evals"]
        for e in ok
    )
    lines = [
        f"### {res['name']} ({res['mode']} mode)",
        "",
        f"`{res['command']}`: {len(rows)} distinct runs of {', '.join(map(str, steps))} steps"
        + (f" ({res['note']})" if res.get("note") else "")
        + f"; up to {serial:,} sequential loop iterations per train step, {chain:.3g} in the "
        f"whole mode (+{_hms(chain * 1e-6)} at 1 µs each, +{_hms(chain * 1e-5)} at 10 µs). "
        "The heaviest run (by estimated time), compiled for the targets with a memory "
        f"figure: `seqlab plan --config {heavy[0]} " + " ".join(heavy[1]) + " --target T`.",
        "",
        "| target | heaviest run: fits? | memory / device (train step) | FLOPs / step / device "
        "| roofline / step | steps | heaviest run, all steps + evals | whole mode (all runs) "
        "| whole mode, FLOPs at peak only |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    from seqlab.tools import plan_targets

    h = heavy[2]
    for n in res["targets"]:
        chip = plan_targets.CHIPS[plan_targets.parse(n)[0]]
        c = res["compiled"].get(n)
        if c is None:
            fit, mem = "not compiled (v5e's fit holds: 2x its HBM)", "—"
        elif "train" not in c and c.get("fits") is None:  # XLA failed: not a fit answer
            fit, mem = "XLA could not compile it: " + c.get("error", "?")[:110] + "...", "—"
        elif "train" not in c:
            fit, mem = "NO: " + c.get("error", "?"), "—"
        else:
            fit = "yes" if c["fits"] else "NO"
            mem = f"{_mib(c['train']['memory']['total'])} of {c['hbm_bytes'] / 2**30:.3g} GiB"
        t = h["train"]
        t_flops, t_bytes = t["flops"] / chip.peak_flops, t["bytes"] / chip.hbm_bw
        bound = "compute" if t_flops >= t_bytes else "memory"
        lines.append(
            f"| {n} | {fit} | {mem} | {t['flops'] / 1e9:.3g} G "
            f"| {max(t_flops, t_bytes) * 1e3:.3g} ms ({bound}) | {h['steps']:,} "
            f"| {_hms(_rescale(h, chip))} | {_hms(res['totals'][n])} "
            f"| {_hms(res['totals'][n + ' flops'])} |"
        )
    if failed:
        lines += ["", f"Not counted ({len(failed)} runs): " + "; ".join(
            sorted({r[2]['error'] for r in failed}))]  # fmt: skip
    return lines + [""]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default="", help="comma-separated experiment names")
    args = ap.parse_args()
    os.makedirs(CACHE, exist_ok=True)
    import jax

    jax.config.update("jax_platforms", "cpu")
    results = []
    t0, load0 = time.time(), os.getloadavg()[0]
    for exp in experiments(set(args.only.split(",")) if args.only else None):
        print(f"{exp['name']}: {len(exp['points'])} points", flush=True)
        res = run_experiment(exp, sys.stdout)
        results.append(res)
        with open(os.path.join(CACHE, f"{exp['name']}.summary.json"), "w") as f:
            json.dump({k: v for k, v in res.items() if k != "rows"}, f, indent=1, default=str)
        print("\n".join(section(res)), flush=True)
    record = {"minutes": (time.time() - t0) / 60, "load": [load0, os.getloadavg()[0]]}
    record["machine"] = platform.processor() or platform.machine()
    with open(os.path.join(CACHE, "time.json"), "w") as f:
        json.dump(record, f)


if __name__ == "__main__":
    main()
