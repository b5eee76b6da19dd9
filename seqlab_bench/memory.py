"""``--mode memory``: peak host memory of one seqlab training step against T, with remat
off and on.

Each point runs in a fresh subprocess, since an allocator that already holds freed pages
hides a step's peak. XLA's buffer plan is read first (compiled, never run), and a point
whose plan exceeds the budget is skipped instead of run.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

from seqlab_bench.compile_time import lower_train_step
from seqlab_bench.footprint import peak_rss_during, proc_status, xla_memory
from seqlab_bench.hardware import set_threads
from seqlab_bench.peers import seqlab_peer
from seqlab_bench.timing import timed
from seqlab_bench.workload import Shape, make_tokens

#: what a child process runs; it prints its result as one JSON line after this marker
CHILD_MARK = "@@"
CHILD_CODE = (
    "import json, sys; from seqlab_bench.memory import memory_child; "
    f"print({CHILD_MARK!r} + json.dumps(memory_child(json.loads(sys.argv[1]))))"
)


def memory_plan(cell: str, shape: Shape, impl: str, remat: bool) -> dict[str, float]:
    """XLA's buffer plan for one training step (compiled, never run: no big arrays)."""
    lowered, _ = lower_train_step(cell, shape, impl, remat=remat)
    return xla_memory(lowered.compile())


def memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: peak RSS of seqlab training steps (after compilation)."""
    set_threads(int(spec.get("threads", 1)))
    shape = Shape(**spec["shape"])
    tokens = make_tokens(shape)
    rss0 = proc_status("VmRSS")
    peer = seqlab_peer(
        spec["cell"], shape, tokens, impl=spec["impl"], remat=bool(spec["remat"]), modes=("train",)
    )  # compiles and runs one step
    rise, peak = peak_rss_during(peer.train)
    _, wall, cpu = timed(peer.train)
    return {
        "rss_at_start_mib": (rss0 or 0) / 1024,
        "peak_rss_step_mib": rise,
        "peak_rss_step_abs_mib": peak,
        # ru_maxrss follows the reset above: the largest of the two measured steps
        "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "step_s": wall,
        "step_cpu_s": cpu,
        "xla": peer.xla.get("train", {}),
    }


def bench_memory(
    cell: str,
    shape: Shape,
    impls: Sequence[str],
    lengths: Sequence[int],
    *,
    budget_gib: float = 20.0,
    threads: int = 1,
    timeout_s: float = 3600.0,
) -> list[dict[str, Any]]:
    """Peak host memory vs T, remat off/on; each point in its own subprocess."""
    rows = []
    for length in lengths:
        for remat in (False, True):
            for impl in impls:
                s = Shape(shape.batch, length, shape.hidden, shape.layers, shape.vocab)
                rows.append(_point(cell, s, impl, remat, budget_gib, threads, timeout_s))
    return rows


def _point(
    cell: str,
    shape: Shape,
    impl: str,
    remat: bool,
    budget_gib: float,
    threads: int,
    timeout_s: float,
) -> dict[str, Any]:
    """One ``memory`` row: XLA's plan, then the measured step unless the plan is too big."""
    plan = memory_plan(cell, shape, impl, remat)
    need = sum(plan.get(k, 0.0) for k in ("temp_mib", "argument_mib", "output_mib")) / 1024
    row: dict[str, Any] = {
        "cell": cell,
        "impl": impl,
        "remat": remat,
        **shape.__dict__,
        "xla_plan": plan,
        "xla_need_gib": need,
    }
    if need > budget_gib:
        row["skipped"] = f"XLA plans {need:.1f} GiB > budget {budget_gib} GiB"
        return row
    spec = {"cell": cell, "impl": impl, "remat": remat, "shape": shape.__dict__}
    row.update(run_child({**spec, "threads": threads}, timeout_s))
    return row


def run_child(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """``memory_child(spec)`` in a fresh Python process; {"error": ...} if it fails."""
    try:
        p = subprocess.run(
            [sys.executable, "-c", CHILD_CODE, json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    for line in p.stdout.splitlines():
        if line.startswith(CHILD_MARK):
            return json.loads(line[len(CHILD_MARK) :])
    tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"exit {p.returncode}: {tail[0][:300]}"}
