"""``train_and_evaluate(config, workdir)``: the training loop, in one linear, sectioned
function. It asks the task for batches, loss and metrics and never branches on the task.

Determinism: initialization is a function of ``config.seed``; the batch of step s is
``task.train_batch(s)`` and the dropout key is ``fold_in(key(seed), s)``, so a run resumed
from a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from ml_collections import ConfigDict

from seqlab.checkpoint import Checkpointer, check_compatible
from seqlab.config import validate
from seqlab.distributed import DataMesh
from seqlab.evaluate import Evaluator, add_metrics
from seqlab.models.build import build_model
from seqlab.optim import make_optimizer
from seqlab.probe import Prober
from seqlab.seeds import Replicas
from seqlab.tasks import Task
from seqlab.writers import Progress, make_writer

PREEMPTED_EXIT_CODE = 75  # distinct exit code after a SIGTERM/SIGINT checkpoint
SHAPE_KEYS = (
    "cell",
    "hidden_size",
    "num_layers",
    "input_kind",
    "embed_dim",
    "bidirectional",
    "readout",
    "attention",
    "attention_size",
    "activation",
    "param_dtype",
)


class TrainingError(RuntimeError):
    """Training stopped for a reason the user must act on (non-finite loss, explosion)."""


class Preempted(RuntimeError):
    def __init__(self, step: int):
        super().__init__(
            f"stopped by a signal at step {step}; checkpoint saved, re-run the "
            "same command to resume"
        )
        self.step = step


def make_train_step(graphdef: Any, task: Task, tx: optax.GradientTransformation):
    """The pure step ``(state, batch, key) -> (state, metrics)``; jit it at the call site.

    A non-finite loss or gradient never reaches the parameters: the update is skipped,
    counted, and the first such step recorded, so no non-finite state is ever saved.
    """

    def train_step(state: dict, batch: dict, key: jax.Array) -> tuple[dict, dict]:
        rng = jax.random.fold_in(key, state["step"])

        def loss_fn(params):
            model = nnx.merge(graphdef, params)
            return task.loss(model, batch, carry=state["carry"], train=True, rng=rng)

        (loss, (metrics, carry)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        new_state = {
            "step": state["step"] + 1,
            "params": keep(params, state["params"]),
            "opt_state": keep(opt_state, state["opt_state"]),
            "carry": keep(carry, state["carry"]),
            "skipped": state["skipped"] + (~finite).astype(jnp.int32),
            "first_bad": jnp.where(
                (state["first_bad"] < 0) & ~finite, state["step"], state["first_bad"]
            ),
        }
        metrics = {
            **metrics,
            "grad_norm": (jnp.where(finite, grad_norm, 0.0), finite.astype(jnp.float32)),
        }
        return new_state, metrics

    return train_step


def init_train_state(config: ConfigDict, task: Task) -> tuple[Any, dict, Any]:
    """(graphdef, train state, optimizer): a pure function of the config and the task."""
    model = build_model(config.model, task.spec, nnx.Rngs(params=config.seed))
    graphdef, params = nnx.split(model)
    tx = make_optimizer(config.optim, int(config.train.num_steps))
    state = {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "opt_state": tx.init(params),
        "carry": task.initial_carry(model, task.global_batch_size),
        "skipped": jnp.zeros((), jnp.int32),
        "first_bad": jnp.full((), -1, jnp.int32),
    }
    # Every leaf its own buffer: the state is donated to the step, and a carry may hold one
    # array twice (an LSTM's zero c and h).
    return graphdef, jax.tree.map(jnp.array, state), tx


def checkpoint_meta(config: ConfigDict, task: Task) -> dict[str, Any]:
    meta = {
        "config": config.to_dict(),
        "task": config.task.name,
        "spec": dataclasses.asdict(task.spec),
        "model_shape": {
            **{k: config.model.get(k) for k in SHAPE_KEYS},
            "num_seeds": int(config.num_seeds),
        },
    }
    vocab = getattr(task, "vocab", None)
    if vocab is not None:
        meta["vocab"] = vocab.to_dict()
    return meta


def first_bad_step(first_bad: Any) -> int:
    """The earliest step any replica saw a non-finite loss/gradient at, or -1."""
    bad = np.asarray(jax.device_get(first_bad)).reshape(-1)
    bad = bad[bad >= 0]
    return int(bad.min()) if bad.size else -1


def prepare_workdir(workdir: str) -> None:
    """Fails early, before any training, if the workdir cannot be written."""
    try:
        os.makedirs(workdir, exist_ok=True)
        probe = os.path.join(workdir, f".write_test.{jax.process_index()}")
        with open(probe, "w") as f:
            f.write("ok")
        os.remove(probe)
    except OSError as e:
        raise ValueError(
            f"workdir {workdir} is not writable ({e.strerror}); pick another --workdir"
        ) from e
    free = os.statvfs(workdir)
    if free.f_bavail * free.f_frsize < 50 * 2**20:
        raise ValueError(
            f"workdir {workdir} has less than 50 MiB free; free space or pick another --workdir"
        )


def _write_json(path: str, obj: Any) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=True)
    os.replace(tmp, path)


class _SignalFlag:
    """Turns SIGTERM/SIGINT into a flag the loop polls, so it can checkpoint and exit."""

    def __init__(self):
        self.signum: int | None = None
        self._old: dict[int, Any] = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(ValueError):  # not the main thread: no handler
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.signum is not None:  # a second signal: stop now
            raise KeyboardInterrupt
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def train_and_evaluate(config: ConfigDict, workdir: str) -> dict[str, float]:
    """Trains ``config`` in ``workdir`` (resuming from its latest checkpoint) and returns
    the final eval metrics."""
    # -- setup ---------------------------------------------------------------------------
    validate(config)
    prepare_workdir(workdir)
    pi, pc = jax.process_index(), jax.process_count()
    replicas = Replicas(config, process_index=pi, process_count=pc)  # num_seeds copies
    task, seeded = replicas.task, replicas.k > 1
    dmesh = DataMesh()
    dmesh.check_batch(task.global_batch_size)
    evals = task.eval_batches()
    if not evals:
        raise ValueError("the task produced no eval batches; set task.eval_batches >= 1")
    dmesh.check_batch(len(next(iter(evals[0].values()))) * pc, "task.eval_batch_size")
    graphdef, state, tx = replicas.init(init_train_state)
    state = dmesh.put_state(state, seed_axis=seeded)
    num_steps = int(config.train.num_steps)
    meta = checkpoint_meta(config, task)
    t = config.train
    ckpt = Checkpointer(
        os.path.join(workdir, "checkpoints"),
        keep=t.keep_checkpoints,
        best_metric=task.best_metric,
        best_mode=task.best_mode,
    )

    # -- resume --------------------------------------------------------------------------
    start, initial_loss, best, saved_metrics = 0, None, None, {}
    latest = ckpt.latest_step()
    if latest is not None:
        saved = ckpt.restore_meta(latest)
        check_compatible(saved, meta, workdir)
        state = ckpt.restore(latest, state)
        start = int(state["step"])
        initial_loss = saved.get("initial_loss")
        best = saved.get("best")
        saved_metrics = dict(saved.get("metrics") or {})  # eval metrics at that step, if any
    if pi == 0:
        _write_json(os.path.join(workdir, "config.json"), config.to_dict())
    writer = make_writer(
        config, workdir, resume_step=start if latest is not None else None, process_index=pi
    )
    evaluator = Evaluator(graphdef, task, put=dmesh.put_local_batch, replicas=replicas)
    train_step = jax.jit(replicas.map(make_train_step(graphdef, task, tx)), donate_argnums=0)
    key = replicas.key(config.seed)
    progress = Progress(
        num_steps, start, task.tokens_per_batch() * replicas.k, enabled=bool(t.progress) and pi == 0
    )
    if latest is not None:
        progress.write(f"resumed from {workdir} at step {start}")
    prober = Prober(graphdef, task, dmesh.put_local_batch) if config.probe.every > 0 else None
    probe_path = os.path.join(workdir, "probe.json")
    if prober is not None and os.path.exists(probe_path) and latest is not None:
        with open(probe_path) as f:
            prober.results = json.load(f)

    def probe(step: int) -> None:
        if prober is not None and (step == 0 or step % config.probe.every == 0):
            scalars = prober(step, replicas.first(state["params"]))  # replica 0
            writer.write_scalars(step, scalars)  # no-op off process 0
            if pi == 0:
                _write_json(probe_path, prober.results)

    if start == 0:
        probe(0)  # the curve at initialization

    def save(step: int, metrics: dict[str, float] | None = None) -> None:
        ckpt.save(
            step, state, {**meta, "initial_loss": initial_loss, "best": best}, metrics=metrics
        )

    def last_good() -> str:
        s = ckpt.latest_step()
        return f"step {s} in {ckpt.directory}" if s is not None else "none saved yet"

    # -- loop ----------------------------------------------------------------------------
    # A run resumed at its last step (finished, or killed before results.json) reports the
    # final eval metrics saved with that checkpoint instead of none.
    eval_metrics = saved_metrics if start >= num_steps else {}
    acc, t0 = None, time.perf_counter()
    try:
        with _SignalFlag() as sig:
            for step in range(start, num_steps):
                batch = dmesh.put_local_batch(replicas.train_batch(step), seed_axis=seeded)
                state, metrics = train_step(state, batch, key)
                acc = add_metrics(acc, metrics)
                done = step + 1
                # the last step: the budget, or the time limit (then evaluate, save, stop)
                last = done == num_steps or (
                    t.time_limit_s > 0 and time.perf_counter() - t0 > t.time_limit_s
                )
                if done % t.log_every == 0 or last:
                    row = replicas.reduce(acc, "train/")
                    acc = None
                    row["train/skipped_steps"] = int(np.sum(jax.device_get(state["skipped"])))
                    row["perf/wall_s"] = time.perf_counter() - t0
                    row.update(progress.update(done, row["train/loss"]))
                    bad = first_bad_step(state["first_bad"])
                    if bad >= 0 and t.on_nonfinite == "stop":
                        raise TrainingError(
                            f"non-finite loss or gradient at step {bad} (the update was skipped"
                            f"; nothing non-finite was saved); last good checkpoint: "
                            f"{last_good()}. Lower optim.learning_rate, or set "
                            "train.on_nonfinite=skip to skip such steps"
                        )
                    if (
                        t.explode_factor > 0
                        and initial_loss is not None
                        and row["train/loss"] > t.explode_factor * initial_loss
                    ):
                        raise TrainingError(
                            f"loss exploded at step {done}: {row['train/loss']:.4g} > "
                            f"{t.explode_factor} x the first logged loss {initial_loss:.4g}; "
                            f"last good checkpoint: {last_good()}. Lower optim.learning_rate"
                        )
                    if initial_loss is None:  # the reference: the first logged window's mean
                        initial_loss = row["train/loss"]
                    writer.write_scalars(done, row)
                probe(done)
                evaluated = done % t.eval_every == 0 or last
                if evaluated:
                    eval_metrics = evaluator(state["params"])
                    wall = {"perf/wall_s": time.perf_counter() - t0}
                    writer.write_scalars(done, {**eval_metrics, **wall})
                    texts = task.text_samples(
                        nnx.merge(graphdef, replicas.first(state["params"])), done
                    )
                    if texts:
                        writer.write_texts(done, texts)
                    progress.write(
                        f"step {done}: "
                        + ", ".join(f"{k}={v:.4g}" for k, v in eval_metrics.items())
                    )
                    for k, v in texts.items():
                        progress.write(f"--- {k} ---\n{v}")
                saved = False
                val = eval_metrics.get(task.best_metric) if evaluated else None
                if val is not None and (
                    best is None or (val < best if task.best_mode == "min" else val > best)
                ):
                    best = val  # a new best is always saved, so retention can keep it
                    save(done, eval_metrics)
                    saved = True
                if not saved and (done % t.checkpoint_every == 0 or last):
                    save(done, eval_metrics if evaluated else None)
                    saved = True
                if sig.signum is not None:
                    if not saved:
                        save(done, None)
                    raise Preempted(done)
                if last:
                    break
    finally:
        progress.close()
        ckpt.close()
        writer.close()
    if pi == 0:
        _write_json(
            os.path.join(workdir, "results.json"),
            {
                "step": int(state["step"]) if replicas.k == 1 else int(state["step"][0]),
                "wall_time_s": time.perf_counter() - t0,
                **eval_metrics,
            },
        )
    return eval_metrics
