"""``train_and_evaluate(config, workdir)``: the training loop, in one linear, sectioned
function. It asks the task for batches, loss and metrics and never branches on the task.

Determinism: initialization is a function of ``config.seed``; the batch of step s is
``task.train_batch(s)`` and the dropout keys are ``fold_in(key(seed), s)`` (then one fold
per dropout site, ``seqlab.recurrence.layers.dropout_key``), so a run resumed
from a checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from ml_collections import ConfigDict

from seqlab.errors import RunError, TrainingError
from seqlab.run import records
from seqlab.run.checkpoint import Checkpointer
from seqlab.run.evaluate import Evaluator, add_metrics
from seqlab.run.memory import check_config, out_of_memory
from seqlab.run.mesh import DataMesh
from seqlab.run.probe import Prober, draw_figures
from seqlab.run.replicas import Replicas
from seqlab.run.resume import resume
from seqlab.run.state import checkpoint_meta, init_train_state, make_train_step
from seqlab.run.validate import validate
from seqlab.run.workdir import claim
from seqlab.run.writers import Progress, make_writer, write_json
from seqlab.tasks import complete_config

#: ``on_eval(task, model, config, workdir, step)``: see ``train_and_evaluate``
EvalHook = Callable[[Any, Any, ConfigDict, str, int], None]

PREEMPTED_EXIT_CODE = 75  # distinct exit code after a SIGTERM/SIGINT checkpoint


class Preempted(RuntimeError):
    def __init__(self, step: int):
        super().__init__(
            f"stopped by a signal at step {step}; checkpoint saved, re-run the "
            "same command to resume"
        )
        self.step = step


def first_bad_step(first_bad: Any) -> int:
    """The earliest step any replica saw a non-finite loss/gradient at, or -1."""
    bad = np.asarray(jax.device_get(first_bad)).reshape(-1)
    bad = bad[bad >= 0]
    return int(bad.min()) if bad.size else -1


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


def train_and_evaluate(
    config: ConfigDict, workdir: str, *, on_eval: EvalHook | None = None
) -> dict[str, float]:
    """Trains ``config`` in ``workdir`` (resuming from its newest readable checkpoint) and
    returns the final eval metrics. One process trains in a workdir at a time.

    ``on_eval(task, model, config, workdir, step)`` runs on process 0 after each eval with
    the live task and model (the first seed's): how tools such as ``seqlab inspect``'s page
    (``config.inspect.every``) hook in without the loop importing them."""
    config = complete_config(config)
    validate(config)
    check_config(config, jax.device_count(), jax.process_index(), jax.process_count())  # memory
    DataMesh().check_batch(int(config.data.batch_size))  # bad input before the workdir lock
    with claim(workdir, jax.process_index()):  # checked, locked; a full disk is one line
        return _train_and_evaluate(config, workdir, on_eval)


def _train_and_evaluate(
    config: ConfigDict, workdir: str, on_eval: EvalHook | None
) -> dict[str, float]:
    # -- setup ---------------------------------------------------------------------------
    pi, pc = jax.process_index(), jax.process_count()
    replicas = Replicas(config, process_index=pi, process_count=pc)  # num_seeds copies
    task, seeded = replicas.task, replicas.k > 1
    dmesh = DataMesh()
    dmesh.check_batch(task.global_batch_size)
    evals = task.eval_batches()
    if not evals:
        raise RunError("the task produced no eval batches; set task.eval_batches >= 1")
    dmesh.check_batch(len(next(iter(evals[0].values()))) * pc, "task.eval_batch_size")
    with out_of_memory(config, "initializing the model"):
        mdef, state, tx = replicas.init(init_train_state)
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

    # -- resume: the newest readable checkpoint (unreadable ones set aside), or step 0 ----
    start, initial_loss, best, saved_metrics = 0, None, None, {}
    found, finished = resume(ckpt, state, meta, workdir, num_steps, set_aside=pi == 0)
    latest = found.step if found is not None else None
    if found is not None:
        saved, state, start = found.meta, found.state, found.step
        initial_loss = saved.get("initial_loss")
        best = saved.get("best")
        saved_metrics = dict(saved.get("metrics") or {})  # eval metrics at that step, if any
    if finished:  # run again once finished: its results stand, nothing is rewritten
        ckpt.close()
        return saved_metrics
    writer = make_writer(
        config, workdir, resume_step=start if latest is not None else None, process_index=pi
    )
    evaluator = Evaluator(mdef, task, put=dmesh.put_local_batch, replicas=replicas)
    train_step = jax.jit(replicas.map(make_train_step(mdef, task, tx)), donate_argnums=0)
    key = replicas.key(config.seed)
    progress = Progress(
        num_steps, start, task.tokens_per_batch() * replicas.k, enabled=bool(t.progress) and pi == 0
    )
    if latest is not None:
        progress.write(f"resumed from {workdir} at step {start}")
    prober = (
        Prober(mdef, task, dmesh.put_local_batch, quantity=str(config.probe.quantity))
        if config.probe.every > 0
        else None
    )
    probe_path = os.path.join(workdir, "probe.json")
    if prober is not None and latest is not None:  # damaged: set aside, probed anew
        prober.results = records.read_json(probe_path, set_aside=pi == 0) or {}
    if pi == 0:  # after every file read back was checked: a refusal leaves it as it was
        write_json(os.path.join(workdir, "config.json"), config.to_dict())

    def probe(step: int) -> None:
        if prober is not None and (step == 0 or step % config.probe.every == 0):
            scalars = prober(step, replicas.first(state["params"]))  # replica 0
            writer.write_scalars(step, scalars)  # no-op off process 0
            if pi == 0:
                write_json(probe_path, prober.results)
                figures = (
                    draw_figures(prober.results, workdir, prober.quantity)
                    if writer.wants_figures
                    else {}
                )
                writer.write_probe(step, prober.results, figures)  # W&B: curves and figures

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
        with _SignalFlag() as sig, out_of_memory(config):  # one line, not XLA's
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
                    model = mdef.merge(replicas.first(state["params"]))
                    texts = task.text_samples(model, done)
                    if on_eval is not None and pi == 0:
                        on_eval(task, model, config, workdir, done)
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
        try:
            ckpt.close()  # raises the failure of a background save (a full disk)
        finally:
            writer.close()
    if pi == 0:
        write_json(
            os.path.join(workdir, "results.json"),
            {
                "step": int(state["step"]) if replicas.k == 1 else int(state["step"][0]),
                "wall_time_s": time.perf_counter() - t0,
                **eval_metrics,
            },
        )
    return eval_metrics
