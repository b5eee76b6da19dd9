"""Where a training run starts: the newest checkpoint of its workdir that reads back whole and
was made for the same model, or step 0 when starting over loses nothing.

A checkpoint that does not read back (truncated files, an empty or stray step folder) is
named in one warning line, moved aside to ``checkpoints.unreadable/`` (never deleted), and the
run goes on from the newest one that does. Refused with one line, before anything is written:
a checkpoint made for another model or train state; a workdir whose earlier results have no
readable checkpoint behind them (starting over would overwrite them); a checkpoint already
past ``train.num_steps`` (nothing to train, and nothing to change).
"""

from __future__ import annotations

import logging
import os
from typing import Any

from seqlab.errors import RunError
from seqlab.run.checkpoint import (
    ASIDE,
    Checkpointer,
    CheckpointMismatchError,
    Restored,
    StateMismatchError,
)
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
    except BaseException:
        ckpt.close()
        raise
    if ckpt.unreadable:
        where = ckpt.set_aside() + os.sep if set_aside else None
        then = f"resuming from step {found.step}" if found else "starting from step 0"
        log.warning("%s; %s", unreadable_note(ckpt, where), then)
    done = found is not None and found.step == num_steps
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
