"""The character n-gram baseline is a proper distribution and behaves as n-grams should."""

from __future__ import annotations

import math

import numpy as np
import pytest

from seqlab.tasks.ngram import NGramLM

TEXT = "the cat sat on the mat. the dog sat on the log. " * 20


@pytest.mark.parametrize("order", [1, 2, 4])
def test_probabilities_sum_to_one(order):
    lm = NGramLM(order).fit(TEXT)
    for ctx in ["", "th", "the ", "zzz", "og. "]:
        total = sum(lm.prob(ctx, c) for c in lm.vocab)
        assert total == pytest.approx(1.0, abs=1e-9)


def test_unigram_matches_entropy_and_higher_orders_help():
    lm1 = NGramLM(1, discount=1e-6).fit(TEXT)
    counts = np.array([TEXT.count(c) for c in sorted(set(TEXT))], float)
    p = counts / counts.sum()
    assert lm1.loss(TEXT) == pytest.approx(-(p * np.log(p)).sum(), rel=1e-4)
    losses = [NGramLM(n).fit(TEXT).loss(TEXT) for n in (1, 2, 3, 5)]
    assert all(a > b for a, b in zip(losses, losses[1:], strict=False))


def test_unseen_characters_and_errors():
    lm = NGramLM(3).fit("abcabc")
    assert math.isfinite(lm.loss("abx"))  # x is outside the vocab: floor probability
    with pytest.raises(ValueError):
        NGramLM(0)
    with pytest.raises(ValueError):
        lm.loss("")
