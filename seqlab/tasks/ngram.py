"""A character n-gram language model: the baseline the char-LM experiments compare against
(Karpathy, Johnson, Fei-Fei 2015 report n-gram test losses beside the RNNs').

Interpolated absolute discounting: each order's maximum-likelihood estimate gives up a
discount D per distinct continuation to the next lower order, down to a uniform
distribution over the vocabulary, so every character has non-zero probability.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict

from seqlab.errors import DataError


class NGramLM:
    def __init__(self, order: int, discount: float = 0.75):
        if order < 1:
            raise DataError(f"order must be >= 1, got {order}")
        if not 0.0 < discount < 1.0:
            raise DataError(f"discount must be in (0, 1), got {discount}")
        self.order = order
        self.discount = discount
        self.vocab: list[str] = []
        # counts[k][context of length k] = Counter of next characters
        self.counts: list[dict[str, Counter]] = []

    def fit(self, text: str) -> NGramLM:
        self.vocab = sorted(set(text))
        self.counts = [defaultdict(Counter) for _ in range(self.order)]
        for k in range(self.order):
            table = self.counts[k]
            for i in range(k, len(text)):
                table[text[i - k : i]][text[i]] += 1
        self._totals = [{c: (sum(n.values()), len(n)) for c, n in t.items()} for t in self.counts]
        return self

    def prob(self, context: str, char: str) -> float:
        """P(char | the last order-1 characters of context)."""
        p = 1.0 / max(len(self.vocab), 1)
        for k in range(self.order):  # from unigram up to the full order
            if k > len(context):
                break
            ctx = context[len(context) - k :] if k else ""
            total = self._totals[k].get(ctx)
            if total is None:
                continue
            n, distinct = total
            count = self.counts[k][ctx].get(char, 0)
            backoff = self.discount * distinct / n
            p = max(count - self.discount, 0.0) / n + backoff * p
        return p

    def loss(self, text: str, context: str = "") -> float:
        """Mean negative log-likelihood of ``text`` in nats/char (``context`` precedes it)."""
        if not text:
            raise DataError("cannot score empty text")
        full = context + text
        start = len(context)
        nll = 0.0
        for i in range(start, len(full)):
            p = self.prob(full[max(0, i - self.order + 1) : i], full[i])
            nll -= math.log(p) if p > 0 else math.log(1e-12)
        return nll / len(text)
