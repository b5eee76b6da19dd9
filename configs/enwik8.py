r"""Character-level language modelling on the 100M-symbol benchmarks: enwik8 (the Hutter prize
file, 10^8 bytes of Wikipedia XML, modelled as bytes: 205 distinct values) and text8 (the same
text lower-cased to 27 characters, a-z and space). Both use the published split: the first
90M symbols train, the next 5M validation, the last 5M test. Loss in nats/symbol; ``bpc``
is bits per character (per byte for enwik8).

Run (each zip is downloaded once, sha256-checked and unzipped into ``$SEQLAB_DATA_DIR``,
default ``~/.cache/seqlab``; offline, put ``enwik8.zip`` in ``enwik8/`` or ``text8.zip`` in
``text8/`` there)::

    seqlab train --config=configs/enwik8.py --workdir=/tmp/enwik8
    seqlab train --config=configs/enwik8.py:text8 --workdir=/tmp/text8
    seqlab eval --workdir=/tmp/enwik8 --split test

Published test bpc: enwik8, LSTM 1.67 (Graves 2013), 3-layer AWD-LSTM 1.232 with 47M
parameters (Merity, Keskar & Socher 2018, "An Analysis of Neural Language Modeling at
Multiple Scales"); text8, LSTM 1.43 and batch-normalized LSTM 1.36 (Cooijmans et al. 2016,
"Recurrent Batch Normalization"). Eval during training reads ``task.eval_batches`` batches
of the validation split; ``seqlab eval --split test`` reads the whole test split.

Expected: NOT MEASURED here (the corpora cannot be downloaded on this project's machines, and
the default model is sized for an accelerator).

Variants (comma-separated after ``:``): ``enwik8`` (the default) or ``text8``, a cell
(``cell=gru`` or ``gru``), ``runlocal`` (tiny, a prefix of the corpus, seconds, for tests)::

    seqlab train --config=configs/enwik8.py:text8,gru --workdir=/tmp/text8_gru
    seqlab train --config=configs/enwik8.py:runlocal --workdir=/tmp/enwik8_test
"""

from __future__ import annotations

from collections.abc import Iterator

from ml_collections import ConfigDict

from seqlab.config import parse_arg, runlocal
from seqlab.tasks import task_config

CELLS = ("lstm", "gru", "rnn", "lru", "mingru", "minlstm", "rglru")
LAYERS = (1, 2, 3)


def get_config(arg: str | None = None) -> ConfigDict:
    a = parse_arg(arg, cell="lstm", enwik8=False, text8=False, runlocal=False)
    if a.enwik8 and a.text8:
        raise ValueError("choose one corpus: enwik8 or text8")
    c = task_config("charlm")
    c.data.corpus = "text8" if a.text8 else "enwik8"
    c.data.unit = "char" if a.text8 else "byte"  # enwik8: bytes (UTF-8 text read raw)
    c.data.batching = "random"  # random windows (nanoGPT style)
    c.data.batch_size = 128
    c.data.seq_len = 150
    c.data.val_fraction = 0.05  # = the published 5M / 5M of 100M (used when read whole)
    c.data.test_fraction = 0.05
    c.data.max_chars = 0  # 0 = the whole corpus
    c.task.eval_batches = 100  # of the 5M-symbol val split (0 = all of it: ~260 batches)
    c.task.sample_every = 0
    c.task.sample_length = 300
    c.task.sample_temperatures = "0.5,1.0"
    c.task.sample_prime = ""

    c.model.cell = a.cell
    c.model.hidden_size = 1024
    c.model.num_layers = 2
    c.model.input_kind = "embed"
    c.model.embed_dim = 256

    c.optim.name = "adam"
    c.optim.learning_rate = 2e-3
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 1000
    c.optim.end_lr_factor = 0.05
    c.optim.clip = "global_norm"
    c.optim.clip_value = 1.0

    c.train.num_steps = 100_000  # 1.9B symbols: ~21 passes over the train split
    c.train.log_every = 200
    c.train.eval_every = 5000
    c.train.checkpoint_every = 5000
    if a.runlocal:
        runlocal(c)
        c.data.seq_len = 32
        c.data.max_chars = 40_000  # a prefix (split by the fractions, not the benchmark)
        c.task.sample_length = 20
        c.model.hidden_size = 32
        c.model.num_layers = 1
        c.model.embed_dim = 16
        c.optim.warmup_steps = 2
    return c


def get_sweep(arg: str | None = None) -> Iterator[dict]:
    """Cells x depths; ``arg`` narrows it, e.g. ``cells=lstm+gru,layers=2+3``."""
    from seqlab.tools.sweep import product

    a = parse_arg(arg, cells="+".join(CELLS), layers="+".join(map(str, LAYERS)))
    cells = a.cells.split("+")
    for cell in cells:
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r} in the sweep; choose from {CELLS}")
    return product(
        **{"model.cell": cells, "model.num_layers": [int(n) for n in a.layers.split("+")]}
    )
