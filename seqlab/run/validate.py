"""Checks a run's config once, before anything is built, against the names the owning
modules export (cells, backends, inputs, readouts, optimizers, tasks, ...): one ConfigError
naming the key, what is wrong and what would be right."""

from __future__ import annotations

import difflib
from typing import Any

from ml_collections import ConfigDict

from seqlab.cells import ACTIVATIONS, CELLS, INIT_PRESETS
from seqlab.errors import ConfigError
from seqlab.models.build import COMPUTE_DTYPES, PARAM_DTYPES
from seqlab.models.classifier import READOUTS
from seqlab.models.inputs import TOKEN_INPUT_KINDS
from seqlab.recurrence import BACKENDS
from seqlab.run.optim import CLIPS, OPTIMIZERS, SCHEDULES
from seqlab.run.writers import WANDB_MODES
from seqlab.tasks import TASKS

ON_NONFINITE = ("stop", "skip")


def _check(ok: bool, key: str, value: Any, need: str) -> None:
    if not ok:
        raise ConfigError(f"config.{key}={value!r} is invalid: {need}")


def _one_of(key: str, value: Any, names: Any) -> None:
    hint = difflib.get_close_matches(str(value), [str(n) for n in names], n=1)
    _check(
        value in names,
        key,
        value,
        f"choose one of {sorted(names)}" + (f" (did you mean {hint[0]!r}?)" if hint else ""),
    )


def _model(m: ConfigDict) -> None:
    _one_of("model.cell", m.cell, CELLS)
    _one_of("model.init", m.init, INIT_PRESETS)
    _one_of("model.input_kind", m.input_kind, TOKEN_INPUT_KINDS)
    _one_of("model.readout", m.readout, READOUTS)
    _one_of("model.activation", m.activation, ACTIVATIONS)
    _one_of("model.dtype", m.dtype, COMPUTE_DTYPES)
    _one_of("model.backend", m.backend, BACKENDS)
    _one_of("model.param_dtype", m.param_dtype, PARAM_DTYPES)
    _check(
        m.input_kind != "embed" or m.embed_dim >= 1,
        "model.embed_dim",
        m.embed_dim,
        "must be >= 1 when model.input_kind='embed'",
    )
    _check(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be in [0, 1)")


def _optim(o: ConfigDict) -> None:
    _one_of("optim.name", o.name, OPTIMIZERS)
    _one_of("optim.schedule", o.schedule, SCHEDULES)
    _one_of("optim.clip", o.clip, CLIPS)
    _check(o.learning_rate > 0, "optim.learning_rate", o.learning_rate, "must be > 0")
    _check(o.clip == "none" or o.clip_value > 0, "optim.clip_value", o.clip_value, "must be > 0")
    _check(0.0 < o.decay_rate <= 1.0, "optim.decay_rate", o.decay_rate, "must be in (0, 1]")
    _check(o.decay_every >= 1, "optim.decay_every", o.decay_every, "must be >= 1")
    _check(o.warmup_steps >= 0, "optim.warmup_steps", o.warmup_steps, "must be >= 0")


def validate(c: ConfigDict) -> None:
    """Checks names and ranges; raises ConfigError on the first bad value."""
    _one_of("task.name", c.task.name, TASKS)
    _model(c.model)
    for key, value in (
        ("model.hidden_size", c.model.hidden_size),
        ("model.num_layers", c.model.num_layers),
        ("model.unroll", c.model.unroll),
        ("data.batch_size", c.data.batch_size),
        ("data.seq_len", c.data.seq_len),
        ("train.num_steps", c.train.num_steps),
        ("train.log_every", c.train.log_every),
        ("train.eval_every", c.train.eval_every),
        ("train.checkpoint_every", c.train.checkpoint_every),
        ("train.keep_checkpoints", c.train.keep_checkpoints),
        ("num_seeds", c.num_seeds),
    ):
        _check(isinstance(value, int) and value >= 1, key, value, "must be an integer >= 1")
    _optim(c.optim)
    _one_of("train.on_nonfinite", c.train.on_nonfinite, ON_NONFINITE)
    _check(
        c.train.explode_factor >= 0,
        "train.explode_factor",
        c.train.explode_factor,
        "must be >= 0 (0 turns the check off)",
    )
    _one_of("wandb.mode", c.wandb.mode, WANDB_MODES)
