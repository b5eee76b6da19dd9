"""Config defaults shared by every ``configs/*.py`` file, variant parsing and validation.

A config file's ``get_config(arg)`` starts from ``base_config()`` and changes what its
family needs; ``arg`` ("gru,runlocal", "cell=gru,T=200") selects variants (big_vision style)
and is parsed by ``parse_arg``. The command line changes single leaves with
``--config.model.hidden_size=512``.
"""

from __future__ import annotations

import difflib
from typing import Any

from ml_collections import ConfigDict


def base_config() -> ConfigDict:
    """Every key every config has. Task-specific keys go under ``task`` and ``data``."""
    c = ConfigDict()
    c.seed = 0
    c.num_seeds = 1  # >1: train that many independently initialized replicas in one program

    c.task = ConfigDict()
    c.task.name = ""

    c.model = ConfigDict()
    c.model.cell = "lstm"  # a name in seqlab.cells.CELLS
    c.model.hidden_size = 128
    c.model.num_layers = 1
    c.model.input_kind = "onehot"  # onehot | embed (token inputs)
    c.model.embed_dim = 0
    c.model.dropout = 0.0
    c.model.bidirectional = False
    c.model.readout = "last"  # many-to-one: last | mean | max
    c.model.attention = False  # seq2seq: additive attention
    c.model.attention_size = 0
    c.model.init = "default"  # default | char_rnn | irnn
    c.model.forget_bias = 1.0
    c.model.activation = "tanh"  # vanilla RNN only: tanh | relu
    c.model.dtype = ""  # matmul compute dtype ("" = param dtype, or bfloat16)
    c.model.param_dtype = "float32"
    c.model.unroll = 1
    c.model.remat = False
    # fast: the custom-VJP scan (seqlab.fastscan; reverse-mode only, faster); scan: plain
    # autodiff of lax.scan, for forward-mode or higher-order derivatives.
    c.model.backend = "fast"

    c.data = ConfigDict()
    c.data.batch_size = 32
    c.data.seq_len = 100

    c.optim = ConfigDict()
    c.optim.name = "adam"  # adam | adamw | rmsprop | sgd
    c.optim.learning_rate = 2e-3
    c.optim.schedule = "constant"  # constant | warmup_cosine | exponential
    c.optim.warmup_steps = 0
    c.optim.end_lr_factor = 0.0  # warmup_cosine: final lr = factor * lr
    c.optim.decay_rate = 0.97  # exponential (char-rnn): lr *= rate every decay_every steps
    c.optim.decay_every = 1000
    c.optim.decay_start = 0  # exponential: steps before the first decay
    c.optim.weight_decay = 0.0
    c.optim.momentum = 0.9  # sgd (0 = plain); rmsprop
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.clip = "global_norm"  # global_norm | elementwise | none
    c.optim.clip_value = 5.0

    c.train = ConfigDict()
    c.train.num_steps = 1000
    c.train.log_every = 50
    c.train.eval_every = 250
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    c.train.on_nonfinite = "stop"  # stop | skip
    c.train.explode_factor = 3.0  # stop when loss > factor x initial loss (0 = off)
    c.train.progress = True
    c.train.time_limit_s = 0.0  # > 0: evaluate, save and stop after this many seconds (per run)

    c.probe = ConfigDict()
    c.probe.every = 0  # steps between gradient-norm probes during training (0 = off)
    c.probe.cells = "rnn,lstm,gru"  # `seqlab probe`: cells to compare
    c.probe.lengths = "10,50,100,200,500,1000"  # `seqlab probe`: sequence lengths T

    c.wandb = ConfigDict()
    c.wandb.mode = (
        "auto"  # auto (online when logged in, else offline) | online | offline | disabled
    )
    c.wandb.project = "seqlab"
    c.wandb.entity = ""
    c.wandb.group = ""
    c.wandb.name = ""
    c.wandb.tags = ""  # comma-separated
    c.tensorboard = False
    return c


def parse_arg(arg: str | None, **defaults: Any) -> ConfigDict:
    """Parses "gru,runlocal,T=200" into {gru: True, runlocal: True, T: 200} over defaults.

    Bare words set a boolean flag when ``defaults`` has that flag, or else fill the first
    string-valued default whose allowed values are unknown (so ``:gru`` can set ``cell``);
    values are converted to the default's type. Unknown names are one clear error.
    """
    out = dict(defaults)
    for part in [p.strip() for p in (arg or "").split(",") if p.strip()]:
        if "=" in part:
            key, value = part.split("=", 1)
        elif part in defaults and isinstance(defaults[part], bool):
            key, value = part, "True"
        elif "cell" in defaults and not _close_flag(part, defaults):
            key, value = "cell", part
        else:
            key, value = part, "True"
        if key not in defaults:
            hint = difflib.get_close_matches(key, list(defaults), n=1)
            raise ValueError(
                f"unknown config variant {key!r}"
                + (f" (did you mean {hint[0]!r}?)" if hint else "")
                + f"; known: {', '.join(sorted(defaults))}"
            )
        default = defaults[key]
        if isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes", "y")
        elif default is None:
            out[key] = value
        else:
            try:
                out[key] = type(default)(value)
            except ValueError:
                raise ValueError(
                    f"config variant {key}={value!r} is not a {type(default).__name__}"
                ) from None
    return ConfigDict(out)


def _close_flag(word: str, defaults: dict[str, Any]) -> bool:
    """A bare word that looks like a misspelled boolean variant (``runlocl``), not a cell."""
    flags_ = [k for k, v in defaults.items() if isinstance(v, bool)]
    return bool(difflib.get_close_matches(word, flags_, n=1, cutoff=0.8))


class ConfigError(ValueError):
    """A config value is missing, of the wrong type, or out of range."""


def _check(ok: bool, key: str, value: Any, need: str) -> None:
    if not ok:
        raise ConfigError(f"config.{key}={value!r} is invalid: {need}")


def validate(c: ConfigDict) -> None:
    """Checks names and ranges once, before anything is built; raises ConfigError."""
    from seqlab.cells import CELLS, INIT_PRESETS
    from seqlab.models.build import DTYPES
    from seqlab.optim import CLIPS, OPTIMIZERS, SCHEDULES
    from seqlab.recurrence import BACKENDS
    from seqlab.tasks import TASKS

    def one_of(key: str, value: Any, names: Any) -> None:
        hint = difflib.get_close_matches(str(value), list(names), n=1)
        _check(
            value in names,
            key,
            value,
            f"choose one of {sorted(names)}" + (f" (did you mean {hint[0]!r}?)" if hint else ""),
        )

    one_of("task.name", c.task.name, TASKS)
    m = c.model
    one_of("model.cell", m.cell, CELLS)
    one_of("model.init", m.init, INIT_PRESETS)
    one_of("model.input_kind", m.input_kind, ("onehot", "embed"))
    one_of("model.readout", m.readout, ("last", "mean", "max"))
    one_of("model.activation", m.activation, ("tanh", "relu"))
    one_of("model.dtype", m.dtype, [k for k in DTYPES if k != "none"])
    one_of("model.backend", m.get("backend", "scan"), BACKENDS)
    one_of("model.param_dtype", m.param_dtype, ("float32", "float64", "bfloat16"))
    for key, value in (
        ("model.hidden_size", m.hidden_size),
        ("model.num_layers", m.num_layers),
        ("model.unroll", m.unroll),
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
    _check(
        m.input_kind != "embed" or m.embed_dim >= 1,
        "model.embed_dim",
        m.embed_dim,
        "must be >= 1 when model.input_kind='embed'",
    )
    _check(0.0 <= m.dropout < 1.0, "model.dropout", m.dropout, "must be in [0, 1)")
    o = c.optim
    one_of("optim.name", o.name, OPTIMIZERS)
    one_of("optim.schedule", o.schedule, SCHEDULES)
    one_of("optim.clip", o.clip, CLIPS)
    _check(o.learning_rate > 0, "optim.learning_rate", o.learning_rate, "must be > 0")
    _check(o.clip == "none" or o.clip_value > 0, "optim.clip_value", o.clip_value, "must be > 0")
    _check(0.0 < o.decay_rate <= 1.0, "optim.decay_rate", o.decay_rate, "must be in (0, 1]")
    _check(o.decay_every >= 1, "optim.decay_every", o.decay_every, "must be >= 1")
    _check(o.warmup_steps >= 0, "optim.warmup_steps", o.warmup_steps, "must be >= 0")
    one_of("train.on_nonfinite", c.train.on_nonfinite, ("stop", "skip"))
    _check(
        c.train.explode_factor >= 0,
        "train.explode_factor",
        c.train.explode_factor,
        "must be >= 0 (0 turns the check off)",
    )
    one_of("wandb.mode", c.wandb.mode, ("auto", "online", "offline", "disabled"))
