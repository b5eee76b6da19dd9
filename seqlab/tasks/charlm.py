"""Character (or byte) language modelling: char-rnn's task, with both batching styles.

``data.batching``:

- ``tbptt`` (char-rnn): the train split is cut into ``global_batch`` contiguous streams; batch
  ``step`` is chunk ``step mod num_chunks`` of every stream (targets shifted by one). The
  carry flows from one chunk to the next (gradients stop at the boundary), and a ``reset``
  flag on each pass's first chunk restarts it from the initial state.
- ``random`` (nanoGPT): ``global_batch`` windows at random offsets, each read from the initial
  state; the carry is passed through unchanged.

Each process takes its own rows of the global batch, so the global batch does not depend on
the process count. Eval reads the val split as contiguous streams (stateful for ``tbptt``,
one window at a time for ``random``, matching training).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from seqlab.errors import DataError
from seqlab.tasks.base import (
    Arrays,
    Batch,
    Key,
    LossOut,
    ModelSpec,
    Task,
    cross_entropy,
    rng_for,
)
from seqlab.tasks.corpora import (
    Vocab,
    load_corpus,
    min_corpus_size,
    split,
    split_sizes,
    standard_split,
)

log = logging.getLogger("seqlab")
Array = jax.Array
BATCHING = ("tbptt", "random")


class CharLMTask(Task):
    """Next-character prediction; loss in nats/char, ``summarize`` adds bpc and perplexity."""

    name = "charlm"
    KEYS = {
        "data.corpus": (
            "tinyshakespeare",
            "tinyshakespeare | enwik8 | text8 | python_stdlib | file:PATH",
        ),
        "data.unit": ("char", "char | byte: what one symbol is"),
        "data.batching": ("random", "random windows | tbptt (char-rnn's contiguous streams)"),
        "data.val_fraction": (
            0.05,
            "share of the corpus held out for eval, before test (enwik8 and text8 read whole: "
            "their published 90M/5M/5M split instead)",
        ),
        "data.test_fraction": (0.05, "share held out for `seqlab eval --split test` (0 = none)"),
        "data.max_chars": (0, "read at most this many characters (0 = the whole corpus)"),
        "task.eval_batches": (0, "eval batches from the val split (0 = the whole split)"),
        "task.sample_every": (0, "sample text at evals on steps divisible by it (0 = every)"),
        "task.sample_length": (500, "characters per sample"),
        "task.sample_temperatures": ("0.5,1.0", "comma-separated sampling temperatures"),
        "task.sample_prime": ("", "text samples start from (empty: a newline, else symbol 0)"),
    }

    def __init__(self, config: ConfigDict, *, process_index: int = 0, process_count: int = 1):
        super().__init__(config, process_index=process_index, process_count=process_count)
        d, t = config.data, config.task
        self.seq_len = int(d.seq_len)
        self.batching = str(d.batching)
        if self.batching not in BATCHING:
            raise DataError(f"unknown data.batching {self.batching!r}; choose one of {BATCHING}")
        self.val_fraction = float(d.val_fraction)
        self.test_fraction = float(d.test_fraction)
        if self.val_fraction <= 0:
            raise DataError("charlm needs a val split: set data.val_fraction > 0")
        split_sizes(0, self.val_fraction, self.test_fraction)  # ranges, named, before sizes
        self.max_eval_batches = int(t.eval_batches)
        self.corpus = load_corpus(str(d.corpus), unit=str(d.unit), max_chars=int(d.max_chars))
        self.vocab: Vocab = self.corpus.vocab
        self._check_size()
        self.splits = self._split()
        self.sample_every = int(t.sample_every)
        self.sample_length = int(t.sample_length)
        temps = str(t.sample_temperatures)
        try:
            self.sample_temperatures = [float(x) for x in temps.split(",") if x.strip()]
        except ValueError:
            raise DataError(
                f"task.sample_temperatures={temps!r} is not comma-separated numbers "
                "(e.g. '0.5,1.0')"
            ) from None
        if not all(math.isfinite(t) and t >= 0 for t in self.sample_temperatures):
            raise DataError(
                f"task.sample_temperatures={temps!r}: each must be a finite number >= 0 "
                "(0 = greedy)"
            )
        self.prime_ids = self._prime(str(t.sample_prime))
        self._eval: list[Batch] | None = None
        self._baselines: dict[str, float] | None = None

    # -- what the model is -----------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(family="lm", vocab_size=self.vocab.size, extras={"unit": self.vocab.unit})

    @staticmethod
    def vocab_from_dict(d: dict) -> Vocab:
        """Rebuilds the vocab saved with a checkpoint (``task.vocab.to_dict()``)."""
        return Vocab.from_dict(d)

    @property
    def stateful(self) -> bool:
        return self.batching == "tbptt"

    # -- data ------------------------------------------------------------------------------
    def num_chunks(self, split_name: str = "train") -> int:
        """Chunks of ``seq_len`` per stream when ``split_name`` is cut into global-batch rows."""
        return _stream_len(len(self.splits[split_name]), self.global_batch_size) // self.seq_len

    def train_batch(self, step: int) -> Batch:
        train = self.splits["train"]
        if self.batching == "tbptt":
            chunk = int(step) % self.num_chunks("train")
            return self._chunk(train, chunk, reset=chunk == 0)
        rng = rng_for(self.seed, step, 0)  # the global batch; this process keeps its rows
        starts = rng.integers(0, len(train) - self.seq_len, size=self.global_batch_size)
        rows = starts[self._rows()]
        return _window_batch(train, rows, self.seq_len, reset=True)

    def eval_batches(self) -> Sequence[Batch]:
        """The first ``data.eval_batches`` (0 = all) chunks of the val streams; fixed."""
        if self._eval is None:
            self._eval = self._stream_batches("val", self.max_eval_batches)
        return self._eval

    def test_batches(self, max_batches: int = 0) -> list[Batch]:
        """The test split read like the val split (all of it unless ``max_batches``)."""
        return self._stream_batches("test", max_batches) if len(self.splits["test"]) else []

    def _stream_batches(self, split_name: str, max_batches: int) -> list[Batch]:
        n = self.num_chunks(split_name)
        n = min(n, max_batches) if max_batches > 0 else n
        ids = self.splits[split_name]
        return [self._chunk(ids, c, reset=c == 0 or not self.stateful) for c in range(n)]

    def _rows(self) -> np.ndarray:
        return np.arange(self.batch_size) + self.process_index * self.batch_size

    def _chunk(self, ids: np.ndarray, chunk: int, *, reset: bool) -> Batch:
        """Chunk ``chunk`` of this process's contiguous streams over ``ids``."""
        stride = _stream_len(len(ids), self.global_batch_size)
        starts = self._rows() * stride + chunk * self.seq_len
        return _window_batch(ids, starts, self.seq_len, reset=reset)

    def _check_size(self) -> None:
        rows_t = self.global_batch_size * self.seq_len + 1
        need = {"train": rows_t if self.batching == "tbptt" else self.seq_len + 1, "val": rows_t}
        if self.test_fraction > 0:
            need["test"] = rows_t
        n_min = min_corpus_size(need, self.val_fraction, self.test_fraction)
        if len(self.corpus) < n_min:
            raise DataError(
                f"corpus {self.corpus.name!r} has {len(self.corpus)} {self.vocab.unit}s, too "
                f"small: with data.batch_size={self.global_batch_size}, "
                f"seq_len={self.seq_len}, val_fraction={self.val_fraction} and "
                f"test_fraction={self.test_fraction} it needs at least {n_min} (so that the "
                f"splits hold {', '.join(f'{k} >= {v}' for k, v in need.items())})"
            )

    def _split(self) -> dict[str, np.ndarray]:
        """The corpus's published split when it has one and is read whole, else fractions."""
        standard = standard_split(self.corpus)
        if standard is None:
            return split(self.corpus.ids, self.val_fraction, self.test_fraction)
        sizes = tuple(len(standard[k]) for k in ("train", "val", "test"))
        if split_sizes(len(self.corpus), self.val_fraction, self.test_fraction) != sizes:
            log.warning(
                "corpus %s read whole: using its published split %s (train, val, test), not "
                "data.val_fraction=%s and data.test_fraction=%s",
                self.corpus.name,
                sizes,
                self.val_fraction,
                self.test_fraction,
            )
        return standard

    def _prime(self, prime: str) -> np.ndarray:
        prime = self.vocab.prime(prime)
        try:
            return self.vocab.encode(prime)
        except ValueError as e:
            raise DataError(f"task.sample_prime {prime!r}: {e}") from None

    # -- loss and metrics (inside jit) ----------------------------------------------------
    def initial_carry(self, model: Any, batch_size: int) -> Any:
        return model.initial_carry(batch_size)

    def loss(self, model: Any, batch: Arrays, *, carry: Any = None, rng: Key = None) -> LossOut:
        inputs, targets = batch["inputs"], batch["targets"]
        init = model.initial_carry(inputs.shape[0])
        start = init if carry is None else _reset_rows(carry, init, batch["reset"])
        logits, aux = model(inputs, carry=start, train=rng is not None, rng=rng)
        logits = logits.astype(jnp.float32)
        nll = cross_entropy(logits, targets)
        count = jnp.asarray(nll.size, jnp.float32)
        correct = (jnp.argmax(logits, -1) == targets).astype(jnp.float32)
        metrics = {"loss": (nll.sum(), count), "accuracy": (correct.sum(), count)}
        if self.stateful:
            new = jax.tree.map(
                lambda c, s: jax.lax.stop_gradient(c).astype(s.dtype), aux["final_carry"], start
            )
        else:
            new = carry
        return nll.mean(), (metrics, new)

    # -- reporting (host side) -------------------------------------------------------------
    def summarize(self, means: dict[str, float], prefix: str) -> dict[str, float]:
        if f"{prefix}loss" not in means:
            return {}
        loss = float(means[f"{prefix}loss"])
        return {
            f"{prefix}bpc": loss / math.log(2),
            f"{prefix}perplexity": math.exp(min(loss, 700.0)),
        }

    def baselines(self) -> dict[str, float]:
        """Val cross-entropy of a unigram model fit on train (add-one), a no-memory baseline."""
        if self._baselines is None:
            counts = np.bincount(self.splits["train"], minlength=self.vocab.size) + 1.0
            logp = np.log(counts / counts.sum())
            xent = float(-logp[self.splits["val"]].mean())
            self._baselines = {"loss": xent, "bpc": xent / math.log(2)}
        return dict(self._baselines)

    def text_samples(self, model: Any, step: int) -> dict[str, str]:
        """Prime + ``sample_length`` sampled characters at each configured temperature."""
        if self.sample_length < 1 or (self.sample_every and step % self.sample_every):
            return {}
        key = jax.random.fold_in(jax.random.PRNGKey(self.seed), step)
        out = {}
        for i, t in enumerate(self.sample_temperatures):
            ids = model.generate(
                self.prime_ids,
                self.sample_length,
                key=jax.random.fold_in(key, i),
                temperature=t,
            )
            text = np.concatenate([self.prime_ids, np.asarray(ids[0], np.int32)])
            out[f"sample/t={t:g}"] = self.vocab.decode(text)
        return out


def _stream_len(n: int, rows: int) -> int:
    """Targets per stream when ``n`` tokens are cut into ``rows`` contiguous streams."""
    return (n - 1) // rows


def _window_batch(ids: np.ndarray, starts: np.ndarray, seq_len: int, *, reset: bool) -> Batch:
    idx = np.asarray(starts, np.int64)[:, None] + np.arange(seq_len + 1)
    window = ids[idx]
    return {
        "inputs": window[:, :-1].astype(np.int32),
        "targets": window[:, 1:].astype(np.int32),
        "reset": np.full((len(starts),), reset, np.bool_),
    }


def _reset_rows(carry: Any, init: Any, reset: Array) -> Any:
    """Rows whose ``reset`` flag is set start again from ``init``."""

    def pick(c: Array, i: Array) -> Array:
        r = jnp.reshape(reset, reset.shape + (1,) * (c.ndim - reset.ndim))
        return jnp.where(r, i, c).astype(c.dtype)

    return jax.tree.map(pick, carry, init)
