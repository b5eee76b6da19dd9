"""Where a training run starts: the newest checkpoint of its workdir that reads back whole and
was made for the same model, or step 0 when starting over loses nothing.

A checkpoint that does not read back (truncated files, an empty or stray step folder) is
named in one warning line, moved aside to ``checkpoints.unreadable/`` (never deleted), and the
run goes on from the newest one that does. Refused with one line, before anything is written:
a checkpoint made for another model or train state; a workdir whose earlier results have no
readable checkpoint behind them (starting over would overwrite them); a checkpoint already
past ``train.num_steps`` (nothing to train, and nothing to change). Announced in one line: a
resume that changes the lr schedule or stretches it (a longer run), and steps left that all
train at learning rate 0. Every start and resume is a line of ``config_history.jsonl``.
"""

from __future__ import annotations

import datetime
import json
import logging
import os
from typing import Any

from ml_collections import ConfigDict

from seqlab.errors import RunError
from seqlab.run.checkpoint import (
    ASIDE,
    Checkpointer,
    CheckpointMismatchError,
    Restored,
    StateMismatchError,
)
from seqlab.run.optim import make_schedule
from seqlab.run.workdir import earlier_results, restart_refused

log = logging.getLogger("seqlab")


def resume(
    ckpt: Checkpointer,
    target: Any,
    meta: dict[str, Any],
    workdir: str,
    num_steps: int,
    *,
    set_aside: bool = True,
) -> tuple[Restored | None, bool]:
    """(the checkpoint to resume from, or None to start at step 0; whether the run is
    already finished: at ``num_steps`` with its results.json written). ``set_aside``:
    move unreadable steps aside (process 0 of a multi-process run). Refusing, it closes
    ``ckpt``."""
    try:
        found = _restore(ckpt, target, meta, workdir)
        if found is None:
            _refuse_restart(ckpt, workdir)
        elif found.step > num_steps:
            raise RunError(
                f"{workdir} is already at step {found.step}, past train.num_steps={num_steps}"
                f"; nothing was changed. To train on, set train.num_steps above {found.step};"
                f" to evaluate it: seqlab eval --workdir {workdir}"
            )
        saved_config = (found.meta.get("config") if found is not None else None) or None
        changes = recipe(saved_config, meta.get("config"), found.step if found else 0, num_steps)
    except BaseException:
        ckpt.close()
        raise
    done = found is not None and found.step == num_steps
    if set_aside and not (done and os.path.exists(os.path.join(workdir, "results.json"))):
        record_history(workdir, meta.get("config"), found.step if found else 0, saved_config)
    for line in changes:
        log.warning("%s (recorded in %s)", line, os.path.join(workdir, HISTORY))
    if ckpt.unreadable:
        where = ckpt.set_aside() + os.sep if set_aside else None
        then = f"resuming from step {found.step}" if found else "starting from step 0"
        log.warning("%s; %s", unreadable_note(ckpt, where), then)
    return found, done and os.path.exists(os.path.join(workdir, "results.json"))


def _restore(ckpt: Checkpointer, target: Any, meta: dict[str, Any], workdir: str) -> Any:
    try:
        return ckpt.restore_newest(target, lambda saved: check_compatible(saved, meta, workdir))
    except StateMismatchError as e:
        diffs = _config_diffs(e.meta.get("config"), meta.get("config"))
        raise CheckpointMismatchError(
            f"the checkpoint at step {e.step} in {ckpt.directory} holds a train state of "
            f"another structure ({diffs}); {_USE_NEW}"
        ) from e


def unreadable_note(ckpt: Checkpointer, moved_to: str | None = None) -> str:
    """ "checkpoint step 20 in DIR is unreadable (why)[; moved to WHERE]" for the steps
    ``ckpt`` found unreadable, newest first, with the newest one's reason."""
    steps = sorted(ckpt.unreadable, reverse=True)
    names = ", ".join(map(str, steps))
    note = (
        f"checkpoint step{'s' if len(steps) > 1 else ''} {names} in {ckpt.directory} "
        f"{'are' if len(steps) > 1 else 'is'} unreadable ({ckpt.unreadable[steps[0]]})"
    )
    return note + (f"; moved to {moved_to}" if moved_to else "")


def _refuse_restart(ckpt: Checkpointer, workdir: str) -> None:
    """No readable checkpoint: starting over is refused when it would overwrite the results
    of a run that did get past its first checkpoint (unreadable steps, steps set aside
    before, or a results.json say so). A run stopped before its first checkpoint completed
    left only rows it logs again, so it starts over."""
    left = earlier_results(workdir)
    aside = ckpt.directory + ASIDE
    set_aside = os.path.isdir(aside) and bool(os.listdir(aside))
    finished = os.path.exists(os.path.join(workdir, "results.json"))
    if not left or not (ckpt.unreadable or set_aside or finished):
        return
    if ckpt.unreadable:
        why = unreadable_note(ckpt)
    elif set_aside:
        why = f"its unreadable checkpoints were moved to {aside}"
    else:
        why = f"{ckpt.directory} holds no checkpoint"
    raise RunError(restart_refused(workdir, left, why))


_USE_NEW = "use a new --workdir or the config it was trained with"


def check_compatible(saved: dict[str, Any], current: dict[str, Any], where: str) -> None:
    """Raises CheckpointMismatchError when model shape or vocabulary differ."""
    for key in ("spec", "model_shape", "vocab"):
        a, b = saved.get(key), current.get(key)
        if a is None or b is None or a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            diffs = [
                f"{k}: checkpoint {a.get(k)!r} vs config {b.get(k)!r}"
                for k in sorted(set(a) | set(b))
                if a.get(k) != b.get(k)
            ]
            detail = "; ".join(diffs[:4])
        else:
            detail = "vocabularies differ"
        raise CheckpointMismatchError(
            f"the checkpoint in {where} was made for a different {key.replace('_', ' ')} "
            f"({detail}); {_USE_NEW}"
        )


def _config_diffs(saved: Any, current: Any) -> str:
    """ "optim.name: checkpoint 'adam' vs config 'sgd'" for the first keys both configs
    have whose values differ (outside train., wandb. and probe.: they do not shape the
    state)."""

    def flat(d: Any, prefix: str = "") -> dict[str, Any]:
        if not isinstance(d, dict):
            return {prefix[:-1]: d}
        return {k2: v2 for k, v in d.items() for k2, v2 in flat(v, f"{prefix}{k}.").items()}

    a, b = flat(saved or {}), flat(current or {})
    skip = ("train.", "wandb.", "probe.")
    keys = [k for k in sorted(set(a) & set(b)) if a[k] != b[k] and not k.startswith(skip)]
    if not keys:
        return "saved by another version of seqlab?"
    return "; ".join(f"{k}: checkpoint {a[k]!r} vs config {b[k]!r}" for k in keys[:4])


# -- a resume that changes the recipe: announced and recorded, or refused ------------------
HISTORY = "config_history.jsonl"  # one line per start or resume: the step, the changes, the config
SCHEDULE_KEYS = (
    "optim.schedule", "optim.learning_rate", "optim.warmup_steps", "optim.schedule_steps",
    "optim.end_lr_factor", "optim.decay_rate", "optim.decay_every", "optim.decay_start",
)  # fmt: skip
_QUIET = ("train.progress", "wandb.", "tensorboard")  # no bearing on what is trained


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix[:-1]: d}
    return {k2: v2 for k, v in d.items() for k2, v2 in _flat(v, f"{prefix}{k}.").items()}


def config_changes(saved: dict | None, current: dict | None) -> dict[str, list[Any]]:
    """{key: [checkpoint's value, config's value]} for every key that differs."""
    a, b = _flat(saved or {}), _flat(current or {})
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and not k.startswith(_QUIET))
    return {k: [a.get(k), b.get(k)] for k in keys}


def _lr(config: dict, steps: Any) -> Any:
    """The learning rate of each step in ``steps`` under ``config`` (keys an older seqlab
    did not save take today's defaults)."""
    import numpy as np

    from seqlab.tasks import complete_config

    c = complete_config(ConfigDict(config))
    lr = make_schedule(c.optim, int(c.train.num_steps))(steps)  # constant: a scalar
    return np.broadcast_to(np.asarray(lr, np.float64), np.shape(steps))


def _steps(a: int, b: int) -> Any:
    """Steps a..b-1, or 100,001 of them spread over that range when there are more."""
    import numpy as np

    if b - a <= 100_001:
        return np.arange(a, b)
    return np.unique(np.linspace(a, b - 1, 100_001).astype(np.int64))


def recipe(saved: dict | None, current: dict | None, step: int, num_steps: int) -> list[str]:
    """The lines announcing how resuming at ``step`` changes the lr schedule (a changed
    schedule key, or a longer ``train.num_steps`` stretching a schedule that follows it),
    and that every step left trains at learning rate 0 (a schedule that has ended)."""
    import numpy as np

    if not current or num_steps <= step:
        return []
    left = _steps(step, num_steps)
    lr_new = _lr(current, left)
    ended = []
    if np.all(lr_new == 0):  # announced, not refused: such steps change no parameter
        o = current["optim"]
        ended = [
            f"steps {step}-{num_steps} all train at learning rate 0: the {o['schedule']} "
            f"schedule ends at step {o['schedule_steps'] or num_steps} with "
            f"optim.end_lr_factor={o['end_lr_factor']}, so they change no parameter; raise "
            "optim.schedule_steps (0 = train.num_steps) or optim.end_lr_factor to train on"
        ]
    if not saved or step == 0:
        return ended
    changed = config_changes(saved, current)
    keys = [k for k in SCHEDULE_KEYS if k in changed]
    past = _steps(0, step + 1)  # the schedule as the steps already taken saw it
    old_lr = float(_lr(saved, np.asarray(step)))
    if not keys and np.array_equal(_lr(saved, past), _lr(current, past)):
        return ended
    what = ", ".join(f"{k} {changed[k][0]!r} -> {changed[k][1]!r}" for k in keys)
    if not keys:  # only the length changed: train.num_steps stretched the schedule
        n = changed.get("train.num_steps", ["?", num_steps])
        what = (
            f"train.num_steps {n[0]} -> {n[1]} stretches the {current['optim']['schedule']} "
            f"schedule (optim.schedule_steps=0 follows it; set it to {n[0]} to keep the old one)"
        )
    line = (
        f"resuming at step {step} with a changed lr schedule: {what}; the lr at step {step} "
        f"goes from {old_lr:.3g} to {float(lr_new[0]):.3g} (steps 0-{step} ran the old one)"
    )
    zero = np.flatnonzero(lr_new == 0)
    if zero.size and zero[0] > 0:
        line += f"; lr is 0 from step {int(left[zero[0]])}"
    return [line, *ended]


def record_history(workdir: str, config: dict | None, step: int, saved: dict | None) -> None:
    """Appends this start's line to ``config_history.jsonl``: the step it trains from, what
    changed since the checkpoint's config, and the whole config, so the run's record says
    which recipe ran which steps (``config.json`` holds the newest only). A history begun
    by an older seqlab starts with the checkpoint's config."""
    path = os.path.join(workdir, HISTORY)
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    lines = []
    if saved is not None and not os.path.exists(path):
        note = "the config saved with the checkpoint resumed at the next line"
        lines.append({"step": None, "time": None, "changes": {}, "config": saved, "note": note})
    changes = config_changes(saved, config) if saved else {}
    lines.append({"step": step, "time": now, "changes": changes, "config": config})
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(line, default=str) + "\n" for line in lines))
    except OSError as e:
        raise RunError(f"could not write {path} ({e.strerror})") from None
