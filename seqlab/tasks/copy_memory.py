"""The copy-memory problem (Arjovsky, Shah & Bengio 2016, after Hochreiter & Schmidhuber 1997).

Tokens: blank 0, symbols ``1..S`` (S = 8), delimiter ``S + 1``. Input: ``N`` (= 10) random
symbols, T - 1 blanks, the delimiter, N blanks (length T + 2N). Target: blanks for the first
T + N steps, then the N symbols. It is many-to-many, so the model is a ``LanguageModel``
mapping each input token to logits over the same vocabulary.

A model without memory predicts blanks exactly and is uniform over the S symbols on the N
copy steps, so its mean loss over all steps is ``N log S / (T + 2N)``.
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from seqlab.errors import DataError
from seqlab.tasks.base import Arrays, Batch, Key, LossOut, ModelSpec, cross_entropy
from seqlab.tasks.synthetic import SyntheticTask, count, total


class CopyMemoryTask(SyntheticTask):
    """``data.seq_len`` is T (the delay); options ``task.num_symbols`` (8), ``task.copy_len``
    (10). Metrics: ``loss`` over all steps, ``accuracy`` on the copied steps only."""

    name = "copy_memory"

    KEYS = {
        "task.num_symbols": (8, "distinct symbols to copy"),
        "task.copy_len": (10, "symbols shown at the start and recalled at the end"),
    }

    def __init__(self, config: ConfigDict, **kw: Any):
        super().__init__(config, **kw)
        self.delay = int(config.data.seq_len)
        self.num_symbols = int(config.task.num_symbols)
        self.copy_len = int(config.task.copy_len)
        if self.delay < 1 or self.num_symbols < 2 or self.copy_len < 1:
            raise DataError(
                "copy_memory needs data.seq_len >= 1, task.num_symbols >= 2 and task.copy_len >= 1"
            )
        self.blank_id = 0
        self.delimiter_id = self.num_symbols + 1
        self.length = self.delay + 2 * self.copy_len

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(family="lm", vocab_size=self.num_symbols + 2)

    def tokens_per_batch(self) -> int:
        return self.global_batch_size * self.length

    def generate(self, rng: np.random.Generator, n: int) -> Batch:
        N, T = self.copy_len, self.delay
        symbols = rng.integers(1, self.num_symbols + 1, size=(n, N)).astype(np.int32)
        inputs = np.zeros((n, self.length), np.int32)
        inputs[:, :N] = symbols
        inputs[:, N + T - 1] = self.delimiter_id
        targets = np.zeros((n, self.length), np.int32)
        targets[:, -N:] = symbols
        return {"inputs": inputs, "targets": targets}

    def loss(self, model: Any, batch: Arrays, *, carry: Any = None, rng: Key = None) -> LossOut:
        logits, _ = model(batch["inputs"], train=rng is not None, rng=rng)
        logits = logits.astype(jnp.float32)
        ce = cross_entropy(logits, batch["targets"])
        N = self.copy_len
        correct = jnp.argmax(logits[:, -N:], -1) == batch["targets"][:, -N:]
        metrics = {
            "loss": (total(ce), count(ce.size)),
            "accuracy": (total(correct), count(correct.size)),
        }
        return jnp.mean(ce), (metrics, carry)

    def no_memory_loss(self) -> float:
        return self.copy_len * math.log(self.num_symbols) / self.length

    def summarize(self, means: dict[str, float], prefix: str) -> dict[str, float]:
        if f"{prefix}loss" not in means:
            return {}
        return {f"{prefix}loss_ratio": means[f"{prefix}loss"] / self.no_memory_loss()}

    def baselines(self) -> dict[str, float]:
        return {"loss": self.no_memory_loss(), "accuracy": 1.0 / self.num_symbols}
