"""``load_run(workdir)``: the one way every tool (and a notebook) gets a trained run back --
its config, the model with restored parameters, the step and the checkpoint's metadata.

No task is built (a char LM's corpus need not be present): the model's shape comes from the
checkpoint's saved spec and config. A config saved before a key existed gets that key's
documented default, and one log line names it.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax
from flax import nnx
from ml_collections import ConfigDict

from seqlab.errors import RunError
from seqlab.models.build import build_model
from seqlab.run.checkpoint import Checkpointer
from seqlab.run.state import ModelDef, split_model
from seqlab.tasks import ModelSpec, complete_config, get_task_class
from seqlab.tasks.corpora import Vocab


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


def checkpoint_step(workdir: str, best: bool = False) -> tuple[Checkpointer, int]:
    """The workdir's checkpointer and its latest (or best, by the task's metric) step."""
    ckdir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckdir):
        raise RunError(
            f"no checkpoints in {workdir}; train first with "
            f"`seqlab train --config ... --workdir {workdir}`"
        )
    ckpt = Checkpointer(ckdir, async_save=False)
    step = ckpt.latest_step()
    if best and step is not None:  # "best" by the task's own metric and direction
        task = get_task_class(ckpt.restore_meta(step)["task"])
        ckpt.best_metric, ckpt.best_mode = task.best_metric, task.best_mode
        step = ckpt.best_step()
    if step is None:
        ckpt.close()
        raise RunError(f"no {'best ' if best else ''}checkpoint in {ckdir}")
    return ckpt, step


def load_run(workdir: str, best: bool = False) -> Run:
    """The run in ``workdir`` at its latest checkpoint (``best``: the best by the task's
    metric), with its parameters restored."""
    ckpt, step = checkpoint_step(workdir, best)
    try:
        meta = ckpt.restore_meta(step)
        tree = ckpt.restore_params(step)
    finally:
        ckpt.close()
    config = complete_config(meta["config"], saved=True)
    spec = ModelSpec(**meta["spec"])
    abstract = nnx.eval_shape(lambda: build_model(config.model, spec, nnx.Rngs(params=0)))
    mdef, params = split_model(abstract)
    nnx.replace_by_pure_dict(params, tree)
    return Run(os.path.abspath(workdir), config, int(step), meta, mdef, params)
