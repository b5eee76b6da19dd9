"""The GPU check of seqlab's recurrence engines, in one command (``bench/device_check.sh``):

1. agreement -- on the device, float32 with full-precision matmuls (TF32 off): the char-LM's
   loss and gradients on backend fast, scan and (LSTM) cudnn; and cuDNN's own LSTM
   (``jax.experimental.rnn.lstm``) against ``lstm_ref`` on seqlab's packed weights, two
   bidirectional layers with lengths. A disagreement makes the exit status 1.
2. speed -- the char-LM training step (``seqlab_bench.workload``) of seqlab fast / scan /
   cudnn against PyTorch's cuDNN ``nn.LSTM``/``GRU``/``RNN`` on the GPU, for SHAPES x 1, 2
   layers x lstm, gru, rnn, in two precisions: ``fp32`` (TF32 off everywhere) and ``mixed``
   (seqlab ``model.dtype=bfloat16``, PyTorch under bfloat16 autocast, both with TF32 on; the
   cudnn backend runs float32 only, so it shows TF32).
3. charlm -- ``configs/charlm.py`` trained for a fixed time per backend (``--charlm``).
4. memory -- ``seqlab bench --mode memory`` at T = 10,000 (XLA's buffer plan is the device's;
   the peak RSS it also reports is the host's).

Writes OUTDIR/device_check.json and OUTDIR/device_check.md. Sections past their share of
``--budget_s`` are skipped with a line, so the run fits its budget; a section that fails is
a line in the report and exit status 1. ``--cpu-smoke``: tiny shapes on the CPU, the GPU-only
peers (cudnn, torch_cuda) skipped with a line, a 2-step char-LM, the memory flags checked
but not run: tests/test_device_check.py. Without ``--cpu-smoke`` and a GPU: exit status 3.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# JAX, PyTorch and the child processes (char-LM, memory) share the GPU: no up-front 75%.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the checkout's packages, installed or not

from seqlab.recurrence import cudnn  # noqa: E402
from seqlab_bench import peers as P  # noqa: E402
from seqlab_bench.hardware import versions  # noqa: E402
from seqlab_bench.tables import markdown_table, memory_table  # noqa: E402
from seqlab_bench.timing import round_robin, throughput  # noqa: E402
from seqlab_bench.workload import Shape, lm_step_fns, make_tokens  # noqa: E402

SHAPES = ((32, 100, 128), (32, 100, 512), (64, 256, 256))
CELLS = ("lstm", "gru", "rnn")
TOL = 1e-4  # agreement in float32, TF32 off: relative, the loss and each gradient (2-norm)
SMOKE = {"shapes": ((2, 6, 8),), "layers": (1,), "cells": ("lstm",), "impls": ("fast",)}
FULL = {"shapes": SHAPES, "layers": (1, 2), "cells": CELLS, "impls": ("fast", "scan", "cudnn")}


def say(msg: str) -> None:
    print(msg, flush=True)


def rel(a: Any, b: Any) -> float:
    """The largest relative difference over the leaves of two pytrees (2-norms)."""
    out = 0.0
    for u, v in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        u, v = np.asarray(u, np.float64), np.asarray(v, np.float64)
        out = max(out, float(np.linalg.norm(u - v) / max(np.linalg.norm(v), 1e-30)))
    return out


# -- 1. agreement --------------------------------------------------------------------------


def lm_loss_grads(cell: str, shape: Shape, impl: str, dtype: Any = None) -> tuple[Any, Any]:
    """The char-LM's loss and gradients on one batch, backend ``impl``, compute ``dtype``."""
    kw = {} if dtype is None else {"cell_kwargs": {"dtype": dtype}}
    model = P.set_backend(P.seqlab_model(cell, shape, **kw), impl)
    loss_fn, _, params, _ = lm_step_fns(model, lambda m, x: m(x)[0], 1e-3)
    tokens = jnp.asarray(make_tokens(shape))
    return jax.jit(jax.value_and_grad(loss_fn))(params, tokens[:, :-1], tokens[:, 1:])


def cudnn_op_vs_reference(shape: Shape) -> float:
    """``cudnn.run_lstm`` through rnn.lstm against it through lstm_ref (two bidirectional
    layers, lengths from T down): the largest relative error of values and gradients."""
    from jax.experimental import rnn

    rng = np.random.default_rng(0)
    B, T, H, F = shape.batch, shape.length, shape.hidden, shape.vocab
    draw = lambda *s: jnp.asarray(0.1 * rng.standard_normal(s), jnp.float32)  # noqa: E731
    layers = [
        [{"w_x": draw(f, 4 * H), "w_h": draw(H, 4 * H), "b": draw(4 * H)} for _ in range(2)]
        for f in (F, 2 * H)
    ]
    x = draw(B, T, F)
    carries = [((draw(B, H), draw(B, H)), (draw(B, H), draw(B, H))) for _ in layers]
    lengths = jnp.asarray(np.maximum(T - np.arange(B) * T // B, 1), jnp.int32)

    def value_and_grads(impl: Any) -> Any:
        def f(p: Any, x: Any, c: Any) -> Any:
            y, c = cudnn.run_lstm(p, x, c, lengths, impl=impl)
            return jnp.sum(jnp.sin(y)) + sum(jnp.sum(a * a) for a in jax.tree.leaves(c))

        return jax.jit(jax.value_and_grad(f, (0, 1, 2)))(layers, x, carries)

    return rel(value_and_grads(rnn.lstm), value_and_grads(cudnn.lstm_reference))


def agreement(cfg: dict[str, Any], gpu: bool, report: dict[str, Any]) -> None:
    """Each backend's loss and gradients against backend=scan's, at the first shape."""
    jax.config.update("jax_default_matmul_precision", "highest")
    shape = Shape(*cfg["shapes"][0], layers=2 if gpu else 1)
    for cell in cfg["cells"]:
        ref = lm_loss_grads(cell, shape, "scan")
        for impl in ("fast", "cudnn") if cell == "lstm" else ("fast",):
            if impl == "cudnn" and not gpu:
                skip(report, f"agreement {cell} cudnn", cudnn.platform_unavailable() or "")
                continue
            got = lm_loss_grads(cell, shape, impl)
            record(report, f"{cell} {impl} vs scan", rel(got, ref), TOL)
        if gpu:  # mixed precision: bfloat16 matmuls, float32 everything else
            fast16 = lm_loss_grads(cell, shape, "fast", jnp.bfloat16)
            scan16 = lm_loss_grads(cell, shape, "scan", jnp.bfloat16)
            record(report, f"{cell} fast-bf16 vs scan-bf16", rel(fast16, scan16), 3e-2)
            record(report, f"{cell} fast-bf16 vs scan-fp32", rel(fast16, ref), 5e-2)
    if gpu:
        record(report, "rnn.lstm vs lstm_ref", cudnn_op_vs_reference(shape), TOL)


def record(report: dict[str, Any], what: str, err: float, tol: float) -> None:
    ok = err <= tol
    report["agreement"].append({"check": what, "max_rel_err": err, "tol": tol, "ok": ok})
    say(
        f"agreement  {what}: max relative error {err:.2e} (tolerance {tol:.0e}) "
        f"{'ok' if ok else 'FAIL'}"
    )


def skip(report: dict[str, Any], what: str, why: str) -> None:
    report["skipped"].append(f"{what}: {why}")
    say(f"skipped    {what}: {why}")


# -- 2. speed ------------------------------------------------------------------------------


def set_precision(precision: str, torch_gpu: bool) -> None:
    strict = precision == "fp32"
    jax.config.update("jax_default_matmul_precision", "highest" if strict else "tensorfloat32")
    if torch_gpu:
        P.set_torch_tf32(not strict)


def build(cell: str, shape: Shape, precision: str, cfg: dict, gpu: bool) -> list:
    """The peers of one speed row: seqlab on each backend, and PyTorch on the GPU."""
    tokens = make_tokens(shape)
    mixed, out = precision == "mixed", []
    for impl in cfg["impls"]:
        if impl == "cudnn" and (cell != "lstm" or not gpu):
            continue
        kw = {"cell_kwargs": {"dtype": jnp.bfloat16}} if mixed and impl != "cudnn" else {}
        model = P.seqlab_model(cell, shape, **kw)
        peer = P.seqlab_peer(cell, shape, tokens, impl=impl, model=model, modes=("train",))
        tag = ("-tf32" if impl == "cudnn" else "-bf16") if mixed else ""
        out.append(dataclasses.replace(peer, impl=impl + tag))
    if gpu and P.torch_cuda_available():
        out.append(P.torch_cuda_peer(cell, shape, tokens, bf16=mixed, modes=("train",)))
    return out


def speed(cfg: dict, gpu: bool, repeats: int, deadline: float, report: dict) -> None:
    """Shapes x layers x cells x precisions, until ``deadline`` (the rest: skipped)."""
    if not gpu:
        skip(report, "speed peers cudnn, torch_cuda", "GPU only (--cpu-smoke)")
    torch_gpu = gpu and P.torch_cuda_available()
    if gpu and not torch_gpu:
        skip(report, "speed peer torch_cuda", "PyTorch sees no CUDA GPU")
    rows = [
        (Shape(b, t, h, layers), cell, precision)
        for b, t, h in cfg["shapes"]
        for layers in cfg["layers"]
        for cell in cfg["cells"]
        for precision in ("fp32", "mixed")
    ]
    for shape, cell, precision in rows:
        what = f"speed {cell} B,T,H,L={shape.batch},{shape.length},{shape.hidden},"
        what += f"{shape.layers} {precision}"
        if time.monotonic() > deadline:
            skip(report, what, "past the section's budget")
            continue
        set_precision(precision, torch_gpu)
        try:
            peers = build(cell, shape, precision, cfg, gpu)
            report["speed"] += time_peers(peers, cell, shape, precision, repeats)
        except Exception as e:  # one failed row is a line, not the end of the table
            report["errors"].append(f"{what}: {type(e).__name__}: {e}")
            say(f"error      {what}: {type(e).__name__}: {e}")
    if torch_gpu:
        import torch

        torch.cuda.empty_cache()  # give the char-LM's process the memory PyTorch cached
    say(markdown_table(SPEED_COLUMNS, report["speed"]))


def time_peers(peers: list, cell: str, shape: Shape, precision: str, repeats: int) -> list:
    """One row per peer: round-robin timings after one more warm-up step each."""
    fns = {p.label: p.train for p in peers}
    losses = {label: fn() for label, fn in fns.items()}
    timings = round_robin(fns, repeats)
    ref = timings.get("torch-cuda") or timings.get("torch-cuda-bf16")
    rows = []
    for p in peers:
        t = timings[p.label]
        rows.append(
            {
                "cell": cell,
                **dataclasses.asdict(shape),
                "precision": precision,
                "peer": p.label,
                **throughput(t, shape.batch, shape.length),
                "first_call_s": p.first_call_s["train"],
                "x_torch_cuda": ref.median_wall / t.median_wall if ref else None,
                "loss": losses[p.label],
                "times_s": t.wall,
            }
        )
    return rows


def _ratio(r: dict) -> str:
    return "n/a" if r["x_torch_cuda"] is None else f"{r['x_torch_cuda']:.2f}"


SPEED_COLUMNS = [
    ("precision", lambda r: r["precision"]),
    ("cell", lambda r: r["cell"]),
    ("B,T,H,L", lambda r: f"{r['batch']},{r['length']},{r['hidden']},{r['layers']}"),
    ("peer", lambda r: r["peer"]),
    ("ms/step", lambda r: f"{1e3 * r['median_s']:.2f}"),
    ("tokens/s", lambda r: f"{r['tokens_per_s']:,.0f}"),
    ("x torch-cuda (wall)", _ratio),
    ("first call s", lambda r: f"{r['first_call_s']:.1f}"),
]


# -- 3. char-LM (its own process: the command a user runs), 4. memory ----------------------


def seqlab_cmd(*args: str, timeout: float) -> tuple[int, str]:
    """``python -m seqlab ARGS`` in the checkout: (exit status, its last lines of output)."""
    cmd = [sys.executable, "-m", "seqlab", *args]
    try:
        p = subprocess.run(cmd, cwd=ROOT, text=True, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f} s"
    return p.returncode, " / ".join((p.stdout + p.stderr).strip().splitlines()[-3:])


def last_metrics(workdir: Path) -> dict[str, Any]:
    """The last step, train/loss and eval/loss in a run's metrics.jsonl."""
    path, out = workdir / "metrics.jsonl", {}
    rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    for key, name in (("step", "step"), ("train/loss", "train_loss"), ("eval/loss", "eval_loss")):
        out[name] = next((r[key] for r in reversed(rows) if key in r), None)
    return out


def charlm(runs: list[tuple[str, float]], smoke: bool, out: Path, report: dict) -> None:
    """configs/charlm.py for a fixed time per backend (tinyshakespeare when it is on disk)."""
    from seqlab.tasks.corpora import data_dir

    shakespeare = data_dir() / "tinyshakespeare" / "input.txt"
    corpus = "tinyshakespeare" if shakespeare.exists() and not smoke else "python_stdlib"
    if corpus != "tinyshakespeare":
        skip(report, "charlm on tinyshakespeare", f"no {shakespeare}: python_stdlib instead")
    for backend, seconds in runs:
        workdir = out / f"charlm_{backend}"
        shutil.rmtree(workdir, ignore_errors=True)  # a fresh run, not a resumed one
        config = f"configs/charlm.py:corpus={corpus}" + (",runlocal" if smoke else "")
        flags = [
            f"--config.model.backend={backend}",
            f"--config.train.time_limit_s={seconds}",
            "--config.wandb.mode=disabled",
            "--config.train.progress=False",
        ]
        flags += (
            ["--config.train.num_steps=2", "--config.task.sample_length=0"]
            if smoke
            else ["--config.task.eval_batches=20"]
        )
        args = ("train", "--config", config, "--workdir", str(workdir), *flags)
        rc, tail = seqlab_cmd(*args, timeout=seconds + 120)
        row = {"backend": backend, "corpus": corpus, "seconds": seconds, "exit": rc}
        row.update(last_metrics(workdir))
        report["charlm"].append(row if rc == 0 else {**row, "error": tail})
        say(f"charlm     {json.dumps(report['charlm'][-1])}")


def memory(cfg: dict, smoke: bool, out: Path, report: dict) -> None:
    """``seqlab bench --mode memory`` in this process (it measures each point in a fresh
    one): the LSTM at T = 10,000. Smoke: its flags checked, not run."""
    from seqlab_bench import cli

    impls = ",".join(i for i in cfg["impls"] if i in ("fast", "cudnn"))
    path = out / "memory.json"
    argv = ["--mode=memory", "--cells=lstm", f"--impl={impls}", "--memory_lengths=10000"]
    argv += ["--threads=0", f"--json={path}"]
    if smoke:
        cli.validate(cli.parse_flags(argv))
        return skip(report, "memory", "not run in --cpu-smoke (its flags checked)")
    if cli.main(argv) != 0:
        raise RuntimeError(f"seqlab bench {' '.join(argv)} failed")
    report["memory"] = json.loads(path.read_text())["memory"]


# -- the command ---------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    env = report["environment"]
    v = env["versions"]
    agree = [
        ("check", lambda r: r["check"]),
        ("max rel err", lambda r: f"{r['max_rel_err']:.2e}"),
        ("tolerance", lambda r: f"{r['tol']:.0e}"),
        ("ok", lambda r: str(r["ok"])),
    ]
    keys = ("backend", "corpus", "seconds", "step", "train_loss", "eval_loss", "exit")
    charlm_cols = [(k, lambda r, k=k: str(r.get(k))) for k in keys]
    return (
        "\n\n".join(
            [
                f"# seqlab device check\n\n{env['devices']}; jax {v.get('jax')}, "
                f"torch {v.get('torch')}; {env['seconds']:.0f} s",
                "## Agreement (float32 with TF32 off; bf16 rows: mixed precision)",
                markdown_table(agree, report["agreement"]),
                "## Training step (fp32: TF32 off; mixed: bf16 matmuls, TF32 on)",
                markdown_table(SPEED_COLUMNS, report["speed"]),
                "## Char-LM after a fixed training time",
                markdown_table(charlm_cols, report["charlm"]),
                "## Memory (seqlab bench --mode memory)",
                memory_table(report["memory"]),
                "## Skipped and errors",
                "\n".join(f"- {s}" for s in report["skipped"] + report["errors"]) or "none",
            ]
        )
        + "\n"
    )


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("outdir")
    p.add_argument("--cpu-smoke", action="store_true", help="tiny shapes on CPU (tests)")
    p.add_argument("--budget_s", type=float, default=450.0, help="the whole run, seconds")
    p.add_argument("--repeats", type=int, default=5, help="timed steps per peer")
    p.add_argument("--charlm", default="fast:60,cudnn:60", help="backend:seconds,...")
    return p.parse_args(argv)


@contextlib.contextmanager
def section(name: str, report: dict[str, Any]) -> Iterator[None]:
    """Times a section; an exception in it is recorded (exit status 1), not fatal."""
    start, cpu = time.monotonic(), _cpu()
    try:
        yield
    except Exception as e:
        report["errors"].append(f"{name}: {type(e).__name__}: {e}")
        say(f"error      {name}:\n{traceback.format_exc()}")
    took = report["environment"]["section_seconds"]
    took[name] = round(time.monotonic() - start, 1)
    say(f"section    {name}: {took[name]} s ({_cpu() - cpu:.1f} s CPU, child processes too)")


def _cpu() -> float:
    own, kids = (resource.getrusage(w) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def main(argv: list[str] | None = None) -> int:
    args = parse(sys.argv[1:] if argv is None else argv)
    t0, out = time.monotonic(), Path(args.outdir)
    out.mkdir(parents=True, exist_ok=True)
    gpu, smoke = jax.default_backend() == "gpu", args.cpu_smoke
    if not gpu and not smoke:
        say(
            f"JAX runs on {jax.default_backend()}, not a GPU: install a CUDA jaxlib "
            "(pip install -U 'jax[cuda12]') or pass --cpu-smoke"
        )
        return 3
    cfg = SMOKE if smoke else FULL
    runs = [(b, float(s)) for b, s in (r.split(":") for r in args.charlm.split(","))]
    if smoke:  # one short run: the code path, not a measurement
        runs = [(runs[0][0], 2.0)]
    env = {"devices": str(jax.devices()), "versions": versions(), "smoke": smoke}
    report: dict[str, Any] = {"environment": env, "agreement": [], "speed": [], "charlm": []}
    report.update({"memory": [], "skipped": [], "errors": []})
    env["section_seconds"] = {}
    with section("agreement", report):
        agreement(cfg, gpu, report)
    reserve = sum(s + 40 for _, s in runs) + (10 if smoke else 80)  # charlm, memory
    with section("speed", report):
        speed(cfg, gpu, args.repeats, t0 + args.budget_s - reserve, report)
    jax.config.update("jax_default_matmul_precision", None)
    with section("charlm", report):
        charlm(runs, smoke, out, report)
    with section("memory", report):
        memory(cfg, smoke, out, report)
    env["seconds"] = time.monotonic() - t0
    (out / "device_check.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "device_check.md").write_text(markdown(report))
    say(f"wrote {out / 'device_check.json'} and {out / 'device_check.md'}")
    failed = [r["check"] for r in report["agreement"] if not r["ok"]] + report["errors"]
    if failed:
        say(f"FAILED: {'; '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
