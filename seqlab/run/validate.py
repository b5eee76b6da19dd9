"""Checks a run's config once, before anything is built, against the names the owning
modules export (cells, backends, inputs, readouts, optimizers, tasks, ...): one ConfigError
naming the key, what is wrong and what would be right."""

from __future__ import annotations

import difflib
import logging
import math
from typing import Any

from ml_collections import ConfigDict

from seqlab.cells import ACTIVATIONS, CELLS, INIT_PRESETS, MIXERS, LinearCell, mixer_names
from seqlab.config import DEFAULTS, base_config
from seqlab.errors import ConfigError
from seqlab.models.build import CELL_OPTIONS, COMPUTE_DTYPES, PARAM_DTYPES
from seqlab.models.classifier import READOUTS
from seqlab.models.inputs import EMBED_INITS, TOKEN_INPUT_KINDS
from seqlab.recurrence import BACKENDS
from seqlab.recurrence.blocks import BLOCK_OUTS, BLOCKS
from seqlab.recurrence.layers import resolve_block
from seqlab.run.logprobe import QUANTITIES
from seqlab.run.optim import CLIPS, OPTIMIZERS, SCHEDULES
from seqlab.run.validate_build import (  # noqa: F401  (validate_for, x64_needed: re-exported)
    cell_builds,
    check,
    no_effect,
    platform,
    validate_for,
    x64_needed,
)
from seqlab.run.writers import WANDB_MODES
from seqlab.tasks import MOVED, TASKS, get_task_class, task_config

ON_NONFINITE = ("stop", "skip")
#: each cell option -> the cells that have it (irnn: always relu, its own default)
OPTION_CELLS = {
    key: tuple(c for c, keys in CELL_OPTIONS.items() if key in keys)
    for key in sorted({k for keys in CELL_OPTIONS.values() for k in keys})
}

#: why a cell refuses ``model.negative_eigenvalues`` (nonlinear cells: not a linear recurrence)
NO_NEGATIVE = {
    "lru": "has complex eigenvalues that already cover the unit disk",
    "minlstm": "has a transition f / (f + i) whose log-space scan needs it positive",
    "mlstm": "keeps its forget gate in log space (the stabilizer), which cannot carry a sign",
}


_check = check  # the one form of a refusal (seqlab.run.validate_build)


def _one_of(key: str, value: Any, names: Any) -> None:
    hint = difflib.get_close_matches(str(value), [str(n) for n in names], n=1)
    _check(
        value in names,
        key,
        value,
        f"choose one of {sorted(names)}" + (f" (did you mean {hint[0]!r}?)" if hint else ""),
    )


def _model(m: ConfigDict) -> None:
    _one_of("model.cell", m.cell, mixer_names())
    _one_of("model.init", m.init, INIT_PRESETS)
    _one_of("model.input_kind", m.input_kind, TOKEN_INPUT_KINDS)
    _one_of("model.embed_init", m.embed_init, EMBED_INITS)
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
    _check(
        isinstance(m.onehot_fan_in, int) and m.onehot_fan_in >= 0,
        "model.onehot_fan_in",
        m.onehot_fan_in,
        "must be an integer >= 0 (0 = the vocabulary size, 1 = one active input)",
    )
    _recurrence(m)


def _recurrence(m: ConfigDict) -> None:
    """Cell options, blocks and the linear recurrences' keys."""
    _check(
        not m.negative_eigenvalues or m.cell in OPTION_CELLS["negative_eigenvalues"],
        "model.negative_eigenvalues",
        m.negative_eigenvalues,
        f"cell {m.cell!r} {NO_NEGATIVE.get(m.cell, 'is not a linear recurrence')}; it applies "
        f"to {', '.join(OPTION_CELLS['negative_eigenvalues'])}",
    )
    for key, cells in OPTION_CELLS.items():  # an option set for a cell that lacks it
        _check(
            m.cell in cells or m[key] == DEFAULTS.model[key],
            f"model.{key}",
            m[key],
            f"cell {m.cell!r} has no such option (it applies to {', '.join(cells)})",
        )
    if m.cell in MIXERS:
        _mixer(m)
    linear = m.cell in CELLS and issubclass(CELLS[m.cell][0], LinearCell)
    _check(
        not (linear and m.bidirectional and m.readout == "last"),
        "model.readout",
        m.readout,
        "a bidirectional linear recurrence reads out with mean or max (its final state is "
        "not its output)",
    )
    _check(
        linear
        or m.backend != "parallel"
        or (m.cell in CELLS and "parallel" in CELLS[m.cell][0].PROVIDES),
        "model.backend",
        m.backend,
        f"'parallel' is the linear recurrences' associative scan (and the delta rule's chunked "
        f"form); {m.cell!r} has neither",
    )
    _check(
        not linear or m.init == "default",
        "model.init",
        m.init,
        f"{m.cell!r} has its own initialization (set model.r_min/r_max instead)",
    )
    if m.init == "chrono":
        need = "chrono_max_len" in CELL_OPTIONS.get(m.cell, ())
        _check(need, "model.init", m.init, f"chrono initialization is for lstm and gru cells, "
               f"not model.cell={m.cell!r}")  # fmt: skip
        _check(m.chrono_max_len >= 2, "model.chrono_max_len", m.chrono_max_len, "must be >= 2")
    _one_of("model.block", m.block, BLOCKS)
    _one_of("model.block_out", m.block_out, BLOCK_OUTS)
    _check(
        m.block == "auto"
        or (m.block == "mamba") == (m.cell == "mamba")
        or (m.cell, m.block) == ("mamba", "residual"),
        "model.block",
        m.block,
        "Mamba's block is for cell=mamba, and mamba runs in block=mamba (default) or residual",
    )
    _check(
        not (m.bidirectional and resolve_block(m.block, m.cell) != "none"),
        "model.block",
        m.block,
        "residual blocks are unidirectional: set model.block=none for a bidirectional model",
    )
    _check(
        isinstance(m.chunk_size, int) and m.chunk_size >= 0,
        "model.chunk_size",
        m.chunk_size,
        "must be an integer >= 0 (0 = one parallel scan over all steps)",
    )
    _check(0.0 <= m.r_min < 1.0, "model.r_min", m.r_min, "must be in [0, 1)")
    _check(0.0 < m.r_max < 1.0, "model.r_max", m.r_max, "must be in (0, 1)")
    if m.r_min > m.r_max:  # name the one the user moved (both, when both were)
        moved = [k for k in ("r_min", "r_max") if m[k] != DEFAULTS.model[k]] or ["r_min"]
        key = ", model.".join(f"{k}={m[k]!r}" for k in moved)
        raise ConfigError(f"config.model.{key} is invalid: need r_min <= r_max")
    _check(0 < m.max_phase <= 2 * math.pi, "model.max_phase", m.max_phase, "must be in "
           "(0, 2 pi]: a phase is an angle")  # fmt: skip
    no_effect(m)
    platform(m)
    cell_builds(m)


def _mixer(m: ConfigDict) -> None:
    """A layer mixer's keys (attention: heads, window; its own init; residual blocks)."""
    _check(m.init == "default", "model.init", m.init, f"{m.cell!r} has its own initialization")
    _check(
        m.block in ("auto", "residual"),
        "model.block",
        m.block,
        f"{m.cell!r} runs in residual blocks: use model.block=auto or residual",
    )
    heads = m.num_heads
    ok = isinstance(heads, int) and heads >= 1 and m.hidden_size % heads == 0
    _check(
        ok and (m.hidden_size // heads) % 2 == 0,
        "model.num_heads",
        heads,
        f"must divide model.hidden_size={m.hidden_size} into an even head width (rotary)",
    )
    _check(
        isinstance(m.window, int) and m.window >= 1,
        "model.window",
        m.window,
        "must be an integer >= 1 (the trained context, data.seq_len, is the usual choice)",
    )
    _check(m.positions in ("rotary", "learned"), "model.positions", m.positions,
           "must be rotary or learned")  # fmt: skip


#: optim keys -> the optimizers / schedules / clips that read them (set elsewhere: announced)
OPTIM_READERS = {
    "momentum": ("name", ("sgd", "rmsprop")),
    "b1": ("name", ("adam", "adamw")),
    "b2": ("name", ("adam", "adamw")),
    "weight_decay": ("name", ("adamw",)),
    "warmup_steps": ("schedule", ("warmup_cosine",)),
    "end_lr_factor": ("schedule", ("warmup_cosine",)),
    "schedule_steps": ("schedule", ("warmup_cosine",)),
    "decay_rate": ("schedule", ("exponential",)),
    "decay_every": ("schedule", ("exponential",)),
    "decay_start": ("schedule", ("exponential",)),
    "clip_value": ("clip", ("global_norm", "elementwise")),
}
_SAID: set[str] = set()


def unused_optim_keys(c: ConfigDict) -> list[str]:
    """Optimizer keys set away from the task's defaults that the chosen optimizer, schedule
    or clip never reads ("optim.momentum=0.5 (read by optim.name=sgd, rmsprop)")."""
    o, defaults = c.optim, task_config(c.task.name).optim
    out = []
    for key, (by, readers) in OPTIM_READERS.items():
        if o[key] != defaults[key] and o[by] not in readers:
            out.append(f"optim.{key}={o[key]!r} (read by optim.{by}={'/'.join(readers)})")
    return out


def _announce_unused(c: ConfigDict) -> None:
    """One warning line (once per process) naming optimizer keys that have no effect: not
    refused, since a sweep over optim.name or optim.schedule sets them for some points."""
    unused = unused_optim_keys(c)
    line = (
        f"{', '.join(unused)} {'has' if len(unused) == 1 else 'have'} no effect with "
        f"optim.name={c.optim.name!r}, optim.schedule={c.optim.schedule!r}, "
        f"optim.clip={c.optim.clip!r}"
    )
    if unused and line not in _SAID:
        _SAID.add(line)
        logging.getLogger("seqlab").warning("%s", line)


def _optim(o: ConfigDict) -> None:
    _one_of("optim.name", o.name, OPTIMIZERS)
    _one_of("optim.schedule", o.schedule, SCHEDULES)
    _one_of("optim.clip", o.clip, CLIPS)
    _check(o.learning_rate > 0, "optim.learning_rate", o.learning_rate, "must be > 0")
    _check(o.clip == "none" or o.clip_value > 0, "optim.clip_value", o.clip_value, "must be > 0")
    _check(0.0 < o.decay_rate <= 1.0, "optim.decay_rate", o.decay_rate, "must be in (0, 1]")
    _check(o.decay_every >= 1, "optim.decay_every", o.decay_every, "must be >= 1")
    _check(o.warmup_steps >= 0, "optim.warmup_steps", o.warmup_steps, "must be >= 0")
    _check(
        isinstance(o.schedule_steps, int) and o.schedule_steps >= 0,
        "optim.schedule_steps",
        o.schedule_steps,
        "must be an integer >= 0 (0 = train.num_steps)",
    )


def validate(c: ConfigDict) -> None:
    """Checks names and ranges; raises ConfigError on the first bad value."""
    _sections(c)
    _one_of("task.name", c.task.name, TASKS)
    _leaves(c)
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
    _one_of("probe.quantity", c.probe.quantity, QUANTITIES)
    _one_of("train.on_nonfinite", c.train.on_nonfinite, ON_NONFINITE)
    _check(
        c.train.explode_factor >= 0,
        "train.explode_factor",
        c.train.explode_factor,
        "must be >= 0 (0 turns the check off)",
    )
    _announce_unused(c)
    _one_of("wandb.mode", c.wandb.mode, WANDB_MODES)
    every = c.inspect.every
    _check(
        isinstance(every, int) and every >= 0 and every % c.train.eval_every == 0,
        "inspect.every",
        every,
        f"must be 0 (off) or a multiple of train.eval_every={c.train.eval_every}: the page "
        "is written at evals",
    )
    _ranges(c)


# -- every leaf: a declared key, of its declared type, finite; the ranges the rest omit ------
def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, (dict, ConfigDict)):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _sections(c: Any) -> None:
    """Each section of ``base_config()`` is a section (a ConfigDict), not a value."""
    if not isinstance(c, (ConfigDict, dict)):
        raise ConfigError(
            f"the config is a {type(c).__name__}; get_config must return a ConfigDict"
        )
    for name, default in base_config().items():
        if not isinstance(default, ConfigDict):
            continue
        if name not in c:
            raise ConfigError(
                f"the config has no {name!r} section; start get_config from "
                "seqlab.tasks.task_config(name), which has every key"
            )
        if not isinstance(c[name], (ConfigDict, dict)):
            keys = ", ".join(f"{name}.{k}" for k in list(default)[:2])
            raise ConfigError(
                f"config.{name}={c[name]!r} is invalid: must be a section ({keys}, ...)"
            )


def _leaves(c: ConfigDict) -> None:
    """Every key is a declared one, of the declared type, and no float is nan or inf."""
    declared = _flat(task_config(c.task.name))
    for name in TASKS:  # another task's keys may stay (a sweep can switch task.name)
        for key, (default, _) in get_task_class(name).config_keys().items():
            declared.setdefault(key, default)
    for key, value in _flat(c).items():
        if key not in declared:
            if key in MOVED:
                continue
            hint = difflib.get_close_matches(key, list(declared), n=1)
            raise ConfigError(
                f"config.{key} is not a config key"
                + (f" (did you mean config.{hint[0]}?)" if hint else "")
                + "; every key is declared in seqlab/config.py or its task's KEYS"
            )
        _check(_same_type(value, declared[key]), key, value, _type_need(declared[key]))
        if isinstance(value, float):
            _check(math.isfinite(value), key, value, "must be a finite number")


def _same_type(value: Any, default: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, float):
        return isinstance(value, (int, float))
    return default is None or isinstance(value, type(default))


def _type_need(default: Any) -> str:
    names = {bool: "True or False", int: "an integer", float: "a number", str: "a string"}
    return "must be " + names.get(type(default), f"a {type(default).__name__}")


def _ranges(c: ConfigDict) -> None:
    """What the checks above leave open: optimizer coefficients, time limits, and every
    integer key at least 0 (seeds, sizes and counts are never negative)."""
    o = c.optim
    for key in ("b1", "b2", "momentum"):
        _check(0.0 <= o[key] < 1.0, f"optim.{key}", o[key], "must be in [0, 1)")
    _check(o.weight_decay >= 0, "optim.weight_decay", o.weight_decay, "must be >= 0")
    _check(o.end_lr_factor >= 0, "optim.end_lr_factor", o.end_lr_factor, "must be >= 0")
    limit = c.train.time_limit_s
    _check(limit >= 0, "train.time_limit_s", limit, "must be >= 0 (0 = no limit)")
    for key, value in _flat(c).items():
        if isinstance(value, int) and not isinstance(value, bool):
            _check(value >= 0, key, value, "must be an integer >= 0")
