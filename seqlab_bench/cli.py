"""``seqlab bench``: seqlab's recurrence against stock Flax and PyTorch, in one process.

    seqlab bench [--cells rnn,lstm,gru] [--batch B --length T --hidden H --layers L]
                 [--peers seqlab,flax,torch,torch_cuda] [--impl scan,fast,cudnn] [--repeats N]
                 [--json FILE]
                 [--mode speed,compile,memory,generate,probe,linear,scaling] [--threads 1]

Modes (each its own module): ``speed`` (the default; ``train_step.py``) times a char-LM
training step and a forward-only loss of every peer (``peers.py``); ``compile``
(``compile_time.py``) the trace+lower+compile time of seqlab's training step at each
``--compile_lengths``; ``memory`` (``memory.py``) the peak host memory of one training step
vs T, remat off/on, one subprocess per point, skipping sizes XLA predicts above
``--memory_budget_gib``; ``generate`` (``generate.py``) jit-compiled generation of
``--gen_length`` characters; ``probe`` (``probe_cost.py``) the gradient-norm probe against a
training step's forward+backward on the same batch of each of ``--probe_tasks``; ``linear``
(``linear_scan.py``) the sequential, associative and chunked engines of the linear
recurrences (``--linear_cells``) on one layer's training step at each ``--linear_lengths``;
``scaling`` (``scaling.py``) attention against an LSTM and a linear recurrence
(``--scaling_cells``) at each ``--scaling_lengths``: time and XLA memory growth with T
(``--attention_impl``: ``jax.nn.dot_product_attention``'s xla, or cudnn on a GPU).

``--threads N`` (default 1: on a loaded 2-core machine PyTorch's 2 spinning OpenMP threads
ran ~13x slower than 1) gives PyTorch and XLA N threads each and (``--pin``) N cores, so the
CPU-time ratio compares work, not parallelism; 0 leaves the libraries' defaults.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags

from seqlab.errors import UsageError
from seqlab_bench.compile_time import bench_compile
from seqlab_bench.flops import achieved, matmul_peak
from seqlab_bench.generate import bench_generate
from seqlab_bench.hardware import load_avg, set_threads
from seqlab_bench.linear_scan import bench_linear
from seqlab_bench.memory import bench_memory
from seqlab_bench.peers import PEERS, set_torch_threads, torch_available
from seqlab_bench.probe_cost import bench_probe
from seqlab_bench.report import new_report, write_report
from seqlab_bench.scaling import (
    ATTENTION_IMPLS,
    CPU_NOTE,
    available_attention_impls,
    bench_scaling,
    scaling_table,
)
from seqlab_bench.tables import (
    compile_table,
    generate_line,
    linear_table,
    memory_table,
    probe_table,
    speed_table,
)
from seqlab_bench.train_step import bench_speed
from seqlab_bench.workload import LOSSES, PASSES, Shape

MODES = ("speed", "compile", "memory", "generate", "probe", "linear", "scaling")
PROGRAM = "seqlab bench"
HELP = (__doc__ or "").split("\n\n", 1)[-1].strip("\n")  # the usage and modes above


# -- flags ---------------------------------------------------------------------------------


def define_flags(fv: flags.FlagValues) -> None:
    """Every ``seqlab bench`` flag, on ``fv``."""
    d = {"flag_values": fv}
    flags.DEFINE_string("cells", "rnn,lstm,gru", "cells to benchmark (comma-separated)", **d)
    flags.DEFINE_integer("batch", 32, "batch size B", **d)
    flags.DEFINE_integer("length", 100, "sequence length T", **d)
    flags.DEFINE_integer("hidden", 128, "hidden size H", **d)
    flags.DEFINE_integer("layers", 1, "recurrent layers L", **d)
    flags.DEFINE_integer("vocab", 65, "vocabulary (one-hot input and logits)", **d)
    flags.DEFINE_string(
        "peers", "seqlab,flax,torch", "peers: seqlab, flax, torch, torch_cuda (GPU)", **d
    )
    flags.DEFINE_string(
        "impl", "scan,fast", "seqlab recurrence: scan (run_cell), fast, parallel, cudnn", **d
    )
    flags.DEFINE_string("mode", "speed", ", ".join(MODES) + " (comma list)", **d)
    flags.DEFINE_string("passes", "train,forward", "speed mode: train and/or forward", **d)
    flags.DEFINE_integer("repeats", 10, "timed repeats per peer (round-robin)", **d)
    flags.DEFINE_integer("warmup", 2, "untimed calls per peer after the first", **d)
    flags.DEFINE_integer("threads", 1, "compute threads for torch and XLA (0 = defaults)", **d)
    flags.DEFINE_boolean("pin", True, "with --threads N: pin the process to N cores", **d)
    flags.DEFINE_integer("unroll", 1, "seqlab scan unroll", **d)
    flags.DEFINE_boolean("remat", False, "seqlab: rematerialize the scan body", **d)
    flags.DEFINE_float("lr", 1e-3, "Adam learning rate", **d)
    flags.DEFINE_string("json", None, "write all results (and environment) to this file", **d)
    flags.DEFINE_string("compile_lengths", "100,10000", "compile mode: lengths T", **d)
    flags.DEFINE_string(
        "compile_losses", "optax,take", "compile mode: cross-entropy forms (see cross_entropy)", **d
    )
    flags.DEFINE_string("memory_lengths", "1000,10000,100000", "memory mode: lengths T", **d)
    flags.DEFINE_integer("memory_hidden", 256, "memory mode: hidden size", **d)
    flags.DEFINE_integer("memory_batch", 32, "memory mode: batch size", **d)
    flags.DEFINE_float("memory_budget_gib", 20.0, "memory mode: skip larger XLA plans", **d)
    flags.DEFINE_integer("gen_length", 2000, "generate mode: characters", **d)
    flags.DEFINE_integer("gen_hidden", 512, "generate mode: hidden size", **d)
    flags.DEFINE_integer("gen_layers", 2, "generate mode: layers", **d)
    flags.DEFINE_string("probe_tasks", "adding,copy_memory", "probe mode: seqlab tasks", **d)
    flags.DEFINE_string("probe_lengths", "100,1000", "probe mode: lengths T", **d)
    flags.DEFINE_string("linear_cells", "lru,mingru,minlstm,rglru", "linear mode: cells", **d)
    flags.DEFINE_string("linear_lengths", "1000,4000,16000,64000", "linear mode: lengths", **d)
    flags.DEFINE_integer("linear_hidden", 64, "linear mode: hidden size", **d)
    flags.DEFINE_integer("linear_batch", 8, "linear mode: batch size", **d)
    flags.DEFINE_integer("linear_chunk", 256, "linear mode: chunked engine's chunk", **d)
    flags.DEFINE_string("scaling_cells", "attention,lstm,lru", "scaling mode: mixers", **d)
    flags.DEFINE_string("scaling_lengths", "100,256,1024,4096", "scaling mode: lengths", **d)
    flags.DEFINE_integer("scaling_batch", 4, "scaling mode: batch size", **d)
    flags.DEFINE_integer("scaling_hidden", 128, "scaling mode: width", **d)
    flags.DEFINE_string(
        "attention_impl", "xla", "scaling mode: dot_product_attention impls (xla, cudnn)", **d
    )


def parse_flags(argv: Sequence[str]) -> flags.FlagValues | None:
    """The parsed flags, or None after printing ``--help``; bad flags raise ``UsageError``."""
    fv = flags.FlagValues()
    define_flags(fv)
    if "--help" in argv or "-h" in argv:
        print(f"usage: {PROGRAM} [flags]\n\n{HELP}\n\n{fv.get_help().lstrip()}")
        return None
    try:
        rest = fv([PROGRAM, *argv])
    except flags.Error as e:
        raise UsageError(_flag_error(str(e), fv)) from None
    if len(rest) > 1:
        raise UsageError(f"unexpected argument {rest[1]!r}; {PROGRAM} takes only flags")
    return fv


def _flag_error(msg: str, fv: flags.FlagValues) -> str:
    """absl's message for a bad flag, as one line (with a spelling hint for unknown ones)."""
    msg = msg.strip()
    if msg.startswith("Unknown command line flag") and "'" in msg:
        name = msg.split("'")[1]
        hint = difflib.get_close_matches(name, list(fv), n=1)
        return f"unknown flag --{name}" + (f" (did you mean --{hint[0]}?)" if hint else "")
    return msg.splitlines()[0] if msg else "bad flags"


def names(s: str) -> list[str]:
    """A comma-separated list of names."""
    return [v.strip() for v in s.split(",") if v.strip()]


def ints(s: str, flag: str = "") -> list[int]:
    """A comma-separated list of integers >= 1 (``flag`` names it in the error)."""
    try:
        out = [int(v) for v in names(s)]
    except ValueError:
        raise UsageError(f"--{flag} must be comma-separated integers, got {s!r}") from None
    if not out or min(out) < 1:
        raise UsageError(f"--{flag} must list integers >= 1, got {s!r}")
    return out


def validate(fv: flags.FlagValues) -> None:
    """Raises ``UsageError`` (one line) for any name or size the benchmarks cannot run."""
    from seqlab.cells import CELLS, MIXERS
    from seqlab.recurrence import BACKENDS
    from seqlab.tasks import TASKS

    choices: dict[str, tuple[str, Sequence[str]]] = {
        "cells": ("cell", sorted(CELLS)),
        "peers": ("peer", PEERS),
        "impl": ("backend", BACKENDS),
        "mode": ("mode", MODES),
        "passes": ("pass", PASSES),
        "compile_losses": ("loss form", LOSSES),
        "probe_tasks": ("task", sorted(TASKS)),
        "linear_cells": (
            "linear cell",
            # the cells with a parallel form (linear recurrences; the delta rule's chunks)
            sorted(c for c, (k, _) in CELLS.items() if "parallel" in k.PROVIDES),
        ),
        "scaling_cells": ("mixer", sorted({**CELLS, **MIXERS})),
        "attention_impl": ("attention implementation", ATTENTION_IMPLS),
    }
    for flag, (what, allowed) in choices.items():
        for v in names(fv[flag].value):
            if v not in allowed:
                raise UsageError(
                    f"unknown {what} {v!r} in --{flag}; choose from {', '.join(allowed)}"
                )
    positive = ("batch", "length", "hidden", "layers", "vocab", "repeats")
    positive += ("memory_hidden", "memory_batch", "gen_length", "gen_hidden", "gen_layers")
    positive += ("linear_hidden", "linear_batch", "linear_chunk")
    positive += ("scaling_batch", "scaling_hidden")
    for name in positive:
        if fv[name].value < 1:
            raise UsageError(f"--{name} must be >= 1, got {fv[name].value}")
    if fv.warmup < 0:
        raise UsageError(f"--warmup must be >= 0, got {fv.warmup}")
    for flag in ("compile_lengths", "memory_lengths", "probe_lengths", "scaling_lengths"):
        ints(fv[flag].value, flag)
    if "scaling" in names(fv.mode):
        missing = set(names(fv.attention_impl)) - set(available_attention_impls())
        if missing:
            raise UsageError(f"--attention_impl {','.join(sorted(missing))}: {CPU_NOTE}")


# -- modes ---------------------------------------------------------------------------------


def show(table: str) -> None:
    """Prints a mode's table and the load average after it."""
    print(f"\n{table}\nload avg {load_avg()}", flush=True)


def run_speed(fv: flags.FlagValues, shape: Shape, report: dict[str, Any]) -> None:
    """``--mode speed``: the cores' matmul peak, then one table per cell, each row with its
    achieved GFLOP/s and fraction of that peak."""
    peak = report["peak"] = matmul_peak()
    print(
        f"# matmul peak on these threads: {peak['gflops_per_s']:.1f} GFLOP/s "
        f"({peak['n']}x{peak['n']} float32, XLA)",
        flush=True,
    )
    for cell in names(fv.cells):
        rows = bench_speed(
            cell,
            shape,
            names(fv.peers),
            names(fv.impl),
            repeats=fv.repeats,
            warmup=fv.warmup,
            lr=fv.lr,
            unroll=fv.unroll,
            remat=fv.remat,
            modes=names(fv.passes),
        )
        rows = [{**r, **achieved(r, peak["gflops_per_s"])} for r in rows]
        report["results"] += rows
        show(speed_table(rows))


def run_compile(fv: flags.FlagValues, shape: Shape, report: dict[str, Any]) -> None:
    """``--mode compile``: one table per cell."""
    lengths = ints(fv.compile_lengths, "compile_lengths")
    for cell in names(fv.cells):
        rows = bench_compile(
            cell,
            shape,
            names(fv.impl),
            lengths,
            unroll=fv.unroll,
            losses=names(fv.compile_losses),
        )
        report["compile"] += rows
        show(compile_table(rows))


def run_memory(fv: flags.FlagValues, shape: Shape, report: dict[str, Any]) -> None:
    """``--mode memory`` (its own batch and hidden size): one table per cell."""
    mshape = Shape(fv.memory_batch, 0, fv.memory_hidden, shape.layers, shape.vocab)
    lengths = ints(fv.memory_lengths, "memory_lengths")
    for cell in names(fv.cells):
        rows = bench_memory(
            cell,
            mshape,
            names(fv.impl),
            lengths,
            budget_gib=fv.memory_budget_gib,
            threads=fv.threads,
        )
        report["memory"] += rows
        show(memory_table(rows))


def run_generate(fv: flags.FlagValues, shape: Shape, report: dict[str, Any]) -> None:
    """``--mode generate``: one LSTM, one line."""
    g = bench_generate(
        "lstm",
        fv.gen_hidden,
        fv.gen_layers,
        fv.gen_length,
        vocab=shape.vocab,
        repeats=min(fv.repeats, 5),
    )
    report["generate"] = g
    print(f"\n{generate_line(g)}  load avg {load_avg()}", flush=True)


def run_probe(fv: flags.FlagValues, shape: Shape, report: dict[str, Any]) -> None:
    """``--mode probe``: one table per cell."""
    lengths = ints(fv.probe_lengths, "probe_lengths")
    for cell in names(fv.cells):
        rows = bench_probe(
            cell,
            shape,
            names(fv.impl),
            names(fv.probe_tasks),
            lengths,
            repeats=fv.repeats,
            warmup=fv.warmup,
        )
        report["probe"] += rows
        show(probe_table(rows))


def _grid(fv: flags.FlagValues, mode: str) -> dict[str, Any]:
    """--MODE_{cells,lengths,batch,hidden}; at most 5 repeats (each point compiles anew)."""
    get = lambda name: getattr(fv, f"{mode}_{name}")  # noqa: E731
    cells, lengths = names(get("cells")), ints(get("lengths"), f"{mode}_lengths")
    return dict(cells=cells, lengths=lengths, batch=get("batch"), hidden=get("hidden"),
                repeats=max(1, min(fv.repeats, 5)))  # fmt: skip


def run_linear(fv: flags.FlagValues, shape: Shape, report: dict[str, Any]) -> None:
    """``--mode linear``: one table for every linear cell x T x engine."""
    rows = bench_linear(**_grid(fv, "linear"), chunk=fv.linear_chunk)
    report["linear"] = rows
    show(linear_table(rows))


def run_scaling(fv: flags.FlagValues, shape: Shape, report: dict[str, Any]) -> None:
    """``--mode scaling``: one table, every mixer x T (its own batch and width)."""
    impls = available_attention_impls()
    print(f"# dot_product_attention implementations here: {', '.join(impls)}", flush=True)
    if impls == ("xla",):
        print(f"# {CPU_NOTE}", flush=True)
    rows = bench_scaling(
        **_grid(fv, "scaling"),
        vocab=shape.vocab,
        warmup=min(fv.warmup, 1),
        attention_impls=names(fv.attention_impl),
    )
    report["scaling"] = rows
    show(scaling_table(rows))


RUNNERS: dict[str, Callable[[flags.FlagValues, Shape, dict[str, Any]], None]] = {
    "speed": run_speed,
    "compile": run_compile,
    "memory": run_memory,
    "generate": run_generate,
    "probe": run_probe,
    "linear": run_linear,
    "scaling": run_scaling,
}


# -- the command ---------------------------------------------------------------------------


def settings(fv: flags.FlagValues, shape: Shape, threads: dict[str, Any]) -> dict[str, Any]:
    """What the JSON records of how the run was set up."""
    return {
        **shape.__dict__,
        "cells": names(fv.cells),
        "peers": names(fv.peers),
        "impl": names(fv.impl),
        "repeats": fv.repeats,
        "warmup": fv.warmup,
        "unroll": fv.unroll,
        "remat": fv.remat,
        "lr": fv.lr,
        "threads": threads,
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "torch_available": torch_available(),
    }


def main(argv: Sequence[str]) -> int:
    """``seqlab bench [flags]``: prints a table per mode (in ``MODES`` order), optionally
    writes ``--json``; returns the exit status."""
    argv = list(argv)
    fv = parse_flags(argv)
    if fv is None:
        return 0
    validate(fv)
    threads = set_threads(fv.threads, fv.pin)
    torch_threads = set_torch_threads(fv.threads)
    if torch_threads is not None:
        threads["torch"] = torch_threads
    shape = Shape(fv.batch, fv.length, fv.hidden, fv.layers, fv.vocab)
    report = new_report(argv, settings(fv, shape, threads))
    hw = report["hardware"]
    print(f"# {PROGRAM}  load avg {load_avg()}  threads {threads}", flush=True)
    print(f"# CPU {hw['cpu_model']} x{hw['cores']}: {' '.join(hw['cpu_flags'])}", flush=True)
    print(f"# GLIBC_TUNABLES={hw['glibc_tunables'] or '(none)'}", flush=True)
    modes = names(fv.mode)
    for mode in MODES:
        if mode in modes:
            RUNNERS[mode](fv, shape, report)
    if fv.json:
        write_report(report, fv.json)
        print(f"\nwrote {fv.json}")
    return 0
