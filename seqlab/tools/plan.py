"""``seqlab plan``: compile a run's real training and eval steps for an accelerator that is not
here (``--target v5e:2x4``; ``seqlab.tools.plan_targets``) and say whether it fits, how much it
computes and moves, and about how long ``train.num_steps`` would take (a roofline lower bound:
a recurrence's sequential steps add latency a roofline does not see).

The state is built as ``seqlab train`` builds it (``Replicas``, ``init_train_state``) but as
shapes only (``jax.eval_shape``), sharded by ``DataMesh`` over the target's devices, and the
step is ``make_train_step``'s, jitted as the loop jits it."""

from __future__ import annotations

import contextlib
import math
import time
from typing import Any

import jax
import numpy as np

from seqlab.errors import UsageError
from seqlab.run.evaluate import Evaluator
from seqlab.run.memory import gib, is_out_of_memory
from seqlab.run.mesh import DataMesh, init_plan
from seqlab.run.replicas import Replicas
from seqlab.run.state import ModelDef, init_train_state, make_train_step
from seqlab.tools.plan_cost import jaxpr_cost
from seqlab.tools.plan_targets import Target


def abstract_run(config: Any) -> dict[str, Any]:
    """The run's pieces as shapes: replicas (its tasks), graphdef, optimizer, state, batches."""
    from seqlab.tasks import corpora

    def no_download(url: str, dest: Any) -> None:
        raise UsageError(f"seqlab plan does not download data ({url})")

    with _patched(corpora, "_download", no_download):
        replicas = Replicas(config)  # one process: the task's batches are the global ones
        train = replicas.train_batch(0)
        evals = replicas.task.eval_batches()
    held: dict[str, Any] = {}

    def init() -> Any:
        mdef, state, tx = replicas.init(init_train_state)
        held.update(graphdef=mdef.graphdef, rest=mdef.rest, tx=tx)
        return state

    state = jax.eval_shape(init)
    if jax.tree.leaves(held["rest"]):
        raise UsageError("seqlab plan handles models whose only state is nnx.Param leaves")
    return {
        "replicas": replicas,
        "mdef": ModelDef(held["graphdef"], held["rest"]),
        "tx": held["tx"],
        "state": state,
        "batch": {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in train.items()},
        "eval_batch": {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in evals[0].items()},
        "eval_batches": len(evals),
    }


@contextlib.contextmanager
def _patched(module: Any, name: str, value: Any):
    old = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, old)


def _place(tree: Any, sharding: Any) -> Any:
    return jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=sharding), tree)


def placed_inputs(run: dict[str, Any], dmesh: DataMesh) -> tuple[Any, Any, Any, Any]:
    """(state, batch, key, eval batch) with the shardings ``DataMesh.put_*`` gives a run."""
    seeded = run["replicas"].k > 1
    state = {k: _place(v, dmesh.replicated) for k, v in run["state"].items() if k != "carry"}
    state["carry"] = _place(run["state"]["carry"], dmesh.seeds_batch if seeded else dmesh.batch)
    batch = _place(run["batch"], dmesh.seeds_batch if seeded else dmesh.batch)
    key = _place(jax.eval_shape(lambda: run["replicas"].key(0)), dmesh.replicated)
    return state, batch, key, _place(run["eval_batch"], dmesh.batch)


def per_device(tree: Any, n: int, global_rows: int) -> Any:
    """Shapes one device holds: the batch axis (the first of ``global_rows``; after the seed
    axis with num_seeds > 1, unless K equals the batch) split ``n`` ways."""

    def cut(s: Any) -> Any:
        shape = list(s.shape)
        if global_rows in shape and global_rows % n == 0:
            shape[shape.index(global_rows)] //= n
        return jax.ShapeDtypeStruct(tuple(shape), s.dtype)

    return jax.tree.map(cut, tree)


def _memory(compiled: Any) -> dict[str, int]:
    m = compiled.memory_analysis()
    out = {
        k: int(getattr(m, f"{k}_size_in_bytes", 0) or 0)
        for k in ("argument", "output", "alias", "temp", "generated_code")
    }
    out["total"] = out["argument"] + out["output"] - out["alias"] + out["temp"]
    out["total"] += out["generated_code"]
    return out


def compile_step(fn: Any, args: tuple, what: str) -> tuple[Any, Any, float]:
    """(lowered, compiled, seconds) of ``fn.lower(*args).compile()``; XLA's
    RESOURCE_EXHAUSTED -> OutOfMemory."""
    t0 = time.perf_counter()
    try:
        lowered = fn.lower(*args)
        compiled = lowered.compile()
    except Exception as e:
        if "gpudnncreate" in str(e).lower():  # a GPU is visible, yet no cuDNN handle
            raise UsageError(f"{CUDNN_REFUSAL} (here: {' '.join(str(e).split())[:160]})") from None
        if isinstance(e, jax.errors.JaxRuntimeError) and not is_out_of_memory(e):
            # XLA itself failed (e.g. its GPU compiler's "Couldn't find output tile sizes"):
            # the target's compiler, not seqlab and not the chip's memory
            first = " ".join(str(e).split("\n")[0].split())[:240]
            raise CompileFailed(f"{what}: {first}") from None
        if not is_out_of_memory(e):
            raise
        text = " ".join(str(e).split())
        start = text.find("RESOURCE_EXHAUSTED")
        raise OutOfMemory(f"{what}: {text[max(start, 0) : max(start, 0) + 240]}") from None
    return lowered, compiled, time.perf_counter() - t0


#: jax.experimental.rnn's abstract evaluation asks cuDNN for the reserve space its forward
#: returns (``compute_rnn_workspace_reserve_space_sizes``), through a cuDNN handle, and
#: ``cudnnCreate`` needs a GPU: without one it fails with "cuDNN could not be found or could
#: not be loaded" (no cuDNN installed) or CUDNN_STATUS_NOT_INITIALIZED (cuDNN 9.28 and the
#: CUDA 12.9 runtime from pip, no driver), while tracing, before XLA compiles anything
CUDNN_REFUSAL = (
    "model.backend=cudnn cannot be compiled here: jax.experimental.rnn asks cuDNN for its "
    "reserve-space size while tracing, and cuDNN needs a GPU for that; plan with "
    "model.backend=fast (the same LSTM, compiled by XLA), and time cuDNN on a GPU "
    "(bench/device_check.sh)"
)


def refuse_cudnn_without_gpu(config: Any, platform: str) -> None:
    """One UsageError line for ``model.backend=cudnn`` on a GPU target (``platform`` cuda)
    with no GPU here."""
    if platform != "cuda" or config.model.get("backend") != "cudnn":
        return
    from jax._src.hardware_utils import has_visible_nvidia_gpu

    if not has_visible_nvidia_gpu():
        raise UsageError(CUDNN_REFUSAL)


class OutOfMemory(Exception):
    """XLA refused to compile: the step does not fit the chip (its reason, one line)."""


class CompileFailed(Exception):
    """XLA failed to compile the step for the target for another reason (its line)."""


@contextlib.contextmanager
def on_platform(platform: str):
    """Inside, ``jax.default_backend()`` names the target's platform, so the model picks the
    engines it would pick there (a linear cell's associative scan on TPU/GPU, cuDNN on GPU)."""
    name = {"cuda": "gpu"}.get(platform, platform)
    with _patched(jax, "default_backend", lambda: name):
        yield


def plan(
    config: Any, target: Target, compile: bool = True
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the run as shapes, ``analyze``'s answer) with the model built for the target."""
    refuse_cudnn_without_gpu(config, target.chip.platform)
    with on_platform(target.chip.platform):
        run = abstract_run(config)
        return run, analyze(config, target, run, compile=compile)


def analyze(
    config: Any, target: Target, run: dict[str, Any], compile: bool = True
) -> dict[str, Any]:
    """Compiles the train and eval steps for ``target``; memory, cost, roofline, times.

    ``compile=False`` counts the same FLOPs and bytes from the traced step alone, with the
    arguments and outputs taken from their shapes (no padding, no temporaries, so no fits):
    seconds instead of minutes, for estimating the many points of a sweep."""
    dmesh = DataMesh(target.devices)
    replicas, mdef, task = run["replicas"], run["mdef"], run["replicas"].task
    dmesh.check_batch(task.global_batch_size)
    state, batch, key, eval_batch = placed_inputs(run, dmesh)
    step_fn = replicas.map(make_train_step(mdef, task, run["tx"]))
    train = jax.jit(step_fn, donate_argnums=0)  # as seqlab.run.loop jits it
    evaluator = Evaluator(mdef, task, replicas=replicas)
    n, rows = dmesh.size, task.global_batch_size
    out: dict[str, Any] = {
        "target": target.name,
        "chip": target.chip.kind,
        "devices": n,
        "hosts": target.hosts,
        "initialize": _init_kind(target),
        "hbm_bytes": target.chip.hbm_bytes,
        "num_steps": int(config.train.num_steps),
    }
    cut = lambda tree: per_device(tree, n, rows)  # the batch and the carry: rows split n ways
    local_state = {**run["state"], "carry": cut(run["state"]["carry"])}
    eval_rows = jax.tree.leaves(run["eval_batch"])[0].shape[0]
    dmesh.check_batch(eval_rows, "task.eval_batch_size")  # as seqlab.run.loop checks it
    steps = {
        "train": (train, (state, batch, key), (local_state, cut(run["batch"]), key)),
        "eval": (
            evaluator._step,
            (state["params"], eval_batch, None),
            (run["state"]["params"], per_device(run["eval_batch"], n, eval_rows), None),
        ),
    }
    for what, (fn, args, local) in steps.items():
        cost = jaxpr_cost(jax.make_jaxpr(fn)(*local))  # one device's share of the step
        if not compile:
            out[what] = _roofline(cost, _shape_memory(fn, local), target, 0.0)
            out[what]["fits"] = None
            continue
        lowered, compiled, secs = compile_step(fn, args, f"{what} step")
        out[what] = _roofline(cost, _memory(compiled), target, secs)
        out[what].update(lowered=lowered, compiled=compiled)
    return out


def _shape_memory(fn: Any, local: tuple) -> dict[str, int]:
    """One device's argument and output bytes from shapes alone (``analyze(compile=False)``)."""
    size = lambda tree: sum(math.prod(x.shape) * _itemsize(x.dtype) for x in jax.tree.leaves(tree))
    out = {"argument": size(local), "output": size(jax.eval_shape(fn, *local))}
    out.update(alias=0, temp=0, generated_code=0)
    out["total"] = out["argument"] + out["output"]
    return out


def _itemsize(dtype: Any) -> int:
    """Bytes per element; a typed PRNG key's are its key data's (threefry: 2 x uint32)."""
    if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        return 8
    return np.dtype(dtype).itemsize


def wall_seconds(result: dict[str, Any], config: Any, eval_batches: int) -> float | None:
    """The roofline time of ``train.num_steps`` train steps and every evaluation the loop runs
    (one every ``train.eval_every`` steps and one at the end, ``eval_batches`` batches each)."""
    if result["train"]["roofline_s"] is None:
        return None
    steps = int(config.train.num_steps)
    evals = steps // max(1, int(config.train.eval_every)) + 1
    return result["train"]["roofline_s"] * steps + (
        result["eval"]["roofline_s"] * eval_batches * evals
    )


def _init_kind(target: Target) -> str | None:
    """What each host of the target would do: ``init_plan`` on a Cloud TPU VM's environment."""
    if target.chip.platform != "tpu":
        return None
    plan = init_plan({}, chips=len(target.devices) // max(target.hosts, 1))
    return plan[0] if plan else None


def _roofline(cost: Any, mem: dict[str, int], target: Target, secs: float) -> dict[str, Any]:
    # bytes: every matmul's operands and result each time it runs, plus reading the step's
    # arguments and writing its outputs once; fused elementwise traffic is not counted.
    moved = cost.matmul_bytes + mem["argument"] + mem["output"]
    chip = target.chip
    t_flops = cost.flops / chip.peak_flops if chip.peak_flops else None
    t_bytes = moved / chip.hbm_bw if chip.hbm_bw else None
    est = max(t_flops or 0.0, t_bytes or 0.0) if chip.peak_flops else None
    return {
        "memory": mem,
        "fits": mem["total"] <= chip.hbm_bytes if chip.hbm_bytes else None,
        "flops": cost.flops,
        "bytes": moved,
        "intensity": cost.flops / moved if moved else 0.0,
        "unknown_loops": cost.unknown_loops,
        "serial_iterations": cost.serial,
        "roofline_s": est,
        "bound": None if est is None else ("compute" if t_flops >= t_bytes else "memory"),
        "compile_s": secs,
    }


def measure_cpu(result: dict[str, Any], run: dict[str, Any], repeats: int = 5) -> float:
    """The compiled CPU train step's median seconds on zeros (state) and a real batch."""
    compiled = result["train"]["compiled"]
    zeros = lambda s: jax.numpy.zeros(s.shape, s.dtype)
    state = {k: jax.tree.map(zeros, v) for k, v in run["state"].items()}
    batch = run["replicas"].train_batch(0)
    key = run["replicas"].key(0)
    times = []
    for _ in range(repeats + 1):
        t0 = time.perf_counter()
        state, metrics = compiled(state, batch, key)
        jax.block_until_ready((state, metrics))
        times.append(time.perf_counter() - t0)
    return float(np.median(times[1:]))


def cpu_peaks(size: int = 1024, repeats: int = 5) -> tuple[float, float]:
    """(FLOP/s, bytes/s) this CPU reaches: a float32 matmul and a large copy, best of N."""
    import jax.numpy as jnp

    a = jnp.ones((size, size), jnp.float32)
    big = jnp.ones((32 * 1024 * 1024,), jnp.float32)
    mm, cp = jax.jit(lambda x: x @ x), jax.jit(jnp.sum)  # the sum streams 128 MiB once
    jax.block_until_ready((mm(a), cp(big)))
    best_mm = best_cp = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(mm(a))
        t1 = time.perf_counter()
        jax.block_until_ready(cp(big))
        t2 = time.perf_counter()
        best_mm, best_cp = min(best_mm, t1 - t0), min(best_cp, t2 - t1)
    return 2.0 * size**3 / best_mm, big.nbytes / best_cp


def describe(r: dict[str, Any], shrink: str) -> list[str]:
    """The report's lines."""
    init = f"; each host calls jax.distributed.initialize() ({r['initialize']})"
    lines = [
        f"target {r['target']}: {r['devices']} x {r['chip']}, {r['hosts']} host(s), data mesh "
        f"of {r['devices']}" + (init if r["initialize"] and r["hosts"] > 1 else "")
    ]
    for what in ("train", "eval"):
        s, m = r[what], r[what]["memory"]
        fit = "" if s["fits"] is None else (" fits" if s["fits"] else " DOES NOT FIT; " + shrink)
        where = "free host memory" if r["chip"] == "cpu" else "HBM"
        # XLA's TPU analysis counts HBM only: small temporaries kept on chip show as 0
        temp = "HBM temporaries" if "TPU" in r["chip"] else "temporaries"
        hbm = f" of {gib(r['hbm_bytes'])} {where}:" if r["hbm_bytes"] else ""
        lines.append(
            f"{what} step (compiled in {s['compile_s']:.1f} s), per device: arguments "
            f"{gib(m['argument'])}, outputs {gib(m['output'])} (aliased {gib(m['alias'])}), "
            f"{temp} {gib(m['temp'])}; total {gib(m['total'])}{hbm}{fit}"
        )
        lines.append(
            f"  {s['flops'] / 1e9:.3g} GFLOP and {s['bytes'] / 1e6:.3g} MB per device per step "
            f"(scan trip counts included), {s['intensity']:.3g} FLOP/byte; "
            f"{s['serial_iterations']:,} sequential loop iterations"
        )
        if s["roofline_s"] is not None:
            lines.append(
                f"  roofline: {s['roofline_s'] * 1e3:.3g} ms/step ({s['bound']}-bound; a lower "
                "bound: a recurrence's sequential steps add latency)"
            )
    if r["train"]["roofline_s"] is not None:
        total = r.get("wall_s", r["train"]["roofline_s"] * r["num_steps"])
        lines.append(f"train.num_steps={r['num_steps']:,} with its evals: >= {_hms(total)}")
    return lines


def _hms(s: float) -> str:
    if s < 120:
        return f"{s:.3g} s"
    return f"{s / 60:.3g} min" if s < 7200 else f"{s / 3600:.3g} h"
