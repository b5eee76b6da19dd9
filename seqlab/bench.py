"""``seqlab bench``: seqlab's recurrence against stock Flax and PyTorch, in one process.

    seqlab bench [--cells rnn,lstm,gru] [--batch B --length T --hidden H --layers L]
                 [--peers seqlab,flax,torch] [--impl scan,fast] [--repeats N] [--json FILE]
                 [--mode speed,compile,memory,generate] [--threads 1]

``speed`` (the default mode) times a char-LM training step (one-hot input of ``--vocab``
symbols -> recurrent stack -> per-step logits -> mean cross-entropy -> backward -> Adam) and
a forward-only pass (loss, no gradient) for every peer: seqlab's ``LanguageModel`` with each
recurrence implementation in ``--impl`` (``scan`` = ``seqlab.recurrence.run_cell``, ``fast``
= ``seqlab.fastscan.run_cell_fast``), stock Flax (``nnx.RNN`` over ``nnx.OptimizedLSTMCell``
/ ``nnx.GRUCell`` / ``nnx.SimpleCell``) and PyTorch (``nn.LSTM`` / ``nn.GRU`` / ``nn.RNN``)
when it is importable. After warm-up the peers run round-robin, one repeat each in turn
(the starting peer rotates), so machine noise hits all of them alike; the table reports the
median wall time and the median process CPU time (``time.process_time``: robust when other
processes share the cores) and both as ratios to PyTorch.

Other modes: ``compile`` (trace+lower+compile time of seqlab's training step at each
``--compile_lengths``; the scan is not unrolled, so it must not grow with T), ``memory``
(peak host memory of one training step vs T, remat off/on, one subprocess per point; sizes
XLA predicts above ``--memory_budget_gib`` are skipped), ``generate`` (jit-compiled
``seqlab.sample.generate`` of ``--gen_length`` characters) and ``probe`` (the gradient-norm
probe, all g_t in one backward pass, against a training step's forward+backward on the same
batch, on the tasks in ``--probe_tasks`` at each ``--probe_lengths``).

``--threads N`` (default 1) gives PyTorch and XLA N compute threads each and (``--pin``,
the default) restricts the process to N cores, so both do their work on the same cores and
the CPU-time ratio compares work, not parallelism; 0 leaves the libraries' defaults. On a
loaded 2-core machine PyTorch with 2 OpenMP threads ran ~13x slower than with 1 (spinning
threads descheduled mid-step), which is why 1 is the default.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Clock = Callable[[], tuple[float, float]]
MODES = ("speed", "compile", "memory", "generate", "probe")
TORCH_CELLS = {"lstm": "LSTM", "gru": "GRU", "rnn": "RNN"}
FLAX_CELLS = {"lstm": "OptimizedLSTMCell", "gru": "GRUCell", "rnn": "SimpleCell"}
# Keys of one row of ``results`` in the JSON (documented in docs/BENCHMARKS.md).
RESULT_KEYS = (
    "cell",
    "peer",
    "impl",
    "mode",
    "batch",
    "length",
    "hidden",
    "layers",
    "vocab",
    "median_s",
    "median_cpu_s",
    "tokens_per_s",
    "us_per_step",
    "cpu_us_per_step",
    "ratio_torch",
    "ratio_torch_cpu",
    "first_call_s",
    "compile_s",
    "peak_rss_mib",
    "xla_temp_mib",
    "loss_first",
    "loss_last",
    "times_s",
    "cpu_times_s",
)
JSON_KEYS = (
    "command",
    "hardware",
    "load_avg",
    "versions",
    "settings",
    "timer",
    "memory_method",
    "results",
    "compile",
    "memory",
    "generate",
    "probe",
)
TIMER_NOTE = (
    "median over round-robin repeats after warm-up; wall = time.perf_counter, "
    "cpu = time.process_time (all threads of this process)"
)
MEMORY_NOTE = (
    "peak_rss_mib: rise of the process RSS high-water mark (VmHWM, reset through "
    "/proc/self/clear_refs) over the RSS before one training step, after warm-up (0 when "
    "the step reuses memory the allocator kept; use --mode memory for fresh processes); "
    "xla_temp_mib: XLA's planned temporary buffers (compiled.memory_analysis())"
)


# -- timing --------------------------------------------------------------------------------


def clock() -> tuple[float, float]:
    """(wall seconds, process CPU seconds)."""
    return time.perf_counter(), time.process_time()


@dataclass
class Timing:
    wall: list[float] = field(default_factory=list)
    cpu: list[float] = field(default_factory=list)

    @property
    def median_wall(self) -> float:
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        return statistics.median(self.cpu)


def timed(fn: Callable[[], Any], clock: Clock = clock) -> tuple[Any, float, float]:
    """Runs fn once: (its result, wall seconds, CPU seconds)."""
    w0, c0 = clock()
    out = fn()
    w1, c1 = clock()
    return out, w1 - w0, c1 - c0


def round_robin(
    fns: dict[str, Callable[[], Any]], repeats: int, clock: Clock = clock
) -> dict[str, Timing]:
    """Times each fn ``repeats`` times, one call of each in turn, rotating the first."""
    names = list(fns)
    out = {n: Timing() for n in names}
    for r in range(repeats):
        for n in names[r % len(names) :] + names[: r % len(names)]:
            _, wall, cpu = timed(fns[n], clock)
            out[n].wall.append(wall)
            out[n].cpu.append(cpu)
    return out


def throughput(t: Timing, batch: int, length: int) -> dict[str, float]:
    """tokens/s = B*T / median wall time; microseconds per timestep (wall and CPU)."""
    return {
        "median_s": t.median_wall,
        "median_cpu_s": t.median_cpu,
        "tokens_per_s": batch * length / t.median_wall,
        "us_per_step": t.median_wall / length * 1e6,
        "cpu_us_per_step": t.median_cpu / length * 1e6,
    }


# -- memory --------------------------------------------------------------------------------


def _proc_status(key: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM), or None off Linux."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _reset_peak() -> bool:
    """Resets VmHWM to the current RSS (Linux >= 4.0); False where that is impossible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_during(fn: Callable[[], Any]) -> tuple[float | None, float | None]:
    """(MiB by which the RSS high-water mark rises over the RSS while fn runs, that
    high-water mark in MiB); (None, None) where the peak cannot be reset (not Linux)."""
    if not _reset_peak():
        return None, None
    before = _proc_status("VmRSS")  # read after the reset: it can drop there
    fn()
    peak = _proc_status("VmHWM")
    if before is None or peak is None:
        return None, None
    return max(peak - before, 0) / 1024, peak / 1024


def xla_memory(compiled: Any) -> dict[str, float]:
    """XLA's buffer plan of a compiled executable, in MiB."""
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend/version implements it
        return {}
    if m is None:
        return {}
    names = ("temp", "argument", "output", "alias", "generated_code")
    return {f"{n}_mib": getattr(m, f"{n}_size_in_bytes", 0) / 2**20 for n in names}


# -- environment ---------------------------------------------------------------------------


def set_threads(n: int, pin: bool = True, torch_too: bool = True) -> dict[str, Any]:
    """Gives PyTorch and XLA n compute threads each (0: library defaults).

    ``pin`` also restricts the whole process to n cores (``os.sched_setaffinity`` on every
    thread): XLA:CPU runs some matmuls on its own thread pool whatever the Eigen flag says,
    and on a shared machine spinning pool threads would be charged to the process CPU time.
    The Eigen flag only takes effect if XLA's backend is not initialized yet."""
    out: dict[str, Any] = {"threads": n}
    if n <= 0:
        return out
    if pin and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))[:n]
        for tid in os.listdir("/proc/self/task") if os.path.isdir("/proc/self/task") else [0]:
            with contextlib.suppress(OSError):
                os.sched_setaffinity(int(tid), cpus)
        out["pinned_cpus"] = cpus
    try:
        from jax._src import xla_bridge

        ready = xla_bridge.backends_are_initialized()
    except Exception:
        ready = True
    if not ready and n == 1:
        flag = "--xla_cpu_multi_thread_eigen=false"
        if flag not in os.environ.get("XLA_FLAGS", ""):
            os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " " + flag).strip()
        out["xla"] = "single-threaded Eigen (--xla_cpu_multi_thread_eigen=false)"
    else:
        out["xla"] = "library default" + (" (backend already initialized)" if ready else "")
    if torch_too and torch_available():
        import torch

        torch.set_num_threads(n)
        out["torch"] = torch.get_num_threads()
    return out


def hardware() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError), open("/proc/meminfo") as f:
        mem = round(int(f.readline().split()[1]) / 2**20, 1)
    return {
        "cpu_model": model,
        "cores": os.cpu_count(),
        "memory_gib": mem,
        "platform": platform.platform(),
    }


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in ("jax", "jaxlib", "flax", "optax", "numpy", "torch", "seqlab"):
        try:
            mod = __import__(name)
            out[name] = getattr(mod, "__version__", "?")
        except ImportError:
            out[name] = "not installed"
    return out


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# -- peers ---------------------------------------------------------------------------------


@dataclass
class Shape:
    batch: int = 32
    length: int = 100
    hidden: int = 128
    layers: int = 1
    vocab: int = 65


@dataclass
class Peer:
    """A built model: ``train()`` runs one training step and returns its loss (blocking);
    ``forward()`` computes the loss without gradients."""

    name: str
    impl: str
    train: Callable[[], float]
    forward: Callable[[], float]
    first_call_s: dict[str, float]
    compile_s: dict[str, float | None]
    xla: dict[str, dict[str, float]]

    @property
    def label(self) -> str:
        return self.name if self.impl in ("", "-") else f"{self.name}-{self.impl}"


def make_tokens(shape: Shape, seed: int = 0) -> np.ndarray:
    """(B, T+1) random token ids: inputs are [:, :-1], targets [:, 1:]."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, shape.vocab, (shape.batch, shape.length + 1)).astype(np.int32)


def set_backend(model: Any, impl: str) -> Any:
    """Sets the ``backend`` of every ``Recurrent`` layer of ``model`` to ``impl``; returns it.

    Call it before ``nnx.split``: the backend is a static attribute, so a graphdef taken
    earlier keeps the old one."""
    from flax import nnx

    import seqlab.recurrence as rec

    rec.get_runner(impl)  # unknown names fail here, in one line
    for _, m in nnx.iter_graph(model):
        if isinstance(m, rec.Recurrent):
            m.backend = impl
    return model


def cross_entropy(logits: Any, labels: Any, kind: str = "take") -> Any:
    """Mean softmax cross-entropy of integer labels, two ways with the same value:

    - ``take``: ``seqlab.tasks.base.cross_entropy`` (what seqlab's tasks use),
      ``logsumexp - take_along_axis(...)[..., 0]``; compile time independent of T.
    - ``optax``: ``optax.softmax_cross_entropy_with_integer_labels``. Its ``take(0)`` of a
      size-1 axis transposes to a scatter of constants, which XLA constant-folds at compile
      time in O(B*T): +3.5 s of compile at B*T = 320k.
    """
    import optax

    from seqlab.tasks.base import cross_entropy as take

    if kind == "optax":
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    if kind == "take":
        return take(logits, labels).mean()
    raise ValueError(f"unknown loss {kind!r}; choose optax or take")


def lm_step_fns(
    model: Any, apply: Callable[[Any, Any], Any], lr: float, loss: str = "take"
) -> tuple[Any, ...]:
    """(loss_fn(p, x, y), train_step(p, o, x, y) -> (p, o, loss), params, opt_state) for a
    char-LM: mean softmax cross-entropy of per-step logits, Adam."""
    import jax
    import optax
    from flax import nnx

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(lr)

    def loss_fn(p, x, y):
        return cross_entropy(apply(nnx.merge(graphdef, p, rest), x), y, loss)

    def train_step(p, o, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        updates, o = tx.update(g, o, p)
        return optax.apply_updates(p, updates), o, loss

    return loss_fn, train_step, params, tx.init(params)


def _jax_peer(
    name: str,
    impl: str,
    model: Any,
    apply: Callable[[Any, Any], Any],
    tokens: np.ndarray,
    lr: float,
    modes: Sequence[str] = ("train", "forward"),
) -> Peer:
    import jax
    import jax.numpy as jnp

    loss_fn, train_step, params, opt_state = lm_step_fns(model, apply, lr)
    x, y = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])
    state = [params, opt_state]
    compiled: dict[str, Any] = {}
    compile_s: dict[str, float | None] = {}
    specs = {
        "train": (train_step, (params, opt_state, x, y), (0, 1)),
        "forward": (loss_fn, (params, x, y), ()),
    }
    for mode in modes:
        fn, args, donate = specs[mode]
        jitted = jax.jit(fn, donate_argnums=donate)
        c, wall, _ = timed(lambda j=jitted, a=args: j.lower(*a).compile())
        compiled[mode], compile_s[mode] = c, wall

    def train() -> float:
        p, o, loss = compiled["train"](state[0], state[1], x, y)
        state[0], state[1] = p, o
        return float(loss)

    def forward() -> float:
        return float(compiled["forward"](state[0], x, y))

    run = {"train": train, "forward": forward}
    first = {m: compile_s[m] + timed(run[m])[1] for m in modes}
    xla = {m: xla_memory(c) for m, c in compiled.items()}
    return Peer(name, impl, train, forward, first, compile_s, xla)


def seqlab_model(cell: str, shape: Shape, seed: int = 0, **kw: Any) -> Any:
    from flax import nnx

    from seqlab.models import LanguageModel

    return LanguageModel(
        shape.vocab,
        cell=cell,
        hidden_size=shape.hidden,
        num_layers=shape.layers,
        input_kind="onehot",
        rngs=nnx.Rngs(seed),
        **kw,
    )


def seqlab_peer(
    cell: str,
    shape: Shape,
    tokens: np.ndarray,
    *,
    impl: str = "scan",
    lr: float = 1e-3,
    seed: int = 0,
    unroll: int = 1,
    remat: bool = False,
    model: Any = None,
    modes: Sequence[str] = ("train", "forward"),
) -> Peer:
    """seqlab's LanguageModel with the given recurrence implementation."""
    model = set_backend(model or seqlab_model(cell, shape, seed, unroll=unroll, remat=remat), impl)
    return _jax_peer("seqlab", impl, model, lambda m, x: m(x)[0], tokens, lr, modes)


def flax_model(cell: str, shape: Shape, seed: int = 0) -> Any:
    """Stock Flax: ``nnx.RNN`` layers over Flax's own cells, one-hot input, Linear head."""
    import jax
    import jax.numpy as jnp
    from flax import nnx

    if cell not in FLAX_CELLS:
        raise ValueError(f"stock Flax has no {cell!r} cell; choose one of {sorted(FLAX_CELLS)}")
    cls = getattr(nnx, FLAX_CELLS[cell])

    class FlaxLM(nnx.Module):
        def __init__(self, rngs: nnx.Rngs):
            sizes = [shape.vocab] + [shape.hidden] * shape.layers
            self.rnns = nnx.List(
                [nnx.RNN(cls(i, shape.hidden, rngs=rngs), rngs=False) for i in sizes[:-1]]
            )
            self.head = nnx.Linear(shape.hidden, shape.vocab, rngs=rngs)

        def __call__(self, tokens):
            x = jax.nn.one_hot(tokens, shape.vocab)
            zeros = jnp.zeros((tokens.shape[0], shape.hidden), x.dtype)
            carry = (zeros, zeros) if cell == "lstm" else zeros  # no rng use inside jit
            for rnn in self.rnns:
                x = rnn(x, initial_carry=carry)
            return self.head(x)

    return FlaxLM(nnx.Rngs(seed))


def flax_peer(
    cell: str,
    shape: Shape,
    tokens: np.ndarray,
    *,
    lr: float = 1e-3,
    seed: int = 0,
    modes: Sequence[str] = ("train", "forward"),
) -> Peer:
    model = flax_model(cell, shape, seed)
    return _jax_peer("flax", "-", model, lambda m, x: m(x), tokens, lr, modes=modes)


def torch_model(cell: str, shape: Shape, seed: int = 0) -> Any:
    """PyTorch: ``nn.LSTM``/``nn.GRU``/``nn.RNN`` (batch-first) on one-hot input + Linear."""
    import torch

    if cell not in TORCH_CELLS:
        raise ValueError(f"PyTorch has no {cell!r} cell; choose one of {sorted(TORCH_CELLS)}")
    torch.manual_seed(seed)

    class TorchLM(torch.nn.Module):
        def __init__(self):
            super().__init__()
            rnn_cls = getattr(torch.nn, TORCH_CELLS[cell])
            self.rnn = rnn_cls(shape.vocab, shape.hidden, shape.layers, batch_first=True)
            self.head = torch.nn.Linear(shape.hidden, shape.vocab)

        def forward(self, tokens):
            x = torch.nn.functional.one_hot(tokens.long(), shape.vocab).float()
            return self.head(self.rnn(x)[0])

    return TorchLM()


def torch_loss(model: Any, tokens: np.ndarray) -> Any:
    import torch

    t = torch.as_tensor(tokens)
    logits = model(t[:, :-1])
    return torch.nn.functional.cross_entropy(
        logits.reshape(-1, logits.shape[-1]), t[:, 1:].reshape(-1).long()
    )


def torch_peer(
    cell: str,
    shape: Shape,
    tokens: np.ndarray,
    *,
    lr: float = 1e-3,
    seed: int = 0,
    model: Any = None,
    modes: Sequence[str] = ("train", "forward"),
) -> Peer:
    """PyTorch's LM (``torch_model``) with Adam; ``model`` to start from given weights."""
    import torch

    model = model or torch_model(cell, shape, seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)

    def train() -> float:
        opt.zero_grad(set_to_none=True)
        loss = torch_loss(model, tokens)
        loss.backward()
        opt.step()
        return float(loss.item())

    def forward() -> float:
        with torch.inference_mode():
            return float(torch_loss(model, tokens).item())

    run = {"train": train, "forward": forward}
    first = {m: timed(run[m])[1] for m in modes}
    return Peer("torch", "-", train, forward, first, {m: None for m in modes}, {})


def build_peers(
    cell: str,
    shape: Shape,
    tokens: np.ndarray,
    peers: Sequence[str],
    impls: Sequence[str],
    *,
    lr: float = 1e-3,
    seed: int = 0,
    unroll: int = 1,
    remat: bool = False,
    modes: Sequence[str] = ("train", "forward"),
) -> list[Peer]:
    """The peers that exist for ``cell``: stock Flax and PyTorch only have rnn, lstm, gru."""
    out = []
    kw = {"lr": lr, "seed": seed, "modes": modes}
    for p in peers:
        if p == "seqlab":
            for impl in impls:
                out.append(
                    seqlab_peer(cell, shape, tokens, impl=impl, unroll=unroll, remat=remat, **kw)
                )
        elif p == "flax" and cell in FLAX_CELLS:
            out.append(flax_peer(cell, shape, tokens, **kw))
        elif p == "torch" and cell in TORCH_CELLS and torch_available():
            out.append(torch_peer(cell, shape, tokens, **kw))
    return out


# -- modes ---------------------------------------------------------------------------------


def bench_speed(
    cell: str,
    shape: Shape,
    peers: Sequence[str],
    impls: Sequence[str],
    *,
    repeats: int,
    warmup: int,
    lr: float = 1e-3,
    unroll: int = 1,
    remat: bool = False,
    modes: Sequence[str] = ("train", "forward"),
    clock: Clock = clock,
) -> list[dict[str, Any]]:
    """One row per (peer, mode): timings, throughput, ratios to PyTorch, compile, memory."""
    tokens = make_tokens(shape)
    built = build_peers(
        cell, shape, tokens, peers, impls, lr=lr, unroll=unroll, remat=remat, modes=modes
    )
    rows = []
    for mode in modes:
        fns = {p.label: (p.train if mode == "train" else p.forward) for p in built}
        losses = {label: [] for label in fns}
        for label, fn in fns.items():
            for _ in range(warmup):
                losses[label].append(fn())
        peaks = {label: peak_rss_during(fn)[0] for label, fn in fns.items()}
        timings = round_robin(fns, repeats, clock)
        for label, fn in fns.items():
            losses[label].append(fn())
        torch_t = timings.get("torch")
        for p in built:
            t = timings[p.label]
            row: dict[str, Any] = {
                "cell": cell,
                "peer": p.name,
                "impl": p.impl,
                "mode": mode,
                **shape.__dict__,
                **throughput(t, shape.batch, shape.length),
                "ratio_torch": torch_t.median_wall / t.median_wall if torch_t else None,
                "ratio_torch_cpu": torch_t.median_cpu / t.median_cpu if torch_t else None,
                "first_call_s": p.first_call_s[mode],
                "compile_s": p.compile_s[mode],
                "peak_rss_mib": peaks[p.label],
                "xla_temp_mib": p.xla.get(mode, {}).get("temp_mib"),
                "loss_first": losses[p.label][0] if losses[p.label] else None,
                "loss_last": losses[p.label][-1],
                "times_s": t.wall,
                "cpu_times_s": t.cpu,
            }
            rows.append(row)
    return rows


def _lower_train_step(
    cell: str, shape: Shape, impl: str, loss: str = "take", **model_kw: Any
) -> tuple[Any, float]:
    """Traces and lowers seqlab's training step for abstract (B, T) tokens: (lowered, s)."""
    import jax
    import jax.numpy as jnp

    model = seqlab_model(cell, shape, backend=impl, **model_kw)
    _, train_step, params, opt_state = lm_step_fns(model, lambda m, x: m(x)[0], 1e-3, loss)
    tok = jax.ShapeDtypeStruct((shape.batch, shape.length), jnp.int32)
    jitted = jax.jit(train_step, donate_argnums=(0, 1))
    lowered, wall, _ = timed(lambda: jitted.lower(params, opt_state, tok, tok))
    return lowered, wall


def bench_compile(
    cell: str,
    shape: Shape,
    impls: Sequence[str],
    lengths: Sequence[int],
    *,
    repeats: int = 3,
    unroll: int = 1,
    losses: Sequence[str] = ("take",),
) -> list[dict[str, Any]]:
    """Trace+lower and XLA compile seconds of seqlab's training step at each T, interleaved
    (median of ``repeats``; every repeat builds a fresh model, so nothing is cached)."""

    def once(impl: str, loss: str, length: int) -> tuple[float, float, float]:
        s = Shape(shape.batch, length, shape.hidden, shape.layers, shape.vocab)
        lowered, lower_s = _lower_train_step(cell, s, impl, loss, unroll=unroll)
        _, compile_s, compile_cpu = timed(lowered.compile)
        return lower_s, compile_s, compile_cpu

    samples: dict[tuple[str, str, int], list[tuple[float, float, float]]] = {
        (i, loss, t): [] for i in impls for loss in losses for t in lengths
    }
    for _ in range(repeats):
        for key in samples:
            samples[key].append(once(*key))
    rows = []
    for (impl, loss, length), s in samples.items():
        lower = statistics.median(v[0] for v in s)
        comp = statistics.median(v[1] for v in s)
        rows.append(
            {
                "cell": cell,
                "impl": impl,
                "loss": loss,
                "length": length,
                "batch": shape.batch,
                "hidden": shape.hidden,
                "layers": shape.layers,
                "lower_s": lower,
                "compile_s": comp,
                "compile_cpu_s": statistics.median(v[2] for v in s),
                "total_s": lower + comp,
            }
        )
    for impl in impls:
        for loss in losses:
            mine = [r for r in rows if r["impl"] == impl and r["loss"] == loss]
            base = min(mine, key=lambda r: r["length"])["total_s"]
            for r in mine:
                r["ratio_to_shortest"] = r["total_s"] / base
    return rows


def _memory_plan(cell: str, shape: Shape, impl: str, remat: bool) -> dict[str, float]:
    """XLA's buffer plan for one training step (compiled, never run: no big arrays)."""
    lowered, _ = _lower_train_step(cell, shape, impl, remat=remat)
    return xla_memory(lowered.compile())


def memory_child(spec: dict[str, Any]) -> dict[str, Any]:
    """Runs in a fresh process: peak RSS of seqlab training steps (after compilation)."""
    set_threads(int(spec.get("threads", 1)), torch_too=False)
    shape = Shape(**spec["shape"])
    tokens = make_tokens(shape)
    rss0 = _proc_status("VmRSS")
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
                plan = _memory_plan(cell, s, impl, remat)
                need = sum(plan.get(k, 0.0) for k in ("temp_mib", "argument_mib", "output_mib"))
                row: dict[str, Any] = {
                    "cell": cell,
                    "impl": impl,
                    "remat": remat,
                    **s.__dict__,
                    "xla_plan": plan,
                    "xla_need_gib": need / 1024,
                }
                if need / 1024 > budget_gib:
                    row["skipped"] = f"XLA plans {need / 1024:.1f} GiB > budget {budget_gib} GiB"
                else:
                    spec = {
                        "cell": cell,
                        "impl": impl,
                        "remat": remat,
                        "shape": s.__dict__,
                        "threads": threads,
                    }
                    row.update(_run_child(spec, timeout_s))
                rows.append(row)
    return rows


def _run_child(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    code = "import json,sys; from seqlab.bench import memory_child; " + (
        "print('@@' + json.dumps(memory_child(json.loads(sys.argv[1]))))"
    )
    try:
        p = subprocess.run(
            [sys.executable, "-c", code, json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout_s:.0f} s"}
    for line in p.stdout.splitlines():
        if line.startswith("@@"):
            return json.loads(line[2:])
    tail = (p.stderr or p.stdout).strip().splitlines()[-1:] or ["no output"]
    return {"error": f"exit {p.returncode}: {tail[0][:300]}"}


def bench_generate(
    cell: str = "lstm",
    hidden: int = 512,
    layers: int = 2,
    length: int = 2000,
    *,
    vocab: int = 65,
    repeats: int = 5,
    prime_len: int = 16,
) -> dict[str, Any]:
    """Jit-compiled ``seqlab.sample.generate`` of ``length`` chars: first call and steady."""
    import jax

    from seqlab.sample import generate

    model = seqlab_model(cell, Shape(1, length, hidden, layers, vocab))
    prime = np.random.default_rng(0).integers(0, vocab, prime_len)
    key = jax.random.key(0)

    def run() -> Any:
        return jax.block_until_ready(generate(model, prime, length, key=key, temperature=0.8))

    _, first, _ = timed(run)
    t = round_robin({"generate": run}, max(repeats, 1))["generate"]
    return {
        "cell": cell,
        "hidden": hidden,
        "layers": layers,
        "chars": length,
        "prime_len": prime_len,
        "first_call_s": first,
        "median_s": t.median_wall,
        "median_cpu_s": t.median_cpu,
        "chars_per_s": length / t.median_wall,
        "times_s": t.wall,
        "target_s": 2.0,
        "meets_target": t.median_wall < 2.0,
    }


def bench_probe(
    cell: str,
    shape: Shape,
    impls: Sequence[str],
    tasks: Sequence[str],
    lengths: Sequence[int],
    *,
    repeats: int = 5,
    warmup: int = 2,
) -> list[dict[str, Any]]:
    """One probe (``seqlab.probe.grad_norms``: g_t for every t) against the loss gradient
    w.r.t. the parameters (a training step's forward + backward, no optimizer) on the same
    batch of a seqlab task, timed round-robin; the issue's target is probe <= 2x."""
    import jax
    from flax import nnx

    from seqlab.config import base_config
    from seqlab.models.build import build_model
    from seqlab.probe import grad_norms
    from seqlab.tasks import make_task

    rows = []
    for task_name in tasks:
        for length in lengths:
            fns, losses = {}, {}
            for impl in impls:
                c = base_config()
                c.task.name = task_name
                c.data.batch_size, c.data.seq_len = shape.batch, length
                c.model.cell, c.model.hidden_size = cell, shape.hidden
                c.model.num_layers, c.model.backend = shape.layers, impl
                task = make_task(c)
                model = build_model(c.model, task.spec, nnx.Rngs(0))
                graphdef, params = nnx.split(model)
                batch = jax.device_put(task.train_batch(0))
                steps = int(jax.tree.leaves(batch)[0].shape[1])  # copy memory: T + 2 * copy_len

                def loss(p, b, graphdef=graphdef, task=task):
                    out, _ = task.loss(nnx.merge(graphdef, p), b, carry=None, train=False)
                    return out

                grad = jax.jit(jax.value_and_grad(loss))
                probe = jax.jit(lambda p, b, g=graphdef, t=task, n=steps: grad_norms(g, p, t, b, n))
                fns[f"grad/{impl}"] = lambda f=grad, p=params, b=batch: jax.block_until_ready(
                    f(p, b)
                )
                fns[f"probe/{impl}"] = lambda f=probe, p=params, b=batch: jax.block_until_ready(
                    f(p, b)
                )
                losses[impl] = float(grad(params, batch)[0])
            for _ in range(warmup):
                for f in fns.values():
                    f()
            t = round_robin(fns, repeats)
            for impl in impls:
                g, pr = t[f"grad/{impl}"], t[f"probe/{impl}"]
                rows.append(
                    {
                        "cell": cell,
                        "impl": impl,
                        "task": task_name,
                        "batch": shape.batch,
                        "length": length,
                        "steps": steps,
                        "hidden": shape.hidden,
                        "layers": shape.layers,
                        "grad_s": g.median_wall,
                        "probe_s": pr.median_wall,
                        "ratio": pr.median_wall / g.median_wall,
                        "ratio_cpu": pr.median_cpu / g.median_cpu,
                        "loss": losses[impl],
                        "target": 2.0,
                    }
                )
    return rows


# -- output --------------------------------------------------------------------------------


def _fmt(v: Any, spec: str = ".2f") -> str:
    return "n/a" if v is None else format(v, spec)


def speed_table(rows: Sequence[dict[str, Any]]) -> str:
    head = (
        "| cell | B,T,H,L | mode | peer | tokens/s | us/step | x torch (wall) | x torch (cpu) "
        "| first call s | peak RSS MiB | XLA temp MiB |"
    )
    lines = [head, "|" + "---|" * 11]
    for r in rows:
        shp = f"{r['batch']},{r['length']},{r['hidden']},{r['layers']}"
        lines.append(
            f"| {r['cell']} | {shp} | {r['mode']} | "
            + (r["peer"] if r["impl"] == "-" else f"{r['peer']}-{r['impl']}")
            + f" | {r['tokens_per_s']:,.0f} | {r['us_per_step']:.0f} | "
            f"{_fmt(r['ratio_torch'])} | {_fmt(r['ratio_torch_cpu'])} | "
            f"{_fmt(r['first_call_s'])} | {_fmt(r['peak_rss_mib'], '.0f')} | "
            f"{_fmt(r['xla_temp_mib'], '.0f')} |"
        )
    return "\n".join(lines)


def compile_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| cell | impl | loss | T | trace+lower s | compile s | total s | x shortest T |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['impl']} | {r['loss']} | {r['length']} | {r['lower_s']:.2f} | "
            f"{r['compile_s']:.2f} | {r['total_s']:.2f} | {r['ratio_to_shortest']:.2f} |"
        )
    return "\n".join(lines)


def memory_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| cell | impl | T | remat | XLA plan GiB | XLA temp GiB | peak RSS in a step MiB "
        "| RSS rise in the step MiB | step s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        note = r.get("skipped") or r.get("error")
        temp = r["xla_plan"].get("temp_mib", 0.0) / 1024
        head = (
            f"| {r['cell']} | {r['impl']} | {r['length']} | {'on' if r['remat'] else 'off'} | "
            f"{r['xla_need_gib']:.2f} | {temp:.2f} | "
        )
        if note:
            lines.append(head + f"{note} | | |")
        else:
            lines.append(
                head + f"{_fmt(r.get('peak_rss_step_abs_mib'), '.0f')} | "
                f"{_fmt(r.get('peak_rss_step_mib'), '.0f')} | {_fmt(r.get('step_s'))} |"
            )
    return "\n".join(lines)


def probe_table(rows: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| cell | impl | task | T | fwd+bwd ms | probe ms | probe / fwd+bwd | CPU ratio |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['cell']} | {r['impl']} | {r['task']} | {r['length']} | "
            f"{r['grad_s'] * 1e3:.1f} | {r['probe_s'] * 1e3:.1f} | {r['ratio']:.2f} | "
            f"{r['ratio_cpu']:.2f} |"
        )
    return "\n".join(lines)


# -- command -------------------------------------------------------------------------------


def _ints(s: str) -> list[int]:
    return [int(v) for v in s.split(",") if v.strip()]


def _names(s: str) -> list[str]:
    return [v.strip() for v in s.split(",") if v.strip()]


def _define(fv: Any) -> None:
    from absl import flags

    d = {"flag_values": fv}
    flags.DEFINE_string("cells", "rnn,lstm,gru", "cells to benchmark (comma-separated)", **d)
    flags.DEFINE_integer("batch", 32, "batch size B", **d)
    flags.DEFINE_integer("length", 100, "sequence length T", **d)
    flags.DEFINE_integer("hidden", 128, "hidden size H", **d)
    flags.DEFINE_integer("layers", 1, "recurrent layers L", **d)
    flags.DEFINE_integer("vocab", 65, "vocabulary (one-hot input and logits)", **d)
    flags.DEFINE_string("peers", "seqlab,flax,torch", "peers: seqlab, flax, torch", **d)
    flags.DEFINE_string("impl", "scan,fast", "seqlab recurrence: scan (run_cell), fast", **d)
    flags.DEFINE_string(
        "mode", "speed", "speed, compile, memory, generate, probe (comma list)", **d
    )
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


def _validate(fv: Any) -> None:
    from seqlab.cells import CELLS

    for c in _names(fv.cells):
        if c not in CELLS:
            raise ValueError(f"unknown cell {c!r} in --cells; choose from {sorted(CELLS)}")
    for p in _names(fv.peers):
        if p not in ("seqlab", "flax", "torch"):
            raise ValueError(f"unknown peer {p!r} in --peers; choose seqlab, flax, torch")
    for i in _names(fv.impl):
        if i not in ("scan", "fast"):
            raise ValueError(f"unknown --impl {i!r}; choose scan, fast")
    for m in _names(fv.mode):
        if m not in MODES:
            raise ValueError(f"unknown --mode {m!r}; choose from {', '.join(MODES)}")
    for p in _names(fv.passes):
        if p not in ("train", "forward"):
            raise ValueError(f"unknown --passes {p!r}; choose train, forward")
    for loss in _names(fv.compile_losses):
        if loss not in ("optax", "take"):
            raise ValueError(f"unknown --compile_losses {loss!r}; choose optax, take")
    from seqlab.tasks import TASKS

    for t in _names(fv.probe_tasks):
        if t not in TASKS:
            raise ValueError(f"unknown task {t!r} in --probe_tasks; choose from {sorted(TASKS)}")
    for name in ("batch", "length", "hidden", "layers", "vocab", "repeats"):
        if fv[name].value < 1:
            raise ValueError(f"--{name} must be >= 1")


def cmd_bench(argv: Sequence[str]) -> int:
    """The ``seqlab bench`` command; prints tables, optionally writes ``--json``."""
    from seqlab.cli import _parse

    fv = _parse("bench", argv, _define)
    _validate(fv)
    threads = set_threads(fv.threads, fv.pin)
    shape = Shape(fv.batch, fv.length, fv.hidden, fv.layers, fv.vocab)
    cells, peers, impls = _names(fv.cells), _names(fv.peers), _names(fv.impl)
    modes = _names(fv.mode)
    report: dict[str, Any] = {
        "command": ["seqlab", "bench", *argv],
        "hardware": hardware(),
        "load_avg": {"start": os.getloadavg()},
        "versions": versions(),
        "settings": {
            **shape.__dict__,
            "cells": cells,
            "peers": peers,
            "impl": impls,
            "repeats": fv.repeats,
            "warmup": fv.warmup,
            "unroll": fv.unroll,
            "remat": fv.remat,
            "lr": fv.lr,
            "threads": threads,
            "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "torch_available": torch_available(),
        },
        "timer": TIMER_NOTE,
        "memory_method": MEMORY_NOTE,
        "results": [],
        "compile": [],
        "memory": [],
        "generate": None,
        "probe": [],
    }
    print(f"# seqlab bench  load avg {_load()}  threads {threads}", flush=True)
    if "speed" in modes:
        for cell in cells:
            rows = bench_speed(
                cell,
                shape,
                peers,
                impls,
                repeats=fv.repeats,
                warmup=fv.warmup,
                lr=fv.lr,
                unroll=fv.unroll,
                remat=fv.remat,
                modes=_names(fv.passes),
            )
            report["results"] += rows
            print(f"\n{speed_table(rows)}\nload avg {_load()}", flush=True)
    if "compile" in modes:
        for cell in cells:
            rows = bench_compile(
                cell,
                shape,
                impls,
                _ints(fv.compile_lengths),
                unroll=fv.unroll,
                losses=_names(fv.compile_losses),
            )
            report["compile"] += rows
            print(f"\n{compile_table(rows)}\nload avg {_load()}", flush=True)
    if "memory" in modes:
        mshape = Shape(fv.memory_batch, 0, fv.memory_hidden, fv.layers, fv.vocab)
        for cell in cells:
            rows = bench_memory(
                cell,
                mshape,
                impls,
                _ints(fv.memory_lengths),
                budget_gib=fv.memory_budget_gib,
                threads=fv.threads,
            )
            report["memory"] += rows
            print(f"\n{memory_table(rows)}\nload avg {_load()}", flush=True)
    if "generate" in modes:
        g = bench_generate(
            "lstm",
            fv.gen_hidden,
            fv.gen_layers,
            fv.gen_length,
            vocab=fv.vocab,
            repeats=min(fv.repeats, 5),
        )
        report["generate"] = g
        print(
            f"\ngenerate {g['chars']} chars, {g['layers']}x{g['hidden']} {g['cell']}: "
            f"first call {g['first_call_s']:.2f} s, then {g['median_s']:.3f} s "
            f"({g['chars_per_s']:,.0f} chars/s; target < {g['target_s']} s: "
            f"{'met' if g['meets_target'] else 'MISSED'})  load avg {_load()}",
            flush=True,
        )
    if "probe" in modes:
        for cell in cells:
            rows = bench_probe(
                cell,
                shape,
                impls,
                _names(fv.probe_tasks),
                _ints(fv.probe_lengths),
                repeats=fv.repeats,
                warmup=fv.warmup,
            )
            report["probe"] += rows
            print(f"\n{probe_table(rows)}\nload avg {_load()}", flush=True)
    report["load_avg"]["end"] = os.getloadavg()
    if fv.json:
        with open(fv.json, "w") as f:
            json.dump(report, f, indent=1)
        print(f"\nwrote {fv.json}")
    return 0


def _load() -> str:
    return "/".join(f"{v:.2f}" for v in os.getloadavg())
