r"""The gradient-norm probe: how ||dL/dh_t|| falls with distance T - t, per cell and length.

``get_sweep`` is cells x sequence lengths. Each point trains the adding problem for
``train.num_steps`` steps in its own sub-workdir and probes g_t for every t in one backward
pass at initialization and every ``probe.every`` steps (its ``probe.json``); the report then
merges them into ``DIR/probe.json`` and draws ``DIR/grad_vs_distance.png``,
``DIR/grad_heatmap.png`` and ``DIR/probe.md``.

Run (quick mode, a few minutes on a 2-core CPU)::

    seqlab probe --config=configs/probe.py --workdir=runs/probe

Full mode (GPU/TPU: wider model, longer training)::

    seqlab probe --config=configs/probe.py:full --workdir=runs/probe_full

``seqlab probe`` is ``seqlab sweep`` (same resume rule, ``--parallel N``) followed by
``seqlab report``; it passes the config's ``:ARG`` on to ``get_sweep`` unless ``--sweep`` is
given, so ``seqlab sweep --config=configs/probe.py:runlocal --sweep=runlocal`` then
``seqlab report DIR`` does the same.

Expected (Bengio et al. 1994; Pascanu et al. 2013): every curve is exponential in distance;
the vanilla RNN's gradient vanishes well inside T = 1000 (a positive decay rate, a horizon of
a few dozen steps), and after training LSTM and GRU decay markedly more slowly than the RNN
(quick mode measured 0.34 / 0.13 / 0.11 per step for RNN / LSTM / GRU at T = 1000; at
initialization the GRU decays faster than the RNN). See experiments/vanishing_gradients/ for
the measured table.

The default sweep also probes, at T = 100 and 1000, the memory-horizon variants: ``lstm/chrono``
and ``gru/chrono`` (chrono initialization with T_max = T; a sweep's ``cell/init`` sets
``model.init``) and the linear recurrences ``lru``, ``mingru``, ``minlstm``, ``rglru``.

Variants: ``full``, ``runlocal`` (tiny, for tests: rnn and lstm at T = 5 and 20),
``cells=rnn+lstm/chrono+lru`` and ``lengths=10+100`` (either gives one cells x lengths grid).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from ml_collections import ConfigDict

from seqlab.config import parse_arg
from seqlab.tasks import task_config
from seqlab.tools.sweep import cells_by_lengths

CELLS = ("rnn", "lstm", "gru")
LENGTHS = (10, 50, 100, 200, 500, 1000)
# chrono init (Tallec & Ollivier 2018; T_max = each point's T) and the linear recurrences
VARIANTS = ("lstm/chrono", "gru/chrono", "lru", "mingru", "minlstm", "rglru")
VARIANT_LENGTHS = (100, 1000)
RUNLOCAL_CELLS = ("rnn", "lstm")
RUNLOCAL_LENGTHS = (5, 20)


def _arg(arg: str | None) -> ConfigDict:
    """The variants, shared by get_config and get_sweep (``seqlab probe`` passes one ARG)."""
    return parse_arg(arg, full=False, runlocal=False, cells="", lengths="")


def get_config(arg: str | None = None) -> ConfigDict:
    a = _arg(arg)  # cells= and lengths= narrow the sweep; each point sets cell and seq_len
    c = task_config("adding")
    c.task.eval_batches = 4
    c.task.eval_batch_size = 64
    c.model.hidden_size = 64
    c.data.batch_size = 32
    c.optim.learning_rate = 1e-3
    c.train.num_steps = 200
    c.probe.every = 100  # > 0: every run writes its probe.json
    c.train.log_every = 50
    c.train.eval_every = 200
    c.train.checkpoint_every = 200
    c.train.progress = False
    if a.full:
        c.model.hidden_size = 128
        c.train.num_steps = 2000
        c.probe.every = 250
        c.train.eval_every = 500
        c.train.checkpoint_every = 1000
    if a.runlocal:
        c.model.hidden_size = 8
        c.data.batch_size = 4
        c.task.eval_batches = 1
        c.task.eval_batch_size = 4
        c.train.num_steps = 4
        c.probe.every = 2
        c.train.log_every = 2
        c.train.eval_every = 4
        c.train.checkpoint_every = 4
        c.wandb.mode = "disabled"
    return c


def get_sweep(arg: str | None = None) -> Iterator[dict]:
    """``model.cell`` and ``data.seq_len`` per point: the classic cells at every length and
    the memory-horizon variants (chrono-initialized LSTM/GRU, the linear recurrences) at
    ``VARIANT_LENGTHS``; ``cells=`` / ``lengths=`` give one cells x lengths grid instead."""
    a = _arg(arg)
    if a.runlocal or a.cells or a.lengths:
        cells = a.cells or "+".join(RUNLOCAL_CELLS if a.runlocal else CELLS + VARIANTS)
        lengths = a.lengths or "+".join(map(str, RUNLOCAL_LENGTHS if a.runlocal else LENGTHS))
        return cells_by_lengths(f"cells={cells},lengths={lengths}", _known_cells(), LENGTHS)
    grid = lambda cells, lengths: cells_by_lengths(
        f"cells={'+'.join(cells)},lengths={'+'.join(map(str, lengths))}", _known_cells(), ()
    )
    return itertools.chain(grid(CELLS, LENGTHS), grid(VARIANTS, VARIANT_LENGTHS))


def _known_cells() -> tuple[str, ...]:
    from seqlab.cells import CELLS as REGISTRY

    return tuple(REGISTRY)
