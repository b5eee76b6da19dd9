"""Which checkpoint steps retention keeps besides the latest: the best by the task's rule.

A plain orbax preservation policy (it has ``should_preserve``), kept apart from the
checkpoint module so the rule and its tests stand alone; it imports nothing of orbax's."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any


@dataclasses.dataclass
class BestStep:
    """Orbax preservation policy: keep the one step whose ``metric`` is best by ``mode``
    ("min" or "max"), ties going to the earlier step; steps without a finite value for the
    metric are never "best". (Orbax's ``BestN`` sorts ascending, or descending with
    ``reverse``, and keeps the *last* n, so the caller has to invert the direction, and its
    ties go to the later step: one rule, stated here, is easier to get right.)

    Orbax holds the metrics of the steps saved by this process only (it writes them to disk
    only with its own ``best_fn``), so ``saved(step)`` supplies those of earlier runs: without
    it a resumed run would drop the best step from before the restart at its first save."""

    metric: str
    mode: str = "min"
    saved: Callable[[int], dict[str, Any]] | None = None

    def best_index(self, checkpoints: Sequence[Any]) -> int | None:
        best: tuple[float, int] | None = None
        for i, info in enumerate(checkpoints):
            metrics = info.metrics
            if metrics is None and self.saved is not None:
                metrics = self.saved(info.step)
            value = (metrics or {}).get(self.metric)
            if not isinstance(value, (int, float)) or not math.isfinite(value):
                continue
            key = (value if self.mode == "min" else -value, info.step)
            if best is None or key < (best[0], checkpoints[best[1]].step):
                best = (key[0], i)
        return None if best is None else best[1]

    def should_preserve(self, checkpoints: Sequence[Any], *, context: Any = None) -> list[bool]:
        keep = self.best_index(checkpoints)
        return [i == keep for i in range(len(checkpoints))]
