"""Checkpoint retention: the latest ``keep`` steps and the best one by the task's own rule.

The best step must survive any number of later saves, in both directions (a loss that falls,
an accuracy that rises), with ties going to the earlier step, across a reopened manager too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import pytest

from seqlab.run.checkpoint import Checkpointer
from seqlab.run.retention import BestStep

STATE = {"w": np.arange(3, dtype=np.float32)}


def expected_best(values: dict[int, float], mode: str) -> int:
    """The step the task's rule picks: lowest (min) or highest (max), earliest on ties."""
    return min(values, key=lambda s: (values[s] if mode == "min" else -values[s], s))


def save_all(directory, values: dict[int, float], metric: str, mode: str, keep: int) -> list:
    ckpt = Checkpointer(directory, keep=keep, best_metric=metric, best_mode=mode, async_save=False)
    for step, value in values.items():
        ckpt.save(step, STATE, {}, {metric: value})
    kept = ckpt.all_steps()
    best = ckpt.best_step()
    ckpt.close()
    return kept, best


@pytest.mark.parametrize(
    ("metric", "mode", "values", "kept"),
    [
        # the cases: the best is step 1, then three later saves
        ("eval/loss", "min", [0.1, 0.5, 0.3, 0.4, 0.35, 0.45], [1, 4, 5, 6]),
        ("eval/accuracy", "max", [0.9, 0.5, 0.7, 0.6, 0.65, 0.55], [1, 4, 5, 6]),
        # ties: the earlier of two equal bests stays
        ("eval/loss", "min", [0.5, 0.2, 0.2, 0.4, 0.4, 0.4], [2, 4, 5, 6]),
        ("eval/accuracy", "max", [0.1, 0.8, 0.3, 0.8, 0.2, 0.2, 0.2], [2, 5, 6, 7]),
        # the best is among the latest: nothing extra kept
        ("eval/loss", "min", [0.9, 0.8, 0.7, 0.6], [2, 3, 4]),
        # non-finite values are never "best"
        ("eval/loss", "min", [float("nan"), 0.3, float("inf"), 0.5, 0.6, 0.7], [2, 4, 5, 6]),
    ],
)
@pytest.mark.slow
def test_best_step_survives_later_saves(tmp_path, metric, mode, values, kept):
    steps = dict(enumerate(values, start=1))
    got, best = save_all(str(tmp_path / "ck"), steps, metric, mode, keep=3)
    assert got == kept
    finite = {s: v for s, v in steps.items() if np.isfinite(v)}
    assert best == expected_best(finite, mode)


@pytest.mark.parametrize("mode", ["min", "max"])
def test_best_survives_a_reopened_manager(tmp_path, mode):
    """A resumed run opens a new manager over the old steps: the best from before the
    restart is still kept after many more saves."""
    directory = str(tmp_path / "ck")
    good, bad = (0.1, 0.9) if mode == "min" else (0.9, 0.1)
    save_all(directory, {1: bad, 2: good, 3: bad}, "eval/m", mode, keep=2)
    kept, best = save_all(directory, {s: bad for s in range(4, 12)}, "eval/m", mode, keep=2)
    assert kept == [2, 10, 11] and best == 2


@dataclass
class Info:
    step: int
    metrics: dict | None


@pytest.mark.parametrize("mode", ["min", "max"])
def test_policy_on_random_histories(mode):
    """The policy alone, on 300 random histories with many ties and missing metrics."""
    rng = random.Random(0)
    for _ in range(300):
        n = rng.randint(1, 12)
        infos = [
            Info(s, None if rng.random() < 0.15 else {"m": float(rng.randint(0, 4))})
            for s in range(1, n + 1)
        ]
        flags = BestStep("m", mode).should_preserve(infos)
        scored = {i.step: i.metrics["m"] for i in infos if i.metrics}
        want = expected_best(scored, mode) if scored else None
        assert [i.step for i, f in zip(infos, flags, strict=True) if f] == ([want] if want else [])
