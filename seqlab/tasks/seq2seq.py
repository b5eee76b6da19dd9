"""Sequence-to-sequence toy tasks for the encoder-decoder: integer addition and reversal.

Tokens: PAD 0, BOS 1, EOS 2, then the task's symbols. Sources are right-padded with their
lengths given; targets end with EOS. Training is teacher forced (``tgt_in`` = BOS +
target[:-1]) with a masked token cross-entropy; eval also greedy-decodes and scores exact
sequence matches.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import nnx
from ml_collections import ConfigDict

from seqlab.errors import DataError
from seqlab.tasks.base import Array, Arrays, Batch, Key, LossOut, Metrics, ModelSpec, cross_entropy
from seqlab.tasks.synthetic import SyntheticTask, count, total

PAD, BOS, EOS = 0, 1, 2
NUM_SPECIAL = 3


def pad_pairs(pairs: list[tuple[list[int], list[int]]], src_len: int, tgt_len: int) -> Batch:
    """Token lists (target without EOS) -> padded arrays with EOS, teacher-forcing inputs."""
    n = len(pairs)
    src = np.full((n, src_len), PAD, np.int32)
    tgt_out = np.full((n, tgt_len), PAD, np.int32)
    src_lengths = np.zeros(n, np.int32)
    tgt_lengths = np.zeros(n, np.int32)
    for i, (s, t) in enumerate(pairs):
        src[i, : len(s)] = s
        tgt_out[i, : len(t) + 1] = [*t, EOS]
        src_lengths[i], tgt_lengths[i] = len(s), len(t) + 1
    tgt_in = np.concatenate([np.full((n, 1), BOS, np.int32), tgt_out[:, :-1]], axis=1)
    return {
        "src": src,
        "src_lengths": src_lengths,
        "tgt_in": tgt_in,
        "tgt_out": tgt_out,
        "tgt_lengths": tgt_lengths,
    }


class Seq2SeqTask(SyntheticTask):
    """Shared loss/metrics/samples; subclasses define the vocabulary and ``pairs``."""

    vocab_size: int
    max_src_len: int
    max_tgt_len: int  # including EOS

    KEYS = {
        "task.text_samples": (4, "decoded eval examples logged as text at each eval"),
        "model.embed_dim": (64, "source and target embedding width"),
    }

    def __init__(self, config: ConfigDict, **kw: Any):
        super().__init__(config, **kw)
        self.num_text_samples = int(config.task.text_samples)
        # Compiled once, reused at every eval (decoding eagerly re-traces the scan each time).
        self._decode_jit = nnx.jit(self.decode)

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(
            family="seq2seq", vocab_size=self.vocab_size, tgt_vocab_size=self.vocab_size
        )

    def tokens_per_batch(self) -> int:
        return self.global_batch_size * (self.max_src_len + self.max_tgt_len)

    def pairs(self, rng: np.random.Generator, n: int) -> list[tuple[list[int], list[int]]]:
        """``n`` (source tokens, target tokens without EOS)."""
        raise NotImplementedError

    def detokenize(self, tokens: Any) -> str:
        raise NotImplementedError

    def show_source(self, tokens: Any) -> str:
        """The source as a person reads it (undoing any input reversal)."""
        return self.detokenize(tokens)

    def generate(self, rng: np.random.Generator, n: int) -> Batch:
        return pad_pairs(self.pairs(rng, n), self.max_src_len, self.max_tgt_len)

    def loss(self, model: Any, batch: Arrays, *, carry: Any = None, rng: Key = None) -> LossOut:
        logits, _ = model(
            batch["src"],
            batch["tgt_in"],
            src_lengths=batch["src_lengths"],
            tgt_lengths=batch["tgt_lengths"],
            train=rng is not None,
            rng=rng,
        )
        logits = logits.astype(jnp.float32)
        tgt = batch["tgt_out"]
        mask = jnp.arange(tgt.shape[1])[None, :] < batch["tgt_lengths"][:, None]
        ce = jnp.where(mask, cross_entropy(logits, tgt), 0.0)
        correct = mask & (jnp.argmax(logits, -1) == tgt)
        n_tok = total(mask)
        metrics = {"loss": (total(ce), n_tok), "token_accuracy": (total(correct), n_tok)}
        return total(ce) / jnp.maximum(n_tok, 1.0), (metrics, carry)

    def decode(self, model: Any, batch: dict[str, Array]) -> Array:
        toks, _ = model.greedy_decode(
            batch["src"],
            src_lengths=batch["src_lengths"],
            max_len=self.max_tgt_len,
            bos_id=BOS,
            eos_id=EOS,
            pad_id=PAD,
        )
        return toks

    def eval_metrics(
        self, model: Any, batch: dict[str, Array], *, carry: Any = None
    ) -> tuple[Metrics, Any]:
        _, (metrics, carry) = self.loss(model, batch, carry=carry)
        exact = jnp.all(self.decode(model, batch) == batch["tgt_out"], axis=1)
        metrics["exact_match"] = (total(exact), count(exact.shape[0]))
        return metrics, carry

    def text_samples(self, model: Any, step: int) -> dict[str, str]:
        batch = self.eval_batches()[0]
        k = min(self.num_text_samples, batch["src"].shape[0])
        if k == 0:
            return {}
        part = {name: jnp.asarray(v[:k]) for name, v in batch.items()}
        decode = self._decode_jit if isinstance(model, nnx.Module) else self.decode
        pred = np.asarray(decode(model, part))
        lines = []
        for i in range(k):
            src = self.show_source(batch["src"][i, : batch["src_lengths"][i]])
            tgt = self.detokenize(batch["tgt_out"][i, : batch["tgt_lengths"][i] - 1])
            out = self.detokenize(pred[i][: _eos_cut(pred[i])])
            lines.append(f"{src} -> {out} ({tgt})")
        return {"samples": "\n".join(lines)}


def _eos_cut(tokens: np.ndarray) -> int:
    hits = np.flatnonzero(tokens == EOS)
    return int(hits[0]) if hits.size else len(tokens)


class AdditionTask(Seq2SeqTask):
    """Addition, "123+45" -> "168": each operand has 1..``task.max_digits`` digits (uniform
    count, then uniform value), so short sums are as common as long ones.
    ``task.reverse_source`` feeds the source backwards (Sutskever et al. 2014)."""

    name = "addition"
    CHARS = "0123456789+"

    KEYS = {
        "task.max_digits": (3, "operands have 1..max_digits digits"),
        "task.reverse_source": (False, "feed the source reversed (Sutskever et al. 2014)"),
    }

    def __init__(self, config: ConfigDict, **kw: Any):
        super().__init__(config, **kw)
        self.max_digits = int(config.task.max_digits)
        if self.max_digits < 1:
            raise DataError("addition needs task.max_digits >= 1")
        self.reverse_source = bool(config.task.reverse_source)
        self.vocab_size = NUM_SPECIAL + len(self.CHARS)
        self.max_src_len = 2 * self.max_digits + 1
        self.max_tgt_len = self.max_digits + 2

    def _operands(self, rng: np.random.Generator, n: int) -> np.ndarray:
        digits = rng.integers(1, self.max_digits + 1, size=n)
        lo = np.where(digits == 1, 0, 10 ** (digits - 1))
        return rng.integers(lo, 10**digits)

    def tokenize(self, text: str) -> list[int]:
        return [NUM_SPECIAL + self.CHARS.index(c) for c in text]

    def detokenize(self, tokens: Any) -> str:
        return "".join(
            self.CHARS[t - NUM_SPECIAL] if NUM_SPECIAL <= t < self.vocab_size else "?"
            for t in np.asarray(tokens).tolist()
        )

    def pairs(self, rng: np.random.Generator, n: int) -> list[tuple[list[int], list[int]]]:
        a, b = self._operands(rng, n), self._operands(rng, n)
        out = []
        for x, y in zip(a.tolist(), b.tolist(), strict=True):
            src = self.tokenize(f"{x}+{y}")
            out.append((src[::-1] if self.reverse_source else src, self.tokenize(str(x + y))))
        return out

    def show_source(self, tokens: Any) -> str:
        text = self.detokenize(tokens)
        return text[::-1] if self.reverse_source else text


class ReverseTask(Seq2SeqTask):
    """A random sequence of ``task.vocab`` symbols with length in [``task.min_len``,
    ``task.max_len``] -> the same sequence reversed."""

    name = "reverse"
    LETTERS = "abcdefghijklmnopqrstuvwxyz"

    KEYS = {
        "task.vocab": (10, "distinct symbols"),
        "task.min_len": (1, "shortest sequence"),
        "task.max_len": (10, "longest sequence"),
    }

    def __init__(self, config: ConfigDict, **kw: Any):
        super().__init__(config, **kw)
        self.num_symbols = int(config.task.vocab)
        self.min_len = int(config.task.min_len)
        self.max_len = int(config.task.max_len)
        if self.num_symbols < 2 or not 1 <= self.min_len <= self.max_len:
            raise DataError("reverse needs task.vocab >= 2 and 1 <= task.min_len <= task.max_len")
        self.vocab_size = NUM_SPECIAL + self.num_symbols
        self.max_src_len = self.max_len
        self.max_tgt_len = self.max_len + 1

    def detokenize(self, tokens: Any) -> str:
        ids = [t - NUM_SPECIAL for t in np.asarray(tokens).tolist()]
        if self.num_symbols <= len(self.LETTERS):
            return "".join(self.LETTERS[i] if 0 <= i < self.num_symbols else "?" for i in ids)
        return " ".join(str(i) if 0 <= i < self.num_symbols else "?" for i in ids)

    def pairs(self, rng: np.random.Generator, n: int) -> list[tuple[list[int], list[int]]]:
        lengths = rng.integers(self.min_len, self.max_len + 1, size=n)
        syms = rng.integers(NUM_SPECIAL, self.vocab_size, size=(n, self.max_len))
        return [
            (row[:m].tolist(), row[:m][::-1].tolist())
            for row, m in zip(syms, lengths.tolist(), strict=True)
        ]
