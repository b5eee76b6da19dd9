r"""Content-dependent memory: selective copying (Gu & Dao 2023, "Mamba", section 4.1.1; Feng et
al. 2024, "Were RNNs All We Needed?") and associative recall (Ba et al. 2016; Fu et al. 2023,
"H3"; Arora et al. 2023, "Zoology") (seqlab/tasks/selective.py).

Run::

    seqlab train --config=configs/selective.py:selective_copy,cell=gru,T=64 --workdir=/tmp/sc
    seqlab train --config=configs/selective.py:associative_recall,gru --workdir=/tmp/ar

``selective_copy``: T context steps of noise hiding 8 data tokens (vocabulary 8) at random
positions, then 8 markers at which the model writes the data tokens back in order (per-step
logits, scored at the markers only). Chance accuracy 1/8, loss log 8. The paper's setting is
T=4096 with 16 tokens from a vocabulary of 16 (the task's own defaults; set
``--config.task.num_memorize=16 --config.task.vocab=16``).
``associative_recall``: 8 key-value pairs (16 keys, 16 values), blanks up to length T, then a
query key; predict its value (many-to-one). Chance accuracy 1/16, loss log 16; guessing one of
the values that occurred, without their keys, scores (1 + 7/16)/8 = 0.18.

The published claims: selective (input-dependent) recurrences solve selective copying while
time-invariant ones do not (Gu & Dao 2023, Table 1: S4 without gating 18.3%, Mamba's S6
99.8%); minGRU and minLSTM solve it with 3 stacked layers but not with 1 (Feng et al. 2024);
associative recall separates gated convolutions and recurrences from attention as the number
of pairs grows past the state size (Arora et al. 2023).

Expected (measured on a 2-core AMD EPYC CPU VM, jax 0.10.2, shared with other jobs at load
average ~9; defaults: 1-layer GRU, 128 units, Adam 3e-3, clip 1, batch 64): selective_copy at
T=64 reaches 94% eval accuracy at step 1000 and 99.4% at step 2000 (158 s wall). On
associative_recall (T=32) the same GRU reaches 27% by step 1000 and stays there through step
5000 (113 s): above the 18% of knowing only which values occurred, far from solving it; an
LSTM (25% at 2000 steps), Adam 1e-3 (28%) and 4 pairs (33%, against 30% for the values alone)
did no better in 2000 steps. What solves it on a CPU budget is TO BE MEASURED.

Mamba (``cell=mamba``, S6 in its block) against the time-invariant LRU, Gu & Dao's Table 1
contrast on a CPU budget: experiments/selective_copy/run.py.

Variants (comma-separated after ``:``): the task (``selective_copy``, the default, or
``associative_recall``; also ``task=...``), a cell (``cell=lstm`` or ``lstm``), ``T=<int>``
(the context length for selective_copy, default 64; the whole sequence for
associative_recall, default 32), ``layers=<int>`` (stacked layers, default 1), ``runlocal``
(tiny, a few steps in seconds, for tests)::

    seqlab train --config=configs/selective.py:mingru,layers=3 --workdir=/tmp/sc_mingru
    seqlab sweep --config=configs/selective.py:associative_recall --workdir=/tmp/ar_sweep
"""

from __future__ import annotations

from collections.abc import Iterator

from ml_collections import ConfigDict

from seqlab.config import parse_arg, runlocal
from seqlab.tasks import task_config
from seqlab.tools.sweep import cells_by_lengths

TASKS = ("selective_copy", "associative_recall")
CELLS = ("rnn", "lstm", "gru", "lru", "mingru", "minlstm", "rglru")
CELLS += ("mamba", "slstm", "mlstm", "deltanet", "gated_deltanet")  # the 2024-25 recurrences
LENGTHS = (32, 64, 128, 256)
DEFAULT_T = {"selective_copy": 64, "associative_recall": 32}  # when the arg gives no T


def get_config(arg: str | None = None) -> ConfigDict:
    words = [p.strip() for p in (arg or "").split(",")]
    arg = ",".join(f"task={w}" if w in TASKS else w for w in words)  # ":associative_recall"
    a = parse_arg(arg, task="selective_copy", cell="gru", T=0, layers=1, runlocal=False)
    if a.task not in TASKS:
        raise ValueError(f"unknown selective task {a.task!r}; choose one of {TASKS}")
    c = task_config(a.task)
    if a.task == "selective_copy":
        c.task.num_memorize = 8
        c.task.vocab = 8
    else:
        c.task.num_pairs = 8
        c.task.num_keys = 16
        c.task.num_values = 16
    c.task.eval_batches = 8  # fixed eval set, drawn from its own stream
    c.task.eval_batch_size = 128
    c.task.eval_seed = 0  # the eval set does not change with the training seed

    c.data.batch_size = 64
    c.data.seq_len = a.T or DEFAULT_T[a.task]

    c.model.cell = a.cell
    c.model.hidden_size = 128
    c.model.num_layers = a.layers
    c.model.input_kind = "onehot"
    c.model.readout = "last"  # associative_recall; selective_copy is a per-step LanguageModel

    c.optim.name = "adam"
    c.optim.learning_rate = 3e-3
    c.optim.clip = "global_norm"
    c.optim.clip_value = 1.0

    c.train.num_steps = 3000
    c.train.log_every = 50
    c.train.eval_every = 250
    c.train.checkpoint_every = 1000
    if a.runlocal:
        runlocal(c, steps=10)
        c.data.seq_len = min(c.data.seq_len, 12)
        if a.task == "selective_copy":
            c.task.num_memorize = 3
        else:
            c.task.num_pairs = 3
        c.model.hidden_size = 16
    return c


def get_sweep(arg: str | None = None) -> Iterator[dict]:
    """Cells x sequence lengths; ``arg`` narrows it, e.g. ``cells=gru+mingru,lengths=64+256``."""
    return cells_by_lengths(arg, CELLS, LENGTHS)


def get_search_space(arg: str | None = None) -> dict:
    """What ``seqlab tune`` searches: the learning rate log-uniform and the gradient clip
    (the GRU's associative-recall plateau: a recipe, or a limit?)."""
    del arg  # the same space for every variant
    return {
        "optim.learning_rate": ("log", 1e-4, 3e-2),
        "optim.clip_value": ("log", 0.25, 10.0),
    }
