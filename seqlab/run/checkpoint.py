"""Checkpoints: the only module that touches orbax.

A checkpoint holds two items: ``state`` (the train state pytree: params, optimizer state,
step, carried RNN state) and ``meta`` (JSON: config, the task's model spec, vocabulary, the
eval metrics at that step). Orbax writes each step to a temporary directory and renames it
when complete, so a process killed mid-save leaves no checkpoint that could be loaded.
Retention keeps the latest ``keep`` steps and the best one by the task's metric.

A step whose files do not read back (truncated, an empty or stray step folder) is
*unreadable*: ``restore_newest`` skips it for the next one and notes why, and ``set_aside``
moves it out of orbax's sight, to ``checkpoints.unreadable/`` (never deleted). A save that
fails on the filesystem (disk full, quota, permissions), at once or in the background, raises
CheckpointWriteError; the steps saved before it are untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import re
import shutil
import sys
from collections.abc import Callable, Iterable
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_managers as cm

from seqlab.errors import RunError
from seqlab.run.retention import BestStep

META_FILE = "metadata"  # orbax's JsonCheckpointHandler file in a step's ``meta`` folder
ASIDE = ".unreadable"  # unreadable steps go to <checkpoints directory> + ASIDE


class CheckpointMismatchError(RunError):
    """The workdir's checkpoint belongs to a different model shape or vocabulary."""


class CheckpointWriteError(RunError):
    """A checkpoint could not be written: ``reason`` is the system's (disk full, ...)."""

    def __init__(self, step: int | None, directory: str, reason: str):
        self.step, self.directory, self.reason = step, directory, reason
        super().__init__(f"could not write checkpoint step {step} in {directory}: {reason}")


class StateMismatchError(CheckpointMismatchError):
    """The step's state reads back, but not into the structure of the current one."""

    def __init__(self, step: int, directory: str, meta: dict[str, Any]):
        self.step, self.meta = step, meta
        super().__init__(
            f"the checkpoint at step {step} in {directory} holds a train state of another "
            "structure; use a new --workdir or the config it was trained with"
        )


class _Unreadable(Exception):
    """A step whose files do not read back (restore_newest goes on to the next one)."""


@dataclasses.dataclass
class Restored:
    step: int
    meta: dict[str, Any]
    state: Any  # in the target's structure; as saved when restored without one


class Checkpointer:
    def __init__(
        self,
        directory: str,
        *,
        keep: int = 3,
        best_metric: str = "eval/loss",
        best_mode: str = "min",
        async_save: bool = True,
        read_only: bool = False,
    ):
        """``read_only``: a reader (eval, sample, load_run) beside a run that may be saving:
        it creates nothing and never cleans up an in-flight save's temporary folders."""
        self.directory = os.path.abspath(directory)
        self.best_metric = best_metric
        self.best_mode = best_mode
        self.unreadable: dict[int, str] = {}  # step -> why, as the reads below found it
        self._metas: dict[int, dict[str, Any]] = {}
        self._policy_metrics: dict[int, dict[str, Any]] = {}
        self._pending: int | None = None  # the step an async save may still be writing
        self._failed = False
        _quiet_orbax()
        policy = cm.AnyPreservationPolicy(
            [cm.LatestN(n=max(1, int(keep))), BestStep(best_metric, best_mode, self._saved_metrics)]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=not read_only,
            create=not read_only,
            read_only=read_only,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def best_step(self) -> int | None:
        """The step with the best saved metric (scans the saved metadata)."""
        steps = self.by_metric()
        return steps[0] if steps else None

    def by_metric(self) -> list[int]:
        """The steps whose metadata holds a finite ``best_metric``, best first (ties: the
        earliest).
        Steps whose metadata does not read are left out and noted in ``unreadable``."""
        scored = []
        for step in sorted(self.all_steps(), reverse=True):
            with contextlib.suppress(_Unreadable):
                val = self.read_meta(step).get("metrics", {}).get(self.best_metric)
                if isinstance(val, (int, float)) and math.isfinite(val):
                    scored.append((val if self.best_mode == "min" else -val, step))
        return [s for _, s in sorted(scored)]

    # -- reading ---------------------------------------------------------------------------
    def _saved_metrics(self, step: int) -> dict[str, Any]:
        """The eval metrics in a step's metadata file ({} where it does not read), for the
        retention policy. Read from the file itself, not through the manager: the policy runs
        inside a save, where a manager read would first wait for (and swallow the failure of)
        a background save still in flight."""
        if step in self._policy_metrics:
            return self._policy_metrics[step]
        path = os.path.join(self.directory, str(step), "meta", META_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                meta = json.load(f)
        except (OSError, ValueError):  # not written yet, or damaged: not the best
            return {}
        metrics = meta.get("metrics") if isinstance(meta, dict) else None
        self._policy_metrics[step] = metrics if isinstance(metrics, dict) else {}
        return self._policy_metrics[step]

    def read_meta(self, step: int) -> dict[str, Any]:
        """The step's metadata; _Unreadable (noted in ``unreadable``) if it does not read."""
        if step not in self._metas:
            self._metas[step] = self._read(step, lambda: self.restore_meta(step))
        return self._metas[step]

    def newest_meta(self) -> dict[str, Any] | None:
        """The metadata of the newest step whose metadata reads back; None if none does."""
        for step in sorted(self.all_steps(), reverse=True):
            with contextlib.suppress(_Unreadable):
                return self.read_meta(step)
        return None

    def restore_newest(
        self,
        target: Any = None,
        check: Callable[[dict[str, Any]], None] | None = None,
        steps: Iterable[int] | None = None,
        params_only: bool = False,
    ) -> Restored | None:
        """The first of ``steps`` (default: newest first) whose metadata and state both read
        back, the state in ``target``'s structure (None: as saved); None if none does. Steps
        that do not read are skipped and noted in ``unreadable``. ``check(meta)`` runs before
        the state is read; its error (another model) propagates, as does StateMismatchError
        for a state that reads back in another structure than ``target``'s. With
        ``params_only`` (and no target) only the parameters are read, not the optimizer's
        moments (a third of the bytes for Adam); a Checkpointer reading that way must not
        also read whole states (orbax keeps one handler per item)."""
        for step in sorted(self.all_steps(), reverse=True) if steps is None else steps:
            try:
                meta = self.read_meta(step)
                if check is not None:
                    check(meta)
                if target is None:
                    raw = self._raw_params if params_only else self._raw
                    return Restored(step, meta, self._read(step, lambda s=step, r=raw: r(s)))
                return Restored(step, meta, self._restore_into(step, target, meta))
            except _Unreadable:
                continue
        return None

    def _restore_into(self, step: int, target: Any, meta: dict[str, Any]) -> Any:
        try:
            return self.restore(step, target)
        except Exception as e:  # damaged files, or a state of another structure
            self._read(step, lambda: self._raw(step))  # _Unreadable if the files are damaged
            raise StateMismatchError(step, self.directory, meta) from e

    def _read(self, step: int, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except (PermissionError, MemoryError):  # the files may be fine: not damage
            raise
        except Exception as e:  # what orbax, tensorstore or json say about broken files
            if "RESOURCE_EXHAUSTED" in str(e) and os_reason(e) is None:  # out of memory
                raise
            text = f"{type(e).__name__}: {' '.join(str(e).split())}"
            self.unreadable[step] = text if len(text) <= 100 else text[:97] + "..."
            raise _Unreadable(step) from e

    def _raw(self, step: int) -> Any:
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
        return out["state"]

    def _raw_params(self, step: int) -> Any:
        """{"params": ...} of the saved state, read alone (the moments stay on disk)."""
        path = epath.Path(self.directory) / str(step) / "state"
        saved = ocp.StandardCheckpointHandler().metadata(path).tree["params"]
        item = {"params": jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), saved)}
        as_numpy = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), item)
        args = ocp.args.PyTreeRestore(item=item, partial_restore=True, restore_args=as_numpy)
        return self.manager.restore(step, args=ocp.args.Composite(state=args))["state"]

    def restore_meta(self, step: int) -> dict[str, Any]:
        out = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
        return dict(out["meta"])

    def restore(self, step: int, target: Any) -> Any:
        """Restores the state at ``step`` into the structure/shapes/shardings of ``target``."""
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        out = self.manager.restore(
            step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract))
        )
        return out["state"]

    def restore_params(self, step: int) -> Any:
        """The saved ``params`` subtree as plain nested dicts of arrays (no target needed, so
        no task or corpus has to be built to read a model back)."""
        return params_of(self._raw(step))

    def set_aside(self) -> str:
        """Moves the step folders noted in ``unreadable`` to ``<directory>.unreadable/<step>``
        (a name already taken gets a suffix); returns that folder."""
        aside = self.directory + ASIDE
        for step in sorted(self.unreadable):
            src = os.path.join(self.directory, str(step))
            if not os.path.lexists(src):
                continue
            os.makedirs(aside, exist_ok=True)
            dst, n = os.path.join(aside, str(step)), 1
            while os.path.lexists(dst):
                dst, n = os.path.join(aside, f"{step}.{n}"), n + 1
            shutil.move(src, dst)
        self.manager.reload()
        return aside

    # -- writing ---------------------------------------------------------------------------
    def save(
        self,
        step: int,
        state: Any,
        meta: dict[str, Any],
        metrics: dict[str, float] | None = None,
        force: bool = True,
    ) -> None:
        """Saves ``step`` (in the background when async). A save that fails on the
        filesystem raises CheckpointWriteError, here or, for a background one, from the
        next ``save``, ``wait`` or ``close``."""
        self._guard(self._pending, self.manager.wait_until_finished)
        metrics = {k: float(v) for k, v in (metrics or {}).items()}
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave({**meta, "metrics": metrics})
        )
        self._guard(
            step, lambda: self.manager.save(step, args=args, metrics=metrics or None, force=force)
        )
        self._pending = step

    def _guard(self, step: int | None, fn: Callable[[], Any]) -> None:
        try:
            fn()
        except Exception as e:
            reason = os_reason(e)
            if reason is None:  # not the filesystem: a bug, with its traceback
                raise
            self._failed = True
            raise CheckpointWriteError(step, self.directory, reason) from e

    def wait(self) -> None:
        self._guard(self._pending, self.manager.wait_until_finished)

    def close(self) -> None:
        try:
            self.wait()
        finally:
            try:
                self.manager.close()
            except Exception:
                if not self._failed:  # after a reported failure orbax only repeats it
                    raise


def params_of(raw_state: Any) -> Any:
    """The ``params`` of a state restored as saved, as ``nnx.replace_by_pure_dict`` takes
    them: orbax keeps {'value': array} wrappers and string keys for list indices."""

    def pure(tree: Any) -> Any:
        if not isinstance(tree, dict):
            return tree
        if set(tree) == {"value"}:
            return tree["value"]
        return {
            (int(k) if isinstance(k, str) and k.isdigit() else k): pure(v) for k, v in tree.items()
        }

    return pure(raw_state["params"])


def complete_steps(directory: str) -> list[int]:
    """The finalized step folders in ``directory`` (orbax's temporary ones are not)."""
    with contextlib.suppress(OSError):
        names = os.listdir(directory)
        return sorted(int(n) for n in names if n.isdigit() and os.path.isdir(f"{directory}/{n}"))
    return []


_OS_ERROR_CODE = re.compile(r"os_error_code='?(\d+)")


def os_reason(e: BaseException | None) -> str | None:
    """The system's reason ("No space left on device") when ``e``, or an error it was
    raised from, is a filesystem error (tensorstore puts ``[os_error_code='28']`` in a
    ValueError); None for anything else."""
    seen: set[int] = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno is not None:
            return e.strerror or os.strerror(e.errno)
        if m := _OS_ERROR_CODE.search(str(e)):
            return os.strerror(int(m.group(1)))
        e = e.__cause__ or e.__context__
    return None


_quieted = False


def _quiet_orbax() -> None:
    """Once per process. Orbax logs every failed read or save (as a WARNING or an ERROR with
    a traceback) before raising it, to be reported as one line or raised on as a bug, and
    after a failed tensorstore read its callbacks print "Event loop is closed" tracebacks
    for a while: neither says more than the raised error."""
    global _quieted
    if _quieted:
        return
    _quieted = True
    logging.getLogger("absl").addFilter(
        lambda r: r.levelno < logging.WARNING or f"{os.sep}orbax{os.sep}" not in r.pathname
    )
    previous = sys.unraisablehook

    def hook(u: Any) -> None:
        if not (
            isinstance(u.exc_value, RuntimeError) and str(u.exc_value) == "Event loop is closed"
        ):
            previous(u)

    sys.unraisablehook = hook
