"""``seqlab inspect`` for attention (seqlab/tools/inspect/attention.py): causal, windowed maps
whose rows are distributions, the chosen character's top keys, and the page."""

from __future__ import annotations

import os

import numpy as np
import pytest
from flax import nnx

from seqlab.errors import UsageError
from seqlab.models import LanguageModel
from seqlab.tasks.corpora import Vocab
from seqlab.tools.inspect.attention import attention_maps, attention_page, top_keys


@pytest.fixture(scope="module")
def setup():
    vocab = Vocab.build("to be or not to be\n")
    model = LanguageModel(
        vocab.size,
        cell="attention",
        hidden_size=8,
        num_layers=2,
        cell_kwargs={"num_heads": 2, "window": 5},
        rngs=nnx.Rngs(0),
    )
    return vocab, model, vocab.encode("to be or not to be")


def test_maps_are_causal_windowed_distributions(setup):
    _, model, ids = setup
    maps = attention_maps(model, ids)
    assert len(maps) == 2 and maps[0].shape == (2, len(ids), len(ids))
    for m in maps:
        np.testing.assert_allclose(m.sum(-1), 1.0, rtol=1e-5)
        t, j = np.indices(m.shape[1:])
        assert np.all(m[:, (j > t) | (j <= t - 5)] == 0)  # the future and outside the window


def test_page_and_top_keys(setup, tmp_path):
    vocab, model, ids = setup
    path = attention_page(model, vocab, ids, str(tmp_path), position=7)
    assert os.path.exists(tmp_path / "attention_layer_1.png")
    with open(path, encoding="utf-8") as f:
        assert "head 1:" in f.read()
    best = top_keys(attention_maps(model, ids), list("to be or not to be"), 7)
    assert all(3 <= j <= 7 for layer in best for head in layer for j, _, _ in head)
    with pytest.raises(UsageError, match="--position 99"):
        attention_page(model, vocab, ids, str(tmp_path), position=99)
