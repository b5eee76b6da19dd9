"""The optax chain a config asks for: clipping, then the optimizer with its lr schedule.

The schedule spans ``optim.schedule_steps`` steps, or ``train.num_steps`` when that is 0: so
raising ``train.num_steps`` to extend a run stretches a ``warmup_cosine`` schedule (the lr
at steps already taken changes) unless ``optim.schedule_steps`` fixes its length.
"""

from __future__ import annotations

import optax
from ml_collections import ConfigDict

from seqlab.errors import ConfigError

OPTIMIZERS = ("adam", "adamw", "rmsprop", "sgd")
SCHEDULES = ("constant", "warmup_cosine", "exponential")
CLIPS = ("global_norm", "elementwise", "none")


def schedule_length(o: ConfigDict, num_steps: int) -> int:
    """The steps the schedule spans: ``o.schedule_steps``, or ``num_steps`` (train.num_steps)
    when that is 0."""
    return int(o.schedule_steps) or int(num_steps)


def make_schedule(o: ConfigDict, num_steps: int) -> optax.Schedule:
    """``num_steps`` is train.num_steps; ``o.schedule_steps`` > 0 replaces it."""
    lr = float(o.learning_rate)
    length = schedule_length(o, num_steps)
    if o.schedule == "constant":
        return optax.constant_schedule(lr)
    if o.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            init_value=0.0,
            peak_value=lr,
            warmup_steps=int(o.warmup_steps),
            decay_steps=max(length, int(o.warmup_steps) + 1),
            end_value=lr * float(o.end_lr_factor),
        )
    if o.schedule == "exponential":  # char-rnn: lr *= decay_rate every decay_every steps
        return optax.exponential_decay(
            lr,
            transition_steps=int(o.decay_every),
            decay_rate=float(o.decay_rate),
            transition_begin=int(o.decay_start),
            staircase=True,
        )
    raise ConfigError(f"unknown optim.schedule {o.schedule!r}; choose one of {SCHEDULES}")


def make_optimizer(o: ConfigDict, num_steps: int) -> optax.GradientTransformation:
    """``o`` is ``config.optim``; ``num_steps`` is train.num_steps (the schedule's length
    unless ``o.schedule_steps`` is set). Gradient clipping comes first, as in char-rnn."""
    sched = make_schedule(o, num_steps)
    if o.name == "adam":
        opt = optax.adam(sched, b1=float(o.b1), b2=float(o.b2))
    elif o.name == "adamw":
        opt = optax.adamw(sched, b1=float(o.b1), b2=float(o.b2), weight_decay=float(o.weight_decay))
    elif o.name == "rmsprop":  # char-rnn's default optimizer (alpha 0.95)
        opt = optax.rmsprop(sched, decay=0.95, momentum=float(o.momentum) or None)
    elif o.name == "sgd":
        opt = optax.sgd(sched, momentum=float(o.momentum) or None)
    else:
        raise ConfigError(f"unknown optim.name {o.name!r}; choose one of {OPTIMIZERS}")
    if o.clip == "global_norm":
        return optax.chain(optax.clip_by_global_norm(float(o.clip_value)), opt)
    if o.clip == "elementwise":
        return optax.chain(optax.clip(float(o.clip_value)), opt)
    if o.clip == "none":
        return opt
    raise ConfigError(f"unknown optim.clip {o.clip!r}; choose one of {CLIPS}")
