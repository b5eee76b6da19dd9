r"""The gradient-norm probe: how ||dL/dh_t|| falls with distance T - t, per cell and length.

For each cell in ``probe.cells`` and each T in ``probe.lengths`` this trains the adding
problem for ``train.num_steps`` steps and probes g_t for every t in one backward pass at
initialization and every ``probe.every`` steps, then writes ``DIR/probe.json``,
``DIR/grad_vs_distance.png``, ``DIR/grad_heatmap.png`` and ``DIR/probe.md``.

Run (quick mode, a few minutes on a 2-core CPU)::

    seqlab probe --config=configs/probe.py --workdir=runs/probe

Full mode (GPU/TPU: wider model, longer training)::

    seqlab probe --config=configs/probe.py:full --workdir=runs/probe_full

Expected (Bengio et al. 1994; Pascanu et al. 2013): the vanilla RNN's gradient decays
exponentially with distance (a positive decay rate, a gradient horizon well inside T = 1000),
while LSTM and GRU decay far more slowly. See experiments/vanishing_gradients/ for the
measured table.

Variants: ``full``, ``runlocal`` (tiny, for tests), ``cells=rnn+lstm``, ``lengths=10+100``.
"""

from __future__ import annotations

from ml_collections import ConfigDict

from seqlab.config import base_config, parse_arg


def get_config(arg: str | None = None) -> ConfigDict:
    a = parse_arg(
        arg, full=False, runlocal=False, cells="rnn+lstm+gru", lengths="10+50+100+200+500+1000"
    )
    c = base_config()
    c.task.name = "adding"
    c.task.eval_batches = 4
    c.task.eval_batch_size = 64
    c.probe.cells = a.cells.replace("+", ",")
    c.probe.lengths = a.lengths.replace("+", ",")
    c.model.hidden_size = 64
    c.data.batch_size = 32
    c.optim.learning_rate = 1e-3
    c.train.num_steps = 200
    c.probe.every = 100
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
        c.probe.lengths = "5,20"
        c.probe.cells = "rnn,lstm"
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
