"""How much memory a run needs, estimated from its config before anything is compiled or
allocated, against what the device it runs on has free: a run that cannot fit is refused with
one line naming the keys to shrink, instead of ending in an XLA RESOURCE_EXHAUSTED traceback
(or an abort) minutes later.

The estimate (``train_need``), per device, for one training step:

- state: parameters (counted from shapes alone, ``seqlab.models.build.num_params``), their
  gradients, the optimizer's slots (Adam: 2) and the step's new copies of both: about
  ``2 x (1 + slots) x params x bytes``;
- activations: what the backward pass keeps for every (example, step) pair the device holds,
  per layer ``width x hidden_size`` floats (width from the cell's gate count, the backend and
  ``model.remat``, measured with XLA's ``memory_analysis``; ``tests/test_memory.py`` holds it
  within a factor of 2 of the compiled step's), plus the logits of token outputs;
- times ``num_seeds`` (the replicas are vmapped: everything is held K times).

``SEQLAB_NO_MEMORY_CHECK=1`` skips the check (the estimate is an estimate). Whatever still
fails to allocate is turned into one line by ``out_of_memory``.
"""

from __future__ import annotations

import contextlib
import math
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from ml_collections import ConfigDict

from seqlab.errors import ConfigError, RunError, UsageError

SKIP_ENV = "SEQLAB_NO_MEMORY_CHECK"
OPT_SLOTS = {"adam": 2, "adamw": 2, "rmsprop": 1, "sgd": 0}  # + momentum where it applies
ACT_BYTES = 4  # activations and logits: float32 (bfloat16 compute halves some; ignored)


@dataclass(frozen=True)
class Need:
    """Bytes one device needs for one training step (see the module docstring)."""

    params: int  # parameter count of one replica
    state: int
    activations: int

    @property
    def total(self) -> int:
        return self.state + self.activations


def gib(n: float) -> str:
    """Bytes in the largest binary unit below them: ``3.2 GiB``, ``812 MiB``, ``8.9e+07 PiB``."""
    units = ("KiB", "MiB", "GiB", "TiB", "PiB")
    i = max(0, min(len(units) - 1, int(math.log(max(n, 1), 1024)) - 1))
    return f"{n / 1024 ** (i + 1):.3g} {units[i]}"


def param_count(m: ConfigDict, spec: Any) -> int:
    """The model's parameter count from shapes alone; a model too large even to describe
    (a dimension past int32) is one ConfigError."""
    from seqlab.models.build import num_params

    try:
        with warnings.catch_warnings():  # JAX warns of int32 indices for huge shapes
            warnings.simplefilter("ignore")
            return num_params(m, spec)
    except (OverflowError, MemoryError) as e:
        raise ConfigError(
            f"config.model.hidden_size={m.hidden_size} (model.num_layers={m.num_layers}) makes "
            f"a model too large to build ({type(e).__name__}: {e}); shrink model.hidden_size"
        ) from e


def param_bytes(m: ConfigDict) -> int:
    import jax

    if m.param_dtype == "bfloat16":
        return 2
    return 8 if m.param_dtype == "float64" and jax.config.jax_enable_x64 else 4


def optimizer_slots(o: ConfigDict) -> int:
    slots = OPT_SLOTS.get(o.name, 2)
    return slots + (o.name in ("sgd", "rmsprop") and float(o.momentum) > 0)


def _gates(cell: str) -> tuple[int, bool]:
    """(gate blocks per step, whether it is a linear recurrence) of a registered cell."""
    from seqlab.cells import CELLS

    cls = CELLS[cell][0] if cell in CELLS else object
    linear = any(k.__name__ == "LinearCell" for k in cls.__mro__)
    return int(getattr(cls, "num_gates", 1)), linear


def width(m: ConfigDict) -> float:
    """Activation floats the backward pass keeps per hidden unit, layer and (example, step)
    (fitted to XLA's memory_analysis of the compiled step on CPU)."""
    g, linear = _gates(m.cell)
    if linear:  # parallel scan over the whole sequence inside a residual block
        w = 24.0 if m.remat else 36.0
    elif m.backend == "scan":
        w = 4.0 * g if m.remat else 7.0 * g + 2
    else:
        w = 2.0 * g + 3 if m.remat else 4.0 * g + 3
    return w * (2 if m.bidirectional else 1)


def _token_vocabs(m: ConfigDict, spec: Any) -> tuple[int, int]:
    """(one-hot input width, per-step output logits width) of a model family."""
    v_in = spec.vocab_size if spec.input_kind == "tokens" and m.input_kind == "onehot" else 0
    v_out = {"lm": spec.vocab_size, "seq2seq": spec.tgt_vocab_size}.get(spec.family, 0)
    return v_in, v_out


def train_need(
    config: ConfigDict, spec: Any, tokens: int, *, eval_tokens: int = 0, devices: int = 1
) -> Need:
    """Bytes per device of one training step (or eval batch, if larger) of ``config``.
    ``tokens``: (example, step) pairs in a global training batch (``task.tokens_per_batch``);
    ``eval_tokens``: those of one eval batch."""
    m, k = config.model, int(config.num_seeds)
    params = param_count(m, spec)
    state = 2 * (1 + optimizer_slots(config.optim)) * params * param_bytes(m)
    v_in, v_out = _token_vocabs(m, spec)
    units = int(m.num_layers) * int(m.hidden_size)
    per_token = units * width(m) + v_in + 3 * v_out
    per_eval_token = units * (_gates(m.cell)[0] + 2) + v_in + 2 * v_out
    act = max(
        math.ceil(tokens / devices) * per_token, math.ceil(eval_tokens / devices) * per_eval_token
    )
    return Need(params, int(state * k), int(act * ACT_BYTES * k))


def sample_need(
    config: ConfigDict, spec: Any, num_samples: int, length: int, prime: int, chunk: int = 0
) -> int:
    """Bytes ``generate`` needs for ``num_samples`` rows of ``prime`` + ``length`` tokens
    (``chunk`` > 0: generated that many at a time): the parameters, the prime's forward
    pass, one step's carry and logits per row, and the sampled ids (device, then host)."""
    m = config.model
    units = int(m.num_layers) * int(m.hidden_size) * (_gates(m.cell)[0] + 2)
    v = int(spec.vocab_size)
    held = min(length, chunk) if chunk > 0 else length
    rows = num_samples * (prime * (units + 2 * v) + units + 3 * v + 3 * held)
    return param_count(m, spec) * param_bytes(m) + ACT_BYTES * rows


# -- what is free ----------------------------------------------------------------------------
def host_available() -> int | None:
    """Bytes of RAM this process can still take: /proc/meminfo's MemAvailable, bounded by a
    cgroup (container) limit; None where neither can be read."""
    found = []
    with contextlib.suppress(OSError, ValueError, IndexError), open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                found.append(int(line.split()[1]) * 1024)
    for limit, usage in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        (
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.usage_in_bytes",
        ),
    ):
        with contextlib.suppress(OSError, ValueError), open(limit) as a, open(usage) as b:
            found.append(int(a.read().strip()) - int(b.read().strip()))  # "max": ValueError
    if not found:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    return max(0, min(found)) if found else None


def available() -> tuple[int | None, str]:
    """(bytes free, where) on the first local device: an accelerator's own memory when JAX
    reports it, else the host's RAM (a CPU run's device memory)."""
    import jax

    dev = jax.local_devices()[0]
    stats = None
    if dev.platform != "cpu":
        with contextlib.suppress(Exception):  # not every backend reports memory
            stats = dev.memory_stats()
    if stats and stats.get("bytes_limit"):
        free = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
        return free, f"{dev.platform.upper()} {dev.device_kind} memory"
    return host_available(), "host memory"


def available_here() -> tuple[int | None, str]:
    """``available()`` where asking takes no accelerator memory (a CPU-only JAX, or one this
    process has started already); else (None, why): a process that only launches runs (a
    sweep) must not claim the accelerator its runs need."""
    import importlib.metadata
    import importlib.util

    try:
        from jax._src.xla_bridge import backends_are_initialized

        started = backends_are_initialized()
    except (ImportError, AttributeError):
        started = False
    platforms = os.environ.get("JAX_PLATFORMS", "")
    cpu_only = platforms.strip().lower() == "cpu" or not (
        importlib.metadata.entry_points(group="jax_plugins")
        or importlib.util.find_spec("jax_plugins")
        or importlib.util.find_spec("libtpu")
    )
    return available() if started or cpu_only else (None, "an accelerator not started here")


# -- the checks --------------------------------------------------------------------------------
def _shrink(config: ConfigDict, need: Need) -> str:
    """The keys to shrink, the biggest share first, with their values."""
    m, d = config.model, config.data
    size = [f"model.hidden_size={m.hidden_size}", f"model.num_layers={m.num_layers}"]
    batch = [f"data.batch_size={d.batch_size}", f"data.seq_len={d.seq_len}"]
    keys = size + batch if need.state >= need.activations else batch + size
    if int(config.num_seeds) > 1:
        keys.append(f"num_seeds={config.num_seeds}")
    remat = "" if m.remat else ", or set model.remat=True"
    return "shrink " + ", ".join(keys) + remat


def check_train(
    config: ConfigDict,
    spec: Any,
    tokens: int,
    *,
    eval_tokens: int = 0,
    devices: int = 1,
    free: tuple[int | None, str] | None = None,
    share: int = 1,
) -> Need:
    """Refuses (ConfigError, one line) a run whose step cannot fit in the free memory
    (``free``: (bytes, where); default ``available()``; ``share``: runs sharing it)."""
    need = train_need(config, spec, tokens, eval_tokens=eval_tokens, devices=devices)
    if os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return need
    have, where = free if free is not None else available()
    if have is None or need.total <= have // max(1, share):
        return need
    shared = f" shared by {share} runs at once (--parallel)" if share > 1 else ""
    raise ConfigError(
        f"this run needs about {gib(need.total)} per device ({need.params:,} parameters with "
        f"their gradients and {config.optim.name} state: {gib(need.state)}; activations of "
        f"one step: {gib(need.activations)}) but {where} has {gib(have)} free{shared}; "
        f"{_shrink(config, need)} ({SKIP_ENV}=1 skips this check)"
    )


def check_run(config: ConfigDict, task: Any, devices: int = 1, **kw: Any) -> Need:
    """``check_train`` for a built task (before its data or the model are made): its spec,
    its tokens per training batch and per eval batch."""
    from seqlab.run.validate import validate_for

    validate_for(config, task.spec)  # the keys its model family never reads
    tokens = int(task.tokens_per_batch())
    per_row = tokens / max(1, int(task.global_batch_size))
    eval_rows = int(getattr(task, "eval_batch_size", 0) or task.global_batch_size)
    eval_tokens = int(per_row * eval_rows)
    return check_train(config, task.spec, tokens, eval_tokens=eval_tokens, devices=devices, **kw)


def check_config(
    config: ConfigDict, devices: int = 1, process_index: int = 0, process_count: int = 1
) -> Need:
    """``check_run`` for a config: its task is made (cheap: no data is generated, a corpus
    is read once per process) before the replicas, the model or any batch."""
    from seqlab.tasks import make_task

    task = make_task(config, process_index=process_index, process_count=process_count)
    return check_run(config, task, devices)


def check_sample(
    config: ConfigDict, spec: Any, num_samples: int, length: int, prime: int, chunk: int = 0
) -> None:
    """Refuses (UsageError, one line) a ``seqlab sample`` that cannot fit."""
    need = sample_need(config, spec, num_samples, length, prime, chunk)
    if os.environ.get(SKIP_ENV, "") not in ("", "0"):
        return
    have, where = available()
    if have is not None and need > have:
        also = "" if chunk and length > chunk else " or --length"
        raise UsageError(
            f"--num_samples={num_samples} with --length={length} needs about {gib(need)} but "
            f"{where} has {gib(have)} free; lower --num_samples{also} "
            f"({SKIP_ENV}=1 skips this check)"
        )


def check_sample_meta(
    meta: dict[str, Any], num_samples: int, length: int, prime: str | None, chunk: int = 0
) -> None:
    """``check_sample`` from a checkpoint's metadata alone (no array read): its config, its
    model spec and the prime (default: the run's ``task.sample_prime``, else a newline)."""
    from seqlab.tasks import ModelSpec, complete_config

    config = complete_config(dict(meta.get("config") or {}))
    spec = ModelSpec(**(meta.get("spec") or {}))
    text = prime or config.task.get("sample_prime", "") or "\n"
    check_sample(config, spec, num_samples, length, len(text.encode()), chunk)


# -- what still fails to allocate --------------------------------------------------------------
def is_out_of_memory(e: BaseException) -> bool:
    """An allocation failure: Python's MemoryError or XLA's RESOURCE_EXHAUSTED."""
    if isinstance(e, MemoryError):
        return True
    text = str(e)
    return "RESOURCE_EXHAUSTED" in text or (
        type(e).__name__ in ("XlaRuntimeError", "JaxRuntimeError")
        and "out of memory" in text.lower()
    )


@contextlib.contextmanager
def out_of_memory(config: ConfigDict, what: str = "training") -> Iterator[None]:
    """An allocation failure inside becomes one RunError line naming the keys to shrink."""
    try:
        yield
    except Exception as e:
        if not is_out_of_memory(e):
            raise
        first = next((ln.strip() for ln in str(e).splitlines() if ln.strip()), type(e).__name__)
        m = config.model
        raise RunError(
            f"out of memory while {what} ({first[:200]}); shrink model.hidden_size="
            f"{m.hidden_size}, data.batch_size={config.data.batch_size}, data.seq_len="
            f"{config.data.seq_len} or num_seeds={config.num_seeds}"
            + ("" if m.remat else ", or set model.remat=True")
        ) from e
