"""Checkpoints: the only module that touches orbax.

A checkpoint holds two items: ``state`` (the train state pytree: params, optimizer state,
step, carried RNN state) and ``meta`` (JSON: config, the task's model spec, vocabulary, the
eval metrics at that step). Orbax writes each step to a temporary directory and renames it
when complete, so a process killed mid-save leaves no checkpoint that could be loaded.
Retention keeps the latest ``keep`` steps and the best one by the task's metric.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers as cm

from seqlab.errors import RunError


class CheckpointMismatchError(RunError):
    """The workdir's checkpoint belongs to a different model shape or vocabulary."""


class Checkpointer:
    def __init__(
        self,
        directory: str,
        *,
        keep: int = 3,
        best_metric: str = "eval/loss",
        best_mode: str = "min",
        async_save: bool = True,
    ):
        self.directory = os.path.abspath(directory)
        self.best_metric = best_metric
        self.best_mode = best_mode
        get_metric = lambda m: float(
            m.get(best_metric, float("inf") if best_mode == "min" else float("-inf"))
        )
        policy = cm.AnyPreservationPolicy(
            [
                cm.LatestN(n=max(1, int(keep))),
                cm.BestN(
                    get_metric_fn=get_metric,
                    reverse=best_mode == "max",
                    n=1,
                    keep_checkpoints_without_metrics=False,
                ),
            ]
        )
        options = ocp.CheckpointManagerOptions(
            preservation_policy=policy,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
            create=True,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        """The step with the best saved metric (scans the saved metadata)."""
        best, best_val = None, None
        for step in self.manager.all_steps():
            try:
                meta = self.restore_meta(step)
            except FileNotFoundError:  # a step orbax was deleting when its process was killed
                continue
            val = meta.get("metrics", {}).get(self.best_metric)
            if val is None:
                continue
            better = best_val is None or (
                val < best_val if self.best_mode == "min" else val > best_val
            )
            if better:
                best, best_val = step, val
        return best

    def all_steps(self) -> list[int]:
        return list(self.manager.all_steps())

    def save(
        self,
        step: int,
        state: Any,
        meta: dict[str, Any],
        metrics: dict[str, float] | None = None,
        force: bool = True,
    ) -> None:
        meta = {**meta, "metrics": {k: float(v) for k, v in (metrics or {}).items()}}
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)
            ),
            metrics={k: float(v) for k, v in (metrics or {}).items()} or None,
            force=force,
        )

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
        out = self.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
        return _pure(out["state"]["params"])

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()


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
            f"({detail}); use a new --workdir or the config it was trained with"
        )


def _pure(tree: Any) -> Any:
    """Orbax's raw restore of an nnx.State keeps {'value': array} wrappers and string keys
    for list indices; give back the pure dict ``nnx.replace_by_pure_dict`` takes."""
    if isinstance(tree, dict):
        if set(tree) == {"value"}:
            return tree["value"]
        return {
            (int(k) if isinstance(k, str) and k.isdigit() else k): _pure(v) for k, v in tree.items()
        }
    return tree
