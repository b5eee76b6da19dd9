r"""Long-range memory: the adding problem (Hochreiter & Schmidhuber 1997, Le et al. 2015's
variant) and long-distance recall, many-to-one over T steps.

Run::

    seqlab train --config=configs/long_range.py:task=adding,cell=lstm,T=100 --workdir=/tmp/adding

Expected (measured on a 2-core AMD EPYC CPU VM, jax 0.10.2, shared with other jobs at load
average ~8): the defaults (1-layer LSTM, 64 units, Adam 2e-3, clip 5, batch 32) get the
adding problem at T=100 below eval MSE 0.01 (the no-memory baseline is 1/6 ~ 0.167) after
1500 steps; the full 4000 steps end at eval MSE 3.5e-4 in 82 s wall with the command above.
A separate loop took 1750 / 1250 / 1000 steps (48 / 29 / 26 s) for seeds 0 / 1 / 2.
Recall (``task=recall``, 8 classes, 8 distractors, default T=60): the same LSTM reaches 100%
eval accuracy by step 250 (12 s) at T=60 and 99.9% by step 250 at T=30, but at T=100 it
stays at chance (1/8) for all 4000 steps (1 min 39 s), as does a GRU for 5000 steps.

Variants (comma-separated after ``:``): ``task=adding|recall``, a cell (``cell=gru`` or just
``gru``; ``irnn`` is the ReLU RNN with its identity init; ``lru``, ``mingru``, ``minlstm``,
``rglru`` are the linear recurrences, in residual blocks), ``T=<int>`` (sequence length;
default 100 for adding, 60 for recall), ``runlocal`` (tiny, a few steps in seconds, for tests)::

    seqlab train --config=configs/long_range.py:task=recall,gru,T=200 --workdir=/tmp/recall
    seqlab train --config=configs/long_range.py:runlocal --workdir=/tmp/adding_test
"""

from __future__ import annotations

from collections.abc import Iterator

from ml_collections import ConfigDict

from seqlab.config import parse_arg, runlocal
from seqlab.tasks import task_config
from seqlab.tools.sweep import cells_by_lengths

TASKS = ("adding", "recall")
# the classic nonlinear cells, the linear recurrences (parallel scan, residual blocks) and
# causal attention (a pre-norm Transformer block; its model.window must cover T: a sweep
# over lengths passes --config.model.window, as experiments/long_range_comparison does)
CELLS = ("rnn", "irnn", "lstm", "gru", "mgu", "lru", "mingru", "minlstm", "rglru", "attention")
LENGTHS = (50, 100, 200, 400)
DEFAULT_T = {"adding": 100, "recall": 60}  # when the arg gives no T


def get_config(arg: str | None = None) -> ConfigDict:
    a = parse_arg(arg, task="adding", cell="lstm", T=0, runlocal=False)
    if a.task not in TASKS:
        raise ValueError(f"unknown long_range task {a.task!r}; choose one of {TASKS}")
    c = task_config(a.task)
    c.task.eval_batches = 16  # fixed eval set, drawn from its own stream
    c.task.eval_batch_size = 128
    c.task.eval_seed = 0  # the eval set does not change with the training seed
    if a.task == "recall":
        c.task.num_classes = 8
        c.task.num_distractors = 8

    c.data.batch_size = 32
    c.data.seq_len = a.T or DEFAULT_T[a.task]

    c.model.cell = a.cell
    c.model.hidden_size = 64
    c.model.num_layers = 1
    c.model.input_kind = "onehot"  # recall's tokens; adding's inputs are features anyway
    c.model.readout = "last"

    c.optim.name = "adam"
    c.optim.learning_rate = 2e-3
    c.optim.clip = "global_norm"
    c.optim.clip_value = 5.0

    c.train.num_steps = 4000
    c.train.log_every = 50
    c.train.eval_every = 250
    c.train.checkpoint_every = 1000
    if a.runlocal:
        runlocal(c)
        c.data.seq_len = min(c.data.seq_len, 20)
        c.model.hidden_size = 16
    return c


def get_sweep(arg: str | None = None) -> Iterator[dict]:
    """Cells x sequence lengths; ``arg`` narrows it, e.g. ``cells=lstm+gru,lengths=100+200``."""
    return cells_by_lengths(arg, CELLS, LENGTHS)


def get_search_space(arg: str | None = None) -> dict:
    """What ``seqlab tune`` searches: the learning rate log-uniform (the knob Greff et al.
    2017 found to matter most for recurrent nets) and the gradient clip; the cell, T and the
    task stay as the arg sets them, so each arm of a comparison is tuned alike."""
    del arg  # the same space for every variant
    return {
        "optim.learning_rate": ("log", 1e-4, 3e-2),
        "optim.clip_value": ("log", 0.25, 10.0),
    }
