"""``--mode probe``: the cost of the gradient-norm probe (``seqlab.run.probe.grad_norms``:
g_t for every t in one backward pass) against the loss gradient w.r.t. the parameters (a
training step's forward + backward, no optimizer) on the same batch of a seqlab task.

Both are jitted and timed round-robin; the ratio probe / forward+backward says what
probing during training costs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from seqlab_bench.timing import Timing, round_robin
from seqlab_bench.workload import Shape


@dataclass
class ProbeCase:
    """One task, length and backend, built and compiled: ``grad()`` and ``probe()`` block."""

    grad: Callable[[], Any]
    probe: Callable[[], Any]
    loss: float
    steps: int  # the input's length (copy memory: T + 2 * copy_len)


def probe_case(cell: str, shape: Shape, impl: str, task_name: str, length: int) -> ProbeCase:
    """The model a run with this task config would train, one training batch, and the two
    jitted computations on it."""
    import jax

    from seqlab.run.probe import grad_norms
    from seqlab.run.state import init_train_state
    from seqlab.tasks import make_task, task_config

    c = task_config(task_name)
    c.data.batch_size, c.data.seq_len = shape.batch, length
    c.model.cell, c.model.hidden_size = cell, shape.hidden
    c.model.num_layers, c.model.backend = shape.layers, impl
    task = make_task(c)
    mdef, state, _ = init_train_state(c, task)
    params = state["params"]
    batch = jax.device_put(task.train_batch(0))
    steps = int(jax.tree.leaves(batch)[0].shape[1])

    def loss(p, b):
        out, _ = task.loss(mdef.merge(p), b, carry=None)
        return out

    grad = jax.jit(jax.value_and_grad(loss))
    probe = jax.jit(lambda p, b: grad_norms(mdef.merge(p), task, b, steps))
    return ProbeCase(
        grad=lambda: jax.block_until_ready(grad(params, batch)),
        probe=lambda: jax.block_until_ready(probe(params, batch)),
        loss=float(grad(params, batch)[0]),
        steps=steps,
    )


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
    """One row per (task, T, backend): median probe and forward+backward seconds, their
    ratio (wall and CPU), and the batch's loss (equal across backends)."""
    rows = []
    for task_name in tasks:
        for length in lengths:
            cases = {impl: probe_case(cell, shape, impl, task_name, length) for impl in impls}
            fns = {}
            for impl, case in cases.items():
                fns[f"grad/{impl}"], fns[f"probe/{impl}"] = case.grad, case.probe
            for _ in range(warmup):
                for f in fns.values():
                    f()
            t = round_robin(fns, repeats)
            for impl, case in cases.items():
                g, pr = t[f"grad/{impl}"], t[f"probe/{impl}"]
                rows.append(_row(cell, shape, impl, task_name, length, case, g, pr))
    return rows


def _row(
    cell: str,
    shape: Shape,
    impl: str,
    task: str,
    length: int,
    case: ProbeCase,
    g: Timing,
    pr: Timing,
) -> dict[str, Any]:
    """One ``probe`` row of the JSON."""
    return {
        "cell": cell,
        "impl": impl,
        "task": task,
        "batch": shape.batch,
        "length": length,
        "steps": case.steps,
        "hidden": shape.hidden,
        "layers": shape.layers,
        "grad_s": g.median_wall,
        "probe_s": pr.median_wall,
        "ratio": pr.median_wall / g.median_wall,
        "ratio_cpu": pr.median_cpu / g.median_cpu,
        "loss": case.loss,
    }
