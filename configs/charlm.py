r"""Character-level LSTM language model on tiny Shakespeare (Karpathy's char-rnn blog post).

A 2-layer LSTM with 256 hidden units, one-hot inputs, char-rnn's uniform +-0.08 init and
forget-gate bias 1, trained with Adam 2e-3 and global-norm clipping 5 on batches of 64
streams x 100 characters by stateful truncated BPTT.

Run (the corpus is downloaded once to ``$SEQLAB_DATA_DIR``, default ``~/.cache/seqlab``)::

    seqlab train --config=configs/charlm.py --workdir=/tmp/charlm

Measured (``seqlab train ... --config.train.time_limit_s=600`` on this project's 2-core
CPU, 2026-11-21, partly shared with another job): 1,024 steps in 10 minutes, eval (val) loss
1.71 nats/char, test 1.78 — below a 5-gram's 1.795, but short of the 1.50 target, which needs
more steps than 10 minutes give here (~1.3-2.5 steps/s). Samples at temperature 0.5 already
show speaker names and verse lines. See experiments/charlm_shakespeare/results.md.

Variants (comma-separated after ``:``): a cell name (``:gru``, ``:rnn``), ``runlocal`` (tiny,
seconds, for tests and laptops), ``corpus=python_stdlib`` or ``corpus=file:/path/to.txt``,
``batching=random`` (nanoGPT-style random windows instead of truncated BPTT)::

    seqlab train --config=configs/charlm.py:gru,runlocal --workdir=/tmp/charlm_test
"""

from __future__ import annotations

from collections.abc import Iterator

from ml_collections import ConfigDict

from seqlab.config import base_config, parse_arg

CELLS = ("lstm", "gru", "rnn")
LAYERS = (1, 2, 3)


def get_config(arg: str | None = None) -> ConfigDict:
    a = parse_arg(arg, cell="lstm", runlocal=False, corpus="tinyshakespeare", batching="tbptt")
    c = base_config()
    c.task.name = "charlm"
    c.task.sample_every = 0  # 0: at every eval; else only on steps divisible by it
    c.task.sample_length = 500
    c.task.sample_temperatures = "0.5,1.0"
    c.task.sample_prime = ""  # "" = a newline (or the corpus's first character)

    c.data.corpus = a.corpus  # tinyshakespeare | python_stdlib | file:PATH
    c.data.unit = "char"  # char | byte
    c.data.batching = a.batching  # tbptt | random
    c.data.batch_size = 64
    c.data.seq_len = 100
    c.data.val_fraction = 0.05
    c.data.test_fraction = 0.05
    c.data.max_chars = 0  # 0 = the whole corpus
    c.data.eval_batches = 0  # 0 = the whole val split

    c.model.cell = a.cell
    c.model.hidden_size = 256
    c.model.num_layers = 2
    c.model.input_kind = "onehot"
    c.model.init = "char_rnn"
    c.model.forget_bias = 1.0

    c.optim.name = "adam"
    c.optim.learning_rate = 2e-3
    c.optim.clip = "global_norm"
    c.optim.clip_value = 5.0

    c.train.num_steps = 5000
    c.train.log_every = 50
    c.train.eval_every = 250
    c.train.checkpoint_every = 500
    if a.runlocal:
        c.data.batch_size = 8
        c.data.seq_len = 32
        c.data.max_chars = 40_000
        c.data.eval_batches = 2
        c.model.hidden_size = 32
        c.model.num_layers = 1
        c.task.sample_length = 40
        c.train.num_steps = 20
        c.train.log_every = 5
        c.train.eval_every = 10
        c.train.checkpoint_every = 10
        c.train.progress = False
        c.wandb.mode = "disabled"
    return c


def get_sweep(arg: str | None = None) -> Iterator[dict]:
    """Cells x depths; ``arg`` narrows it, e.g. ``cells=lstm+gru,layers=1+2``."""
    a = parse_arg(arg, cells="+".join(CELLS), layers="+".join(map(str, LAYERS)))
    for cell in a.cells.split("+"):
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r} in the sweep; choose from {CELLS}")
        for layers in a.layers.split("+"):
            yield {"model.cell": cell, "model.num_layers": int(layers)}
