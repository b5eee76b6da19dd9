r"""Character-level LSTM language model on tiny Shakespeare (Karpathy's char-rnn blog post).

A 2-layer LSTM with 256 hidden units and one-hot inputs (the blog's model, scaled to a CPU),
trained with Adam (peak 6e-3, 100 warmup steps, cosine decay to 5% of it) and global-norm
clipping 5 on batches of 64 windows x 100 characters at random offsets (nanoGPT style).
char-rnn's own recipe is two overrides away: ``batching=tbptt`` (stateful truncated BPTT
over 64 contiguous streams) and ``--config.model.init=char_rnn`` (uniform +-0.08); measured
here, both start slower (eval loss after 400 steps: tbptt 1.83 vs random 1.80 at lr 4e-3;
char_rnn init 2.02 vs default 1.92 at lr 2e-3).

Run (the corpus is downloaded once to ``$SEQLAB_DATA_DIR``, default ``~/.cache/seqlab``)::

    seqlab train --config=configs/charlm.py --workdir=/tmp/charlm

Measured (``python experiments/charlm_shakespeare/run.py``: this config with
``train.num_steps=1800`` and a 10-minute limit, on this project's 2-core CPU, 2026-12-02,
alone on the machine): the limit stopped it at step 1,360, eval (val) loss 1.465 nats/char,
test 1.607, against a 5-gram's 1.795; samples at temperature 0.5 have speaker names, line
breaks and verse. See experiments/charlm_shakespeare/results.md. Against a 40-line PyTorch
script on the same batches (experiments/charlm_shakespeare/time_to_quality.md, 600 steps):
val 1.521 vs 1.555 at equal steps, 1.555 vs 1.555 at equal wall time; before
``model.onehot_fan_in=1`` this config reached 1.752.

nanoGPT's CPU configuration (``:nanogpt_cpu``): a 4-layer, 4-head, width-128 causal
Transformer (``model.cell=attention``, rotary positions) on windows of 64 characters, batch 12,
2,000 steps of AdamW (lr 1e-3, 100 warmup steps, cosine to 1e-4, betas 0.9/0.99, weight
decay 0.1, clip 1.0), no dropout, on nanoGPT's split (the first 90% train, the last 10% val).
nanoGPT's README reports val loss ~1.88 for it (karpathy/nanoGPT, "I only have a macbook");
measured: experiments/charlm_shakespeare/results.md (``nanogpt.py``).

Variants (comma-separated after ``:``): a mixer name (``:gru``, ``:rnn``, ``:attention``;
attention's ``model.window`` is set to ``data.seq_len``), ``runlocal`` (tiny,
seconds, for tests and laptops), ``corpus=python_stdlib`` or ``corpus=file:/path/to.txt``,
``batching=tbptt`` (char-rnn's stateful truncated BPTT instead of random windows)::

    seqlab train --config=configs/charlm.py:gru,runlocal --workdir=/tmp/charlm_test
"""

from __future__ import annotations

from collections.abc import Iterator

from ml_collections import ConfigDict

from seqlab.config import parse_arg, runlocal
from seqlab.tasks import task_config

CELLS = ("lstm", "gru", "rnn")
LAYERS = (1, 2, 3)


def get_config(arg: str | None = None) -> ConfigDict:
    a = parse_arg(
        arg,
        cell="lstm",
        runlocal=False,
        nanogpt_cpu=False,
        corpus="tinyshakespeare",
        batching="random",
    )
    c = task_config("charlm")
    c.task.sample_every = 0  # 0: at every eval; else only on steps divisible by it
    c.task.sample_length = 500
    c.task.sample_temperatures = "0.5,1.0"
    c.task.sample_prime = ""  # "" = a newline (or the corpus's first character)

    c.data.corpus = a.corpus  # tinyshakespeare | python_stdlib | file:PATH
    c.data.unit = "char"  # char | byte
    c.data.batching = a.batching  # random | tbptt
    c.data.batch_size = 64
    c.data.seq_len = 100
    c.data.val_fraction = 0.05
    c.data.test_fraction = 0.05
    c.data.max_chars = 0  # 0 = the whole corpus
    c.task.eval_batches = 0  # 0 = the whole val split

    c.model.cell = a.cell
    c.model.hidden_size = 256
    c.model.num_layers = 2
    c.model.input_kind = "onehot"
    # the one-hot rows as unit-variance embeddings (LeCun with the one active input as the
    # fan-in), not Flax's 1/sqrt(65): val after 600 steps 1.752 -> 1.515
    # (experiments/charlm_shakespeare/time_to_quality.md)
    c.model.onehot_fan_in = 1
    c.model.init = "default"  # or char_rnn (uniform +-0.08): slower to start here
    c.model.forget_bias = 1.0

    c.optim.name = "adam"
    c.optim.learning_rate = 6e-3
    c.optim.schedule = "warmup_cosine"
    c.optim.warmup_steps = 100
    c.optim.end_lr_factor = 0.05
    c.optim.clip = "global_norm"
    c.optim.clip_value = 5.0

    c.train.num_steps = 5000
    c.train.log_every = 50
    c.train.eval_every = 250
    c.train.checkpoint_every = 500
    if a.nanogpt_cpu:
        nanogpt_cpu(c)
    if a.runlocal:
        runlocal(c)
        c.data.seq_len = 32
        c.data.max_chars = 40_000
        c.model.hidden_size = 32
        c.model.num_layers = 1
        c.task.sample_length = 40
        c.optim.warmup_steps = 2
    if c.model.cell == "attention":  # the key/value window: the trained context
        c.model.window = c.data.seq_len
    return c


def nanogpt_cpu(c: ConfigDict) -> None:
    """nanoGPT's CPU command for shakespeare_char (its README): --block_size=64
    --batch_size=12 --n_layer=4 --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000
    --dropout=0.0, over config/train_shakespeare_char.py (lr 1e-3, min_lr 1e-4, warmup 100,
    beta2 0.99, weight decay 0.1, grad clip 1.0, eval every 250 steps)."""
    c.model.cell = "attention"
    c.model.num_layers, c.model.num_heads, c.model.hidden_size = 4, 4, 128
    c.model.dropout = 0.0
    c.data.seq_len, c.data.batch_size = 64, 12
    c.data.val_fraction, c.data.test_fraction = 0.1, 0.0  # nanoGPT's 90/10 split
    c.optim.name, c.optim.learning_rate = "adamw", 1e-3
    c.optim.warmup_steps, c.optim.end_lr_factor = 100, 0.1
    c.optim.b2, c.optim.weight_decay = 0.99, 0.1
    c.optim.clip, c.optim.clip_value = "global_norm", 1.0
    c.train.num_steps, c.train.eval_every, c.train.checkpoint_every = 2000, 250, 1000


def get_sweep(arg: str | None = None) -> Iterator[dict]:
    """Cells x depths; ``arg`` narrows it, e.g. ``cells=lstm+gru,layers=1+2``.

    ``params=N`` matches capacity: each point gets the ``model.hidden_size`` whose model has
    the parameter count nearest N for the vocabulary of ``corpus`` (Karpathy, Johnson,
    Fei-Fei 2015, Table 1), e.g. ``params=60000,corpus=python_stdlib`` (and ``max_chars=M``
    when the runs cut the corpus, which can shrink its vocabulary).
    """
    from seqlab.tools.sweep import product

    a = parse_arg(
        arg,
        cells="+".join(CELLS),
        layers="+".join(map(str, LAYERS)),
        params=0,
        corpus="tinyshakespeare",
        max_chars=0,
    )
    from seqlab.cells import mixer_names

    cells = a.cells.split("+")
    for cell in cells:
        if cell not in mixer_names():
            raise ValueError(f"unknown cell {cell!r} in the sweep; choose from {mixer_names()}")
    points = product(**{"model.cell": cells, "model.num_layers": map(int, a.layers.split("+"))})
    base = get_config(f"corpus={a.corpus}")
    points = [  # attention's window: the trained context
        {**p, "model.window": base.data.seq_len} if p["model.cell"] == "attention" else p
        for p in points
    ]
    if not a.params:
        yield from points
        return
    from seqlab.models.build import hidden_size_for
    from seqlab.tasks.base import ModelSpec
    from seqlab.tasks.corpora import load_corpus

    c = get_config(f"corpus={a.corpus}")
    vocab = load_corpus(a.corpus, unit=c.data.unit, max_chars=a.max_chars).vocab
    spec = ModelSpec(family="lm", vocab_size=vocab.size)
    for p in points:
        c.model.cell, c.model.num_layers = p["model.cell"], p["model.num_layers"]
        c.model.window = p.get("model.window", base.model.window)
        yield {**p, "model.hidden_size": hidden_size_for(c.model, spec, a.params)}


def get_search_space(arg: str | None = None) -> dict:
    """What ``seqlab tune`` searches: the learning rate log-uniform (Karpathy, Johnson & Fei-Fei
    2015 cross-validated it per model), dropout and the gradient clip."""
    del arg  # the same space for every variant
    return {
        "optim.learning_rate": ("log", 3e-4, 3e-2),
        "model.dropout": ("float", 0.0, 0.3),
        "optim.clip_value": ("log", 0.25, 10.0),
    }
