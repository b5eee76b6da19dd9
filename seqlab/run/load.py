"""``load_run(workdir)``: the one way every tool (and a notebook) gets a trained run back --
its config, the model with restored parameters, the step and the checkpoint's metadata.

No task is built (a char LM's corpus need not be present): the model's shape comes from the
checkpoint's saved spec and config. A config saved before a key existed gets that key's
documented default, and one log line names it. A checkpoint that does not read back is
skipped for the next one, with one log line naming it.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Any

import jax
from flax import nnx
from ml_collections import ConfigDict

from seqlab.errors import RunError
from seqlab.models.build import build_model
from seqlab.run.checkpoint import Checkpointer, Restored, params_of
from seqlab.run.resume import unreadable_note
from seqlab.run.state import ModelDef, split_model
from seqlab.run.workdir import not_a_directory
from seqlab.tasks import ModelSpec, complete_config, get_task_class
from seqlab.tasks.corpora import Vocab

log = logging.getLogger("seqlab")


@dataclasses.dataclass
class Run:
    """A trained run. ``params`` are as saved: stacked over seeds when ``num_seeds > 1``."""

    workdir: str
    config: ConfigDict
    step: int
    meta: dict[str, Any]
    mdef: ModelDef
    params: Any

    @property
    def num_seeds(self) -> int:
        return int(self.config.num_seeds)

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(**self.meta["spec"])

    @property
    def vocab(self) -> Vocab | None:
        """The char LM's vocabulary (None for other tasks)."""
        return Vocab.from_dict(self.meta["vocab"]) if "vocab" in self.meta else None

    @property
    def metrics(self) -> dict[str, float]:
        """The eval metrics saved with this checkpoint (empty if it was not an eval step)."""
        return dict(self.meta.get("metrics") or {})

    def model(self, replica: int = 0) -> nnx.Module:
        """The live model of one seed (``replica`` in ``[0, num_seeds)``)."""
        if not 0 <= replica < self.num_seeds:
            raise RunError(
                f"replica={replica} is out of range: the run has {self.num_seeds} seed(s)"
            )
        params = self.params
        if self.num_seeds > 1:
            params = jax.tree.map(lambda x: x[replica], params)
        return self.mdef.merge(params)


def read_checkpoint(workdir: str, best: bool = False) -> tuple[Checkpointer, Restored]:
    """The workdir's checkpointer (open) and its newest (``best``: best by the task's
    metric) checkpoint that reads back whole, as saved. Unreadable steps are skipped, not
    moved (this only reads; the next ``seqlab train`` sets them aside): one warning line."""
    ckdir = _checkpoints_dir(workdir)
    ckpt = Checkpointer(ckdir, async_save=False, read_only=True)
    steps = None
    if best:  # "best" by the task's own metric and direction
        meta = ckpt.newest_meta()
        task = get_task_class(meta["task"]) if meta is not None else None
        if task is not None:
            ckpt.best_metric, ckpt.best_mode = task.best_metric, task.best_mode
        steps = ckpt.by_metric() if task is not None else []
    found = ckpt.restore_newest(steps=steps, params_only=True)
    kind = "best " if best else ""
    if found is None:
        ckpt.close()
        if ckpt.unreadable:
            raise RunError(f"no readable {kind}checkpoint in {ckdir}: {unreadable_note(ckpt)}")
        raise RunError(f"no {kind}checkpoint in {ckdir}")
    if ckpt.unreadable:
        log.warning(
            "%s; using step %d, the %sreadable one",
            unreadable_note(ckpt),
            found.step,
            kind or "newest ",
        )
    return ckpt, found


def _checkpoints_dir(workdir: str) -> str:
    if blocked := not_a_directory(workdir):
        raise RunError(f"--workdir {blocked}, not a run directory")
    ckdir = os.path.join(workdir, "checkpoints")
    if os.path.lexists(ckdir) and not os.path.isdir(ckdir):
        raise RunError(f"{ckdir} is a file, not a checkpoint directory")
    if not os.path.isdir(ckdir):
        raise RunError(
            f"no checkpoints in {workdir}; train first with "
            f"`seqlab train --config ... --workdir {workdir}`"
        )
    return ckdir


def checkpoint_step(workdir: str, best: bool = False) -> tuple[Checkpointer, int]:
    """The workdir's checkpointer and the step ``load_run`` restores (see read_checkpoint)."""
    ckpt, found = read_checkpoint(workdir, best)
    return ckpt, found.step


def load_run(workdir: str, best: bool = False) -> Run:
    """The run in ``workdir`` at its newest readable checkpoint (``best``: the best by the
    task's metric), with its parameters restored."""
    ckpt, found = read_checkpoint(workdir, best)
    ckpt.close()
    meta, tree = found.meta, params_of(found.state)
    config = complete_config(meta["config"], saved=True)
    spec = ModelSpec(**meta["spec"])
    abstract = nnx.eval_shape(lambda: build_model(config.model, spec, nnx.Rngs(params=0)))
    mdef, params = split_model(abstract)
    nnx.replace_by_pure_dict(params, tree)
    return Run(os.path.abspath(workdir), config, int(found.step), meta, mdef, params)
