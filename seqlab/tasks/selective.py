"""Content-dependent memory: selective copying and associative recall.

Unlike copy memory, where the symbols sit at fixed positions, here *which* tokens to keep
depends on their content (data among noise, the value bound to a queried key), so a model
must gate its state on its input. Gu & Dao (2023) and Arora et al. (2023) use these two tasks
to separate input-dependent (selective) recurrences from time-invariant ones (S4, LRU-style
convolutions).
"""

from __future__ import annotations

import math
from typing import Any

import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from seqlab.errors import DataError
from seqlab.tasks.base import Arrays, Batch, Key, LossOut, ModelSpec, cross_entropy
from seqlab.tasks.synthetic import SyntheticTask, classify, count, total


def _positions(rng: np.random.Generator, n: int, length: int, k: int) -> np.ndarray:
    """(n, k) distinct positions in ``[0, length)`` per row, sorted."""
    return np.sort(np.argsort(rng.random((n, length)), axis=1)[:, :k], axis=1)


class SelectiveCopyTask(SyntheticTask):
    """Selective copying (Gu & Dao 2023, "Mamba", section 4.1.1; Feng et al. 2024).

    Tokens: noise 0, data ``1..V`` (V = ``task.vocab``), marker ``V + 1``. Input: T
    (``data.seq_len``) context steps, noise except M (``task.num_memorize``) data tokens at
    random distinct positions, then M markers (length T + M). At the i-th marker the model
    must output the i-th data token (per-step logits; the loss and ``accuracy`` count the M
    marker steps only, so accuracy is the fraction of data tokens recalled in order).

    Chance (a model that knows only that the answers are data tokens): accuracy 1/V, loss
    log V.
    """

    name = "selective_copy"

    KEYS = {
        "task.num_memorize": (16, "data tokens hidden in the context and recalled in order"),
        "task.vocab": (16, "distinct data tokens (chance accuracy 1/vocab)"),
    }

    def __init__(self, config: ConfigDict, **kw: Any):
        super().__init__(config, **kw)
        self.seq_len = T = int(config.data.seq_len)
        self.num_memorize = M = int(config.task.num_memorize)
        # not ``self.vocab``: that name is a charlm Vocab, which checkpoints save
        self.num_symbols = V = int(config.task.vocab)
        if M < 1:
            raise DataError(f"selective_copy needs task.num_memorize >= 1, got {M}")
        if T <= M:
            raise DataError(
                f"selective_copy needs data.seq_len > task.num_memorize (the context holds "
                f"the {M} data tokens and some noise), got seq_len={T}; raise data.seq_len "
                "or lower task.num_memorize"
            )
        if V < 2:
            raise DataError(
                f"selective_copy needs task.vocab >= 2 data tokens (chance 1/vocab), got {V}"
            )
        self.noise_id, self.marker_id = 0, V + 1

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(family="lm", vocab_size=self.num_symbols + 2)

    def tokens_per_batch(self) -> int:
        return self.global_batch_size * (self.seq_len + self.num_memorize)

    def generate(self, rng: np.random.Generator, n: int) -> Batch:
        T, M = self.seq_len, self.num_memorize
        data = rng.integers(1, self.num_symbols + 1, size=(n, M)).astype(np.int32)
        inputs = np.full((n, T + M), self.noise_id, np.int32)
        inputs[np.arange(n)[:, None], _positions(rng, n, T, M)] = data
        inputs[:, T:] = self.marker_id
        return {"inputs": inputs, "targets": data}

    def loss(self, model: Any, batch: Arrays, *, carry: Any = None, rng: Key = None) -> LossOut:
        logits, _ = model(batch["inputs"], train=rng is not None, rng=rng)
        logits = logits[:, -self.num_memorize :].astype(jnp.float32)  # the marker steps
        ce = cross_entropy(logits, batch["targets"])
        correct = jnp.argmax(logits, -1) == batch["targets"]
        metrics = {
            "loss": (total(ce), count(ce.size)),
            "accuracy": (total(correct), count(correct.size)),
        }
        return jnp.mean(ce), (metrics, carry)

    def baselines(self) -> dict[str, float]:
        return {"accuracy": 1.0 / self.num_symbols, "loss": math.log(self.num_symbols)}


class AssociativeRecallTask(SyntheticTask):
    """Associative recall (Ba et al. 2016; Fu et al. 2023, "H3"; Arora et al. 2023,
    "Zoology", whose MQAR asks several queries; this asks one), many-to-one.

    Tokens: keys ``[0, K)`` (K = ``task.num_keys``), values ``[K, K + V)`` (V =
    ``task.num_values``), blank ``K + V``. Input (length T = ``data.seq_len``): N
    (``task.num_pairs``) pairs ``key value`` with distinct keys and values drawn with
    replacement, blanks, and last one of those N keys as the query. The label is its value's
    index in ``[0, V)``.

    Chance (``baselines``): a uniform guess over all V values, accuracy 1/V, loss log V. A
    model that remembers which values occurred but not their keys does better: guessing one
    of the N it saw is right with probability (1 + (N - 1) / V) / N, so accuracy well above
    that is what shows binding.
    """

    name = "associative_recall"

    KEYS = {
        "task.num_pairs": (8, "key-value pairs shown before the query"),
        "task.num_keys": (16, "distinct key tokens (>= num_pairs: keys do not repeat)"),
        "task.num_values": (16, "distinct value tokens (chance accuracy 1/num_values)"),
    }

    def __init__(self, config: ConfigDict, **kw: Any):
        super().__init__(config, **kw)
        self.seq_len = T = int(config.data.seq_len)
        self.num_pairs = N = int(config.task.num_pairs)
        self.num_keys = K = int(config.task.num_keys)
        self.num_values = V = int(config.task.num_values)
        if N < 1:
            raise DataError(f"associative_recall needs task.num_pairs >= 1, got {N}")
        if K < N:
            raise DataError(
                f"associative_recall needs task.num_keys >= task.num_pairs (keys do not "
                f"repeat), got num_keys={K}, num_pairs={N}"
            )
        if V < 2:
            raise DataError(
                f"associative_recall needs task.num_values >= 2 (chance 1/num_values), got {V}"
            )
        if T < 2 * N + 1:
            raise DataError(
                f"associative_recall needs data.seq_len >= 2 * task.num_pairs + 1 = {2 * N + 1} "
                f"(the pairs and the query), got {T}; raise data.seq_len or lower "
                "task.num_pairs"
            )
        self.blank_id = K + V

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(
            family="classifier", vocab_size=self.blank_id + 1, num_outputs=self.num_values
        )

    def generate(self, rng: np.random.Generator, n: int) -> Batch:
        N, K = self.num_pairs, self.num_keys
        keys = np.argsort(rng.random((n, K)), axis=1)[:, :N]  # N distinct keys per row
        values = rng.integers(0, self.num_values, size=(n, N))
        asked = rng.integers(0, N, size=n)
        rows = np.arange(n)
        inputs = np.full((n, self.seq_len), self.blank_id, np.int32)
        inputs[:, 0 : 2 * N : 2] = keys
        inputs[:, 1 : 2 * N : 2] = K + values
        inputs[:, -1] = keys[rows, asked]
        return {"inputs": inputs, "labels": values[rows, asked].astype(np.int32)}

    def loss(self, model: Any, batch: Arrays, *, carry: Any = None, rng: Key = None) -> LossOut:
        loss, _, metrics = classify(model, batch, rng)
        return loss, (metrics, carry)

    def baselines(self) -> dict[str, float]:
        return {"accuracy": 1.0 / self.num_values, "loss": math.log(self.num_values)}


__all__ = ["AssociativeRecallTask", "SelectiveCopyTask"]
