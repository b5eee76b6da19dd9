"""State tracking: parity and composition in the symmetric group S3.

Both read T tokens that each name a group element and ask for their product: parity is the
group Z2 (tokens 0/1, label = sum mod 2), ``s3`` the six permutations of three items. The
answer changes whenever any token changes, so a model must carry the running product through
every step; nothing short of that beats chance.

Many-to-one by default (a ``SequenceClassifier`` reads out the last state). With
``task.per_step=True`` the label is the running product at every step and the model is a
``LanguageModel`` (per-step logits over the same C tokens, which are also the C classes);
``accuracy`` then averages over all B*T steps and ``final_accuracy`` scores the last step only,
the many-to-one question.

The published claim (Merrill, Petty & Sabharwal 2024, "The Illusion of State in State-Space
Models"): a one-layer nonlinear RNN (RNN/LSTM/GRU) expresses and learns these products at any
T, while S4 and Mamba-style SSMs, like transformers, lie in TC0 and provably cannot compose
permutations (the S5 word problem) at fixed depth; experimentally they also struggle on
simpler state tracking. Parity and S3 are themselves in TC0, so for them the gap is the
experiments', plus Grazzi et al. 2025 ("Unlocking State-Tracking in Linear RNNs Through
Negative Eigenvalues"): a finite-precision linear RNN whose diagonal transitions are in [0, 1]
(minGRU, minLSTM, RG-LRU, Mamba) cannot solve parity at arbitrary T. Expect rnn/lstm/gru to
reach ~100% and the linear recurrences (lru, mingru, minlstm, rglru) to fall off with T.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
from ml_collections import ConfigDict

from seqlab.errors import DataError
from seqlab.tasks.base import Arrays, Batch, Key, LossOut, ModelSpec
from seqlab.tasks.synthetic import SyntheticTask, classify, count, total

#: token i of ``s3`` is the permutation ``PERMUTATIONS[i]`` of (0, 1, 2), mapping item j to
#: ``PERMUTATIONS[i][j]``; token 0 is the identity.
PERMUTATIONS: tuple[tuple[int, ...], ...] = tuple(itertools.permutations(range(3)))


def _then_table() -> np.ndarray:
    """``THEN[a, b]``: the token of "a, then b", the map j -> b(a(j))."""
    index = {p: i for i, p in enumerate(PERMUTATIONS)}
    return np.array(
        [[index[tuple(b[a[j]] for j in range(3))] for b in PERMUTATIONS] for a in PERMUTATIONS],
        np.int32,
    )


THEN = _then_table()


class StateTrackingTask(SyntheticTask):
    """T uniform tokens in ``[0, num_classes)``; labels are their running products
    (``running``). ``data.seq_len`` is T; option ``task.per_step`` (see the module doc)."""

    num_classes = 0  # the group's size: tokens and labels are both in [0, num_classes)

    KEYS = {
        "task.per_step": (False, "label every step with the running product (else the last)"),
    }

    def __init__(self, config: ConfigDict, **kw: Any):
        super().__init__(config, **kw)
        self.seq_len = int(config.data.seq_len)
        self.per_step = bool(config.task.per_step)
        if self.seq_len < 1:
            raise DataError(
                f"{self.name} needs data.seq_len >= 1 (the number of input tokens), got "
                f"{self.seq_len}; set e.g. --config.data.seq_len=16"
            )

    @property
    def spec(self) -> ModelSpec:
        if self.per_step:
            return ModelSpec(family="lm", vocab_size=self.num_classes)
        return ModelSpec(
            family="classifier", vocab_size=self.num_classes, num_outputs=self.num_classes
        )

    def running(self, tokens: np.ndarray) -> np.ndarray:
        """(n, T) tokens -> (n, T) products of ``tokens[:, : t + 1]``."""
        raise NotImplementedError

    def generate(self, rng: np.random.Generator, n: int) -> Batch:
        tokens = rng.integers(0, self.num_classes, size=(n, self.seq_len)).astype(np.int32)
        states = self.running(tokens).astype(np.int32)
        return {"inputs": tokens, "labels": states if self.per_step else states[:, -1]}

    def loss(self, model: Any, batch: Arrays, *, carry: Any = None, rng: Key = None) -> LossOut:
        loss, correct, metrics = classify(model, batch, rng)
        if self.per_step:
            metrics["final_accuracy"] = (total(correct[:, -1]), count(correct.shape[0]))
        return loss, (metrics, carry)

    def baselines(self) -> dict[str, float]:
        """Chance: a uniform guess (each product is uniform over the group)."""
        out = {"accuracy": 1.0 / self.num_classes, "loss": math.log(self.num_classes)}
        if self.per_step:
            out["final_accuracy"] = 1.0 / self.num_classes
        return out


class ParityTask(StateTrackingTask):
    """Parity: bits in {0, 1}; the label is their sum mod 2 (chance 1/2)."""

    name = "parity"
    num_classes = 2

    def running(self, tokens: np.ndarray) -> np.ndarray:
        return np.cumsum(tokens, axis=1) % 2


class S3Task(StateTrackingTask):
    """The S3 word problem: tokens are the permutations ``PERMUTATIONS``; the label is the
    product read left to right, g_1 applied first: j -> g_T(...g_2(g_1(j))) (chance 1/6).
    S3 is not abelian, so the order matters (unlike parity)."""

    name = "s3"
    num_classes = 6

    def running(self, tokens: np.ndarray) -> np.ndarray:
        out = np.empty_like(tokens)
        state = tokens[:, 0]
        out[:, 0] = state
        for t in range(1, tokens.shape[1]):
            state = THEN[state, tokens[:, t]]
            out[:, t] = state
        return out


__all__ = ["PERMUTATIONS", "THEN", "ParityTask", "S3Task", "StateTrackingTask"]
