"""Experiment 1 — vanishing gradients: ||dL/dh_t|| against distance T - t at initialization and
after training on the adding problem: RNN, LSTM, GRU for T from 10 to 1000, and at T = 100
and 1000 the memory-horizon variants: chrono-initialized LSTM/GRU and the linear recurrences
(LRU, minGRU, minLSTM, RG-LRU).

Reproduces: Bengio, Simard, Frasconi 1994; Pascanu, Mikolov, Bengio 2013 — the vanilla RNN's
gradient decays exponentially with distance; LSTM and GRU decay far more slowly. Tallec &
Ollivier 2018 — chrono initialization sets the gates' time constants to span 1..T_max, so the
gradient reaches back ~T_max steps at initialization. Orvieto et al. 2023 — the LRU's
eigenvalues initialized on a ring near |lambda| = 1 keep the signal for long distances.

    python experiments/vanishing_gradients/run.py           # standard: every cell, T to 1000
    python experiments/vanishing_gradients/run.py --quick   # RNN/LSTM/GRU only, T to 1000
    python experiments/vanishing_gradients/run.py --full    # GPU/TPU: wider, longer training
    python experiments/vanishing_gradients/run.py --dry-run # print the command and the points

Runs ``seqlab probe`` (configs/probe.py's sweep of cells x lengths, one training run per point
in its own sub-workdir, then ``seqlab report``), which writes
runs/vanishing_gradients[_quick|_full]/ (probe.json, figures, probe.md, report.md,
sub-runs); copies the table and figures next to this file (results[_quick|_full].md,
*.png). Re-running resumes: finished points are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--full", action="store_true")
    ap.add_argument("--quick", action="store_true", help="the classic cells only (18 points)")
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--parallel", type=int, default=1, help="sweep points run at once")
    ap.add_argument(
        "--report-only",
        action="store_true",
        help="rewrite results.md from an existing workdir without re-running",
    )
    ap.add_argument(
        "--dry-run", action="store_true", help="print the command and its sweep points, run nothing"
    )
    args = ap.parse_args()
    mode = "full" if args.full else "quick" if args.quick else "standard"
    sfx = "" if mode == "standard" else f"_{mode}"
    variant = ",".join(["full"] * args.full + ["cells=rnn+lstm+gru"] * args.quick)
    workdir = args.workdir or os.path.join(ROOT, "runs", "vanishing_gradients" + sfx)
    config = os.path.join(ROOT, "configs", "probe.py") + (f":{variant}" if variant else "")
    cmd = [sys.executable, "-m", "seqlab", "probe", "--config", config, "--workdir", workdir]
    cmd += ["--parallel", str(args.parallel)]
    if args.dry_run:
        from seqlab.tools.sweep import load_sweep, point_name

        print(" ".join(cmd))
        for point in load_sweep(config, variant or None):  # seqlab probe: get_sweep(:ARG)
            print(f"  {os.path.join(workdir, point_name(point))}: {point}")
        return
    t0 = time.time()
    if not args.report_only:
        subprocess.run(cmd, check=True)
    timing_path = os.path.join(workdir, "experiment_time.json")
    if not args.report_only:
        with open(timing_path, "w") as f:
            json.dump({"minutes": (time.time() - t0) / 60, "loadavg": os.getloadavg()}, f)
    with open(timing_path) as f:
        t = json.load(f)
    timing = (
        f"{t['minutes']:.1f} minutes wall (1-minute load average at the end "
        f"{t['loadavg'][0]:.1f}"
        + (": other jobs shared the CPU)" if t["loadavg"][0] > (os.cpu_count() or 1) else ")")
    )
    with open(os.path.join(workdir, "probe.json")) as f:
        results = json.load(f)
    with open(os.path.join(workdir, "probe.md")) as f:
        table = f.read()
    for png in ("grad_vs_distance", "grad_heatmap"):
        shutil.copy(os.path.join(workdir, f"{png}.png"), os.path.join(HERE, f"{png}{sfx}.png"))
    lines = summary(results)
    with open(os.path.join(HERE, f"results{sfx}.md"), "w") as f:
        flag = sfx.replace("_", " --")
        f.write(f"""# Vanishing gradients: every cell, and memory-horizon inits ({mode} mode)

Command: `python experiments/vanishing_gradients/run.py{flag}`
(= `seqlab probe --config configs/probe.py{":" + variant if variant else ""}`), adding problem,
one layer, {platform.processor() or platform.machine()}, {os.cpu_count()} cores,
{timing}.

**Published:** the vanilla RNN's gradient ||dL/dh_t|| decays exponentially with the distance
T - t; LSTM and GRU decay far slower (Bengio et al. 1994; Pascanu et al. 2013). Chrono
initialization (Tallec & Ollivier 2018) spreads the LSTM/GRU gates' time constants over
1..T_max, so at initialization the gradient should reach back about T_max = T steps. The
LRU's ring initialization (Orvieto et al. 2023, r in [0.9, 0.999] by default here) and
RG-LRU's a^c in [0.9, 0.999] (De et al. 2024) start with long memory by design; minGRU/minLSTM
(Feng et al. 2024) have input-dependent gates and no such initialization claim.

**Measured here:**

{lines}

{reading(results)}

g_t is measured for every t by one exact backward recursion that carries each cotangent as
(log-scale, unit vector) (`seqlab/run/logprobe.py`), so nothing underflows; "decay rate"
is the least-squares slope of -log g_t against distance (per step), "horizon" the first
distance at which g_t < 1e-3 g_T (— = never within T).

![gradient norm vs distance](grad_vs_distance{sfx}.png)
![gradient norm over training](grad_heatmap{sfx}.png)

## Full table (layer 0)

{table}""")
    print(f"wrote {os.path.join(HERE, f'results{sfx}.md')}")


def reading(results: dict) -> str:
    """The comparison in words, computed from the numbers (longest T, layer 0)."""

    def rate(cell: str, which: int) -> float | None:
        by_T = results.get(cell, {})
        if not by_T:
            return None
        steps = by_T[max(by_T, key=int)]["layer_0"]
        order = sorted(steps, key=lambda s: int(s.split("_")[1]))
        return steps[order[which]]["decay_rate"]

    out = []
    others = [c for c in results if c != "rnn"]
    for label, which in (("at initialization", 0), ("after training", -1)):
        rnn = rate("rnn", which)
        parts = []
        for cell in others:
            r = rate(cell, which)
            if rnn and r:
                verdict = "slower" if r < rnn else "FASTER"
                parts.append(f"{cell} {max(r, rnn) / min(r, rnn):.1f}x {verdict} ({r:.3g}/step)")
        if rnn and parts:
            out.append(
                f"- {label}: the RNN's gradient decays at {rnn:.3g} per step of distance; "
                + "; ".join(parts)
                + "."
            )
    for cell in [c for c in results if c.endswith("/chrono")]:
        base = cell.split("/")[0]
        T = max(results[cell], key=int)
        horizon = lambda c, T=T: _init_step(results, c, T).get("horizon") if c in results else None
        f = lambda h: "never within T" if h is None else f"at distance {h}"
        out.append(
            f"- chrono initialization (T_max = T = {T}): at initialization {cell}'s gradient "
            f"falls below 1e-3 g_T {f(horizon(cell))} (the default {base}'s: "
            f"{f(horizon(base))})."
        )
    out.append(
        "- every curve is exponential in distance (straight on the log plot) over the whole "
        "range: the probe measures log10 g_t, so nothing underflows (g_1/g_T above is "
        "printed in float64)."
    )
    return "**Reading (computed from the table):**\n\n" + "\n".join(out)


def _init_step(results: dict, cell: str, T: str) -> dict:
    """The layer-0 probe at initialization (step 0) of ``cell`` at length ``T``."""
    steps = results[cell].get(T, {}).get("layer_0", {})
    return steps[min(steps, key=lambda s: int(s.split("_")[1]))] if steps else {}


def summary(results: dict) -> str:
    """One line per cell at the longest T: decay rate and horizon at init and after training."""
    out = [
        "| cell | T | decay rate at init | after training | g_1/g_T at init | after training "
        "| horizon at init | after training |",
        "|" + " --- |" * 8,
    ]
    from seqlab.tools.report import cell_order

    for cell in cell_order(results):  # probe.json's keys are sorted by name
        by_T = results[cell]
        T = max(by_T, key=int)
        steps = by_T[T]["layer_0"]
        order = sorted(steps, key=lambda s: int(s.split("_")[1]))
        a, b = steps[order[0]], steps[order[-1]]
        f = lambda x, s=".3g": "—" if x is None else format(x, s)
        out.append(
            f"| {cell} | {T} | {f(a['decay_rate'])} | {f(b['decay_rate'])} | "
            f"{f(a['ratio'], '.1e')} | {f(b['ratio'], '.1e')} | {f(a['horizon'], 'd')} | "
            f"{f(b['horizon'], 'd')} |"
        )
    return "\n".join(out)


if __name__ == "__main__":
    main()
