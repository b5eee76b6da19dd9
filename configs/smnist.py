r"""Sequential MNIST (Le, Jaitly & Hinton 2015): each 28x28 digit read one pixel per step (784
steps, pixels in [0, 1]) and classified from the last state; ``:permuted`` reads the pixels
in one fixed random order (pMNIST, Arjovsky, Shah & Bengio 2016), a function of
``task.permute_seed`` (saved in the run's config.json). 60,000 train / 10,000 test images,
downloaded once (sha256-checked) into ``$SEQLAB_DATA_DIR/mnist`` (default
``~/.cache/seqlab``); offline, put the four ``*-ubyte.gz`` files there yourself.

Run::

    seqlab train --config=configs/smnist.py --workdir=/tmp/smnist
    seqlab train --config=configs/smnist.py:permuted --workdir=/tmp/pmnist

Published test accuracy (chance 10%): Le et al. 2015, IRNN 97% (sMNIST) / 82% (pMNIST), with
an LSTM at 65% / 36% in the same paper; tuned LSTMs reach ~98% / ~88-90% (Arjovsky et al.
2016: LSTM 98.2% / 88%, uRNN 95.1% / 91.4%).

Expected: NOT MEASURED here (784 sequential steps per example is a GPU job; this project's
2-core CPU gets through a few steps a second at the default size).

Variants (comma-separated after ``:``): ``permuted``, a cell (``cell=irnn`` or ``irnn``;
``lru``, ``mingru``, ... as in long_range.py), ``pixels=<p>`` (pixels per step; 28 = row by
row, 28 steps), ``runlocal`` (tiny, a few steps in seconds, for tests)::

    seqlab train --config=configs/smnist.py:irnn,permuted --workdir=/tmp/pmnist_irnn
    seqlab train --config=configs/smnist.py:pixels=28 --workdir=/tmp/rows
"""

from __future__ import annotations

from collections.abc import Iterator

from ml_collections import ConfigDict

from seqlab.config import parse_arg, runlocal
from seqlab.tasks import task_config

# the classic nonlinear cells and the linear recurrences (parallel scan, residual blocks)
CELLS = ("rnn", "irnn", "lstm", "gru", "mgu", "lru", "mingru", "minlstm", "rglru")


def get_config(arg: str | None = None) -> ConfigDict:
    a = parse_arg(arg, cell="lstm", permuted=False, pixels=1, runlocal=False)
    if a.pixels < 1 or 784 % a.pixels:
        raise ValueError(f"pixels={a.pixels} does not divide 784; try 1, 7, 16, 28 or 49")
    c = task_config("smnist")
    c.task.permute = a.permuted
    c.task.permute_seed = 0  # pMNIST's pixel order: a fixed function of this seed
    c.task.pixels_per_step = a.pixels  # 1 = 784 steps; 28 = row by row
    c.task.eval_batches = 0  # 0 = the whole test split (10,000 images)
    c.task.eval_batch_size = 1000

    c.data.batch_size = 100
    c.data.seq_len = 784 // a.pixels  # must match (the task checks it)

    c.model.cell = a.cell
    c.model.hidden_size = 128
    c.model.num_layers = 1
    c.model.readout = "last"

    c.optim.name = "adam"
    c.optim.learning_rate = 1e-3
    c.optim.clip = "global_norm"
    c.optim.clip_value = 1.0

    c.train.num_steps = 30_000  # 50 epochs of 60,000 images
    c.train.log_every = 100
    c.train.eval_every = 2000
    c.train.checkpoint_every = 2000
    if a.runlocal:
        runlocal(c)
        c.task.pixels_per_step = 16  # 49 steps: seconds, not minutes
        c.data.seq_len = 49
        c.task.eval_batch_size = 16
        c.model.hidden_size = 16
    return c


def get_sweep(arg: str | None = None) -> Iterator[dict]:
    """Cells x (sequential, permuted); ``arg`` narrows it, e.g. ``cells=lstm+irnn,permute=1``
    (``permute=0+1`` is both)."""
    from seqlab.tools.sweep import product

    a = parse_arg(arg, cells="+".join(CELLS), permute="0+1")
    cells = a.cells.split("+")
    for cell in cells:
        if cell not in CELLS:
            raise ValueError(f"unknown cell {cell!r} in the sweep; choose from {CELLS}")
    permute = [p.strip() in ("1", "true", "True") for p in a.permute.split("+")]
    return product(**{"model.cell": cells, "task.permute": permute})
