r"""State tracking: parity of T bits, and the product of T permutations in S3 (6 classes),
many-to-one by default (seqlab/tasks/state_tracking.py).

Run::

    seqlab train --config=configs/state_tracking.py:parity,cell=gru,T=16 --workdir=/tmp/parity

Chance is accuracy 1/2 (parity) and 1/6 (s3), loss log 2 and log 6 (``baseline/*`` in
metrics.jsonl). The claim to test (Merrill, Petty & Sabharwal 2024, "The Illusion of State
in State-Space Models"; Grazzi et al. 2025 for parity): one layer of a nonlinear RNN (rnn,
lstm, gru) solves both at any T, while fixed-depth SSMs and diagonal linear recurrences with
gates in [0, 1] (here lru, mingru, minlstm, rglru) do not; the sweep below compares them.

Expected (measured on a 2-core AMD EPYC CPU VM, jax 0.10.2, shared with other jobs at load
average 8-10): the defaults (1-layer GRU, 64 units, Adam 1e-2, clip 1, batch 64) sit at chance
on parity at T=16 for ~3500 steps, then jump: eval accuracy 1.0 at step 3750 (33 s wall,
7 s of it compiling) with the command above; the full 8000 steps take 65 s. Seeds 1 and 2
jumped at steps 4750 and 5000. A final label alone is a needle-in-a-haystack signal (every
proper subset of the bits is uncorrelated with it), so many-to-one s3 at T=16 stayed at
chance for 8000 steps (longer T should plateau longer; not measured). With ``per_step`` (a
label per prefix, as in Merrill et al.'s experiments) the GRU reaches 100% by step 250 on
parity and by step 500 on s3 at T=64, while a 1-layer minGRU stays at 50-53% per-step parity
accuracy for 1500 steps.

The 2024-25 recurrences sit in the sweep too (mamba, slstm, mlstm, deltanet, gated_deltanet);
``--config.model.negative_eigenvalues=True`` widens the transitions of mamba, deltanet,
gated_deltanet, mingru and rglru from [0, 1] to [-1, 1] (Grazzi et al. 2025). Their length-
generalization protocol (train on 3-40 bits, test on 40-256) is
experiments/state_tracking/length_generalization.py: measured there (1,000 steps, 2 x 32
units, three seeds, load ~4-20 on 2 cores), scaled test accuracy mamba 0.000/0.000/0.020 ->
0.848/0.895/1.000 and deltanet 0.004/0.000/0.043 -> 1.000/0.000/1.000 with negative
eigenvalues; slstm 1.000/1.000.

Variants (comma-separated after ``:``): the task (``parity``, the default, or ``s3``; also
``task=s3``), a cell (``cell=lstm`` or ``lstm``), ``T=<int>`` (sequence length, default 16),
``per_step`` (label every step with the running product: a per-step ``LanguageModel``, metrics
``accuracy`` over all steps and ``final_accuracy`` at the last), ``runlocal`` (tiny, a few
steps in seconds, for tests)::

    seqlab train --config=configs/state_tracking.py:s3,lstm,T=32,per_step --workdir=/tmp/s3
    seqlab sweep --config=configs/state_tracking.py:s3 --workdir=/tmp/s3_sweep --parallel 2
"""

from __future__ import annotations

from collections.abc import Iterator

from ml_collections import ConfigDict

from seqlab.config import parse_arg, runlocal
from seqlab.tasks import task_config
from seqlab.tools.sweep import cells_by_lengths

TASKS = ("parity", "s3")
# the nonlinear cells, which can track state, and the linear recurrences, which should not
CELLS = ("rnn", "lstm", "gru", "lru", "mingru", "minlstm", "rglru")
CELLS += ("mamba", "slstm", "mlstm", "deltanet", "gated_deltanet")  # the 2024-25 recurrences
# causal attention: a pre-norm Transformer block; model.window (256) covers every length here
CELLS += ("attention",)
LENGTHS = (16, 32, 64, 128)


def get_config(arg: str | None = None) -> ConfigDict:
    words = [p.strip() for p in (arg or "").split(",")]
    arg = ",".join(f"task={w}" if w in TASKS else w for w in words)  # ":s3" -> task=s3
    a = parse_arg(arg, task="parity", cell="gru", T=16, per_step=False, runlocal=False)
    if a.task not in TASKS:
        raise ValueError(f"unknown state_tracking task {a.task!r}; choose one of {TASKS}")
    c = task_config(a.task)
    c.task.per_step = a.per_step
    c.task.eval_batches = 8  # fixed eval set, drawn from its own stream
    c.task.eval_batch_size = 128
    c.task.eval_seed = 0  # the eval set does not change with the training seed

    c.data.batch_size = 64
    c.data.seq_len = a.T

    c.model.cell = a.cell
    c.model.hidden_size = 64
    c.model.num_layers = 1
    c.model.input_kind = "onehot"
    c.model.readout = "last"  # many-to-one; per_step uses the per-step LanguageModel

    c.optim.name = "adam"
    c.optim.learning_rate = 1e-2
    c.optim.clip = "global_norm"
    c.optim.clip_value = 1.0

    c.train.num_steps = 8000
    c.train.log_every = 50
    c.train.eval_every = 250
    c.train.checkpoint_every = 1000
    if a.runlocal:
        runlocal(c, steps=10)
        c.data.seq_len = min(a.T, 8)
        c.model.hidden_size = 16
    return c


def get_sweep(arg: str | None = None) -> Iterator[dict]:
    """Cells x sequence lengths; ``arg`` narrows it, e.g. ``cells=gru+mingru,lengths=16+64``."""
    return cells_by_lengths(arg, CELLS, LENGTHS)


def get_search_space(arg: str | None = None) -> dict:
    """What ``seqlab tune`` searches: the learning rate log-uniform and the gradient clip
    (the budget question of S3 at long T is a tuning question first)."""
    del arg  # the same space for every variant
    return {
        "optim.learning_rate": ("log", 1e-4, 3e-2),
        "optim.clip_value": ("log", 0.25, 10.0),
    }
