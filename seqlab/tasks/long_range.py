"""Long-range memory benchmarks: the adding problem and long-distance recall.

Both are many-to-one: the answer depends on inputs far from the end of the sequence, so a
model without memory is stuck at a known baseline (MSE 1/6, chance accuracy 1/K).
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from seqlab.errors import DataError
from seqlab.tasks.base import Arrays, Batch, Key, LossOut, ModelSpec
from seqlab.tasks.synthetic import SyntheticTask, classify, count, total


class AddingTask(SyntheticTask):
    """The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015 variant).

    inputs (B, T, 2): channel 0 values ~ U[0, 1], channel 1 markers with exactly one 1 in
    the first half and one in the second half; target = sum of the two marked values.
    Predicting the mean 1.0 without memory scores MSE Var(U1 + U2) = 1/6.
    """

    name = "adding"
    best_metric = "eval/mse"
    NO_MEMORY_MSE = 1.0 / 6.0

    def __init__(self, config: ConfigDict, **kw: Any):
        super().__init__(config, **kw)
        self.seq_len = int(config.data.seq_len)
        if self.seq_len < 2:
            raise DataError(f"adding needs data.seq_len >= 2, got {self.seq_len}")

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(family="classifier", input_kind="features", num_features=2, num_outputs=1)

    def generate(self, rng: np.random.Generator, n: int) -> Batch:
        T, half = self.seq_len, self.seq_len // 2
        values = rng.uniform(0.0, 1.0, size=(n, T)).astype(np.float32)
        first = rng.integers(0, half, size=n)
        second = rng.integers(half, T, size=n)
        markers = np.zeros((n, T), np.float32)
        rows = np.arange(n)
        markers[rows, first] = 1.0
        markers[rows, second] = 1.0
        targets = values[rows, first] + values[rows, second]
        return {"inputs": np.stack([values, markers], axis=-1), "targets": targets}

    def loss(self, model: Any, batch: Arrays, *, carry: Any = None, rng: Key = None) -> LossOut:
        pred, _ = model(batch["inputs"], train=rng is not None, rng=rng)
        sq = jnp.square(pred[:, 0].astype(jnp.float32) - batch["targets"])
        n = count(sq.shape[0])
        metrics = {"loss": (total(sq), n), "mse": (total(sq), n)}
        return jnp.mean(sq), (metrics, carry)

    def summarize(self, means: dict[str, float], prefix: str) -> dict[str, float]:
        targets = np.concatenate([b["targets"] for b in self.eval_batches()])
        empirical = float(np.mean(np.square(targets - 1.0)))
        out = {f"{prefix}baseline_mse": empirical}
        if f"{prefix}mse" in means:
            out[f"{prefix}mse_ratio"] = means[f"{prefix}mse"] / empirical
        return out

    def baselines(self) -> dict[str, float]:
        return {"mse": self.NO_MEMORY_MSE}


class RecallTask(SyntheticTask):
    """Long-distance recall: remember a class token across T-1 distractors.

    Tokens: classes ``[0, K)``, distractors ``[K, K + D)``, query ``K + D``. A sequence is
    the class token, T-1 distractors, then the query (length T + 1); the label is the class.
    Options: ``task.num_classes`` (K, default 8), ``task.num_distractors`` (D, default 8).
    """

    name = "recall"

    KEYS = {
        "task.num_classes": (8, "classes the first token names (chance accuracy 1/K)"),
        "task.num_distractors": (8, "distinct distractor tokens between class and query"),
    }

    def __init__(self, config: ConfigDict, **kw: Any):
        super().__init__(config, **kw)
        self.seq_len = int(config.data.seq_len)
        self.num_classes = int(config.task.num_classes)
        self.num_distractors = int(config.task.num_distractors)
        if self.seq_len < 1 or self.num_classes < 2 or self.num_distractors < 1:
            raise DataError(
                "recall needs data.seq_len >= 1, task.num_classes >= 2 and "
                "task.num_distractors >= 1"
            )
        self.query_id = self.num_classes + self.num_distractors

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(
            family="classifier", vocab_size=self.query_id + 1, num_outputs=self.num_classes
        )

    def tokens_per_batch(self) -> int:
        return self.global_batch_size * (self.seq_len + 1)

    def generate(self, rng: np.random.Generator, n: int) -> Batch:
        K, D, T = self.num_classes, self.num_distractors, self.seq_len
        labels = rng.integers(0, K, size=n)
        tokens = np.empty((n, T + 1), np.int32)
        tokens[:, 0] = labels
        tokens[:, 1:T] = rng.integers(K, K + D, size=(n, T - 1))
        tokens[:, T] = self.query_id
        return {"inputs": tokens, "labels": labels.astype(np.int32)}

    def loss(self, model: Any, batch: Arrays, *, carry: Any = None, rng: Key = None) -> LossOut:
        loss, _, metrics = classify(model, batch, rng)
        return loss, (metrics, carry)

    def baselines(self) -> dict[str, float]:
        return {
            "accuracy": 1.0 / self.num_classes,
            "loss": math.log(self.num_classes),
        }


__all__ = ["AddingTask", "RecallTask", "SyntheticTask", "count", "total"]
