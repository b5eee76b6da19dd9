"""The one home of every default: the keys every config has, with their meaning.

Library constructors take their keyword defaults from ``DEFAULTS`` and the model builder
reads the config's values, so a default is written once. Task-specific keys are declared by
each task (``Task.config_defaults``) and merged by ``seqlab.tasks.task_config``.

A config file's ``get_config(arg)`` starts from ``base_config()`` and changes what its
family needs; ``arg`` ("gru,runlocal", "cell=gru,T=200") selects variants (big_vision style)
and is parsed by ``parse_arg``. The command line changes single leaves with
``--config.model.hidden_size=512``.
"""

from __future__ import annotations

import difflib
from typing import Any

from ml_collections import ConfigDict, FrozenConfigDict

from seqlab.errors import ConfigError, unknown


def base_config() -> ConfigDict:
    """Every key every config has, with its meaning. A task's own keys (under ``task`` and
    ``data``) are declared by the task (``Task.KEYS``; ``seqlab.tasks.task_config``)."""
    c = ConfigDict()
    c.seed = 0
    c.num_seeds = 1  # >1: train that many independently initialized replicas in one program

    c.task = ConfigDict()
    c.task.name = ""

    c.model = ConfigDict()
    c.model.cell = "lstm"  # a name in seqlab.cells.CELLS
    c.model.hidden_size = 128  # units per layer (and direction)
    c.model.num_layers = 1  # stacked recurrent layers
    c.model.input_kind = "onehot"  # onehot | embed (token inputs)
    c.model.embed_dim = 0  # embedding width when input_kind=embed
    c.model.embed_init = "default"  # default (Flax's) | normal (N(0, 1): nn.Embedding's)
    # input_kind=onehot (ignored otherwise): the fan-in the first layer's LeCun init assumes
    # (init=default/chrono). 0 = the vocabulary
    # (Flax's default for a dense matmul: rows of std 1/sqrt(V)); 1 = the one active input
    # (rows of unit variance, like an embedding; configs/charlm.py, measured faster there)
    c.model.onehot_fan_in = 0
    c.model.dropout = 0.0  # between stacked layers and before the head, training only
    c.model.bidirectional = False  # many-to-one: both directions; seq2seq: the encoder
    c.model.readout = "last"  # many-to-one: last | mean | max
    c.model.attention = False  # seq2seq: additive attention
    c.model.attention_size = 0  # 0 = hidden_size
    # default (each cell's own; the IRNN's is identity) | char_rnn | irnn | chrono (lstm/gru)
    # | torch (PyTorch's nn.LSTM/GRU/RNN init: U(+-1/sqrt(H)), for parity with its scripts)
    c.model.init = "default"
    c.model.forget_bias = 1.0  # lstm: forget-gate bias at init
    c.model.carry_bias = 0.0  # gru: update-gate (keep the old state) bias at init
    c.model.chrono_max_len = 0  # init=chrono (lstm, gru): the longest dependency T_max
    c.model.activation = "tanh"  # cell=rnn only: tanh | relu | identity (irnn is always relu)
    c.model.dtype = ""  # matmul compute dtype ("" = param dtype, or bfloat16)
    c.model.param_dtype = "float32"  # float32 | float64 | bfloat16
    c.model.unroll = 1  # time steps per scan iteration (a schedule: same numbers)
    c.model.remat = False  # recompute each step's activations in the backward (less memory)
    # fast: each cell's hand-written backward (seqlab.recurrence.fast; reverse mode only,
    # faster; a cell without kernels runs scan and says so once); scan: autodiff of lax.scan,
    # for forward-mode or higher-order derivatives; parallel: a linear cell's associative
    # scan; cudnn: the LSTM on cuDNN (seqlab.recurrence.cudnn; CUDA GPU, float32; elsewhere
    # it runs fast and says so once).
    c.model.backend = "fast"
    # Linear recurrences (lru, mingru, minlstm, rglru), backend=fast: 0 = one associative
    # scan over all T steps; N > 0 = sequential over chunks of N steps, parallel inside
    # (memory bounded by the chunk, not by T).
    c.model.chunk_size = 0
    c.model.r_min = 0.9  # lru: |lambda| ring at init; rglru: a^c at init, in [r_min, r_max]
    c.model.r_max = 0.999
    c.model.max_phase = 6.283  # lru: arg(lambda) uniform in [0, max_phase] at init
    # Pre-norm residual blocks (norm -> recurrence -> out -> + x): auto = for linear cells
    # only | none | residual (any cell). out: linear | glu; mlp: add an MLP sub-block.
    c.model.block = "auto"
    # Linear transitions with eigenvalues in [-1, 1] instead of [0, 1] (Grazzi et al. 2025,
    # "Unlocking State-Tracking in Linear RNNs Through Negative Eigenvalues"): mamba's
    # diag(s) -> diag(2s - 1), (gated_)deltanet's I - b k k^T -> I - 2 b k k^T, mingru's
    # 1 - z -> 1 - 2z (no log-space scan then), rglru's a_t -> 2 a_t - 1. Other cells refuse it.
    c.model.negative_eigenvalues = False
    c.model.state_size = 16  # mamba: the SSM state per channel (N)
    # attention, slstm, mlstm, (gated_)deltanet: heads of hidden_size / heads units
    c.model.num_heads = 4
    # attention: the positions a query sees (itself included) and the key/value cache's size;
    # set it to the trained context (data.seq_len). Longer generations slide this window.
    c.model.window = 256
    # attention: rotary (RoFormer, in q/k) | learned (a learned absolute table per layer, as
    # nanoGPT's position embedding; positions < window only)
    c.model.positions = "rotary"
    c.model.block_out = "linear"
    c.model.block_mlp = False

    c.data = ConfigDict()
    c.data.batch_size = 32  # global: split over processes and devices
    c.data.seq_len = 100  # steps per training sequence (T)

    c.optim = ConfigDict()
    c.optim.name = "adam"  # adam | adamw | rmsprop | sgd
    c.optim.learning_rate = 2e-3
    c.optim.schedule = "constant"  # constant | warmup_cosine | exponential
    c.optim.warmup_steps = 0
    # Steps the lr schedule spans (0 = train.num_steps). Set it to extend a run by raising
    # train.num_steps without stretching its schedule (warmup_cosine then holds its end lr).
    c.optim.schedule_steps = 0
    c.optim.end_lr_factor = 0.0  # warmup_cosine: final lr = factor * lr
    c.optim.decay_rate = 0.97  # exponential (char-rnn): lr *= rate every decay_every steps
    c.optim.decay_every = 1000
    c.optim.decay_start = 0  # exponential: steps before the first decay
    c.optim.weight_decay = 0.0
    c.optim.momentum = 0.9  # sgd (0 = plain); rmsprop
    c.optim.b1 = 0.9
    c.optim.b2 = 0.999
    c.optim.clip = "global_norm"  # global_norm | elementwise | none
    c.optim.clip_value = 5.0

    c.train = ConfigDict()
    c.train.num_steps = 1000
    c.train.log_every = 50
    c.train.eval_every = 250
    c.train.checkpoint_every = 500
    c.train.keep_checkpoints = 3
    c.train.on_nonfinite = "stop"  # stop | skip
    c.train.explode_factor = 3.0  # stop when loss > factor x initial loss (0 = off)
    c.train.progress = True
    c.train.time_limit_s = 0.0  # > 0: evaluate, save and stop after this many seconds (per run)

    c.probe = ConfigDict()
    c.probe.every = 0  # steps between gradient-norm probes during training (0 = off)
    # state: ||dL/dh_t|| of each layer's recurrent state (cells); residual: ||dL/dx_t|| of each
    # layer's input, the residual stream (every mixer, attention included): seqlab.run.probe
    c.probe.quantity = "state"

    c.inspect = ConfigDict()
    # steps between `seqlab inspect` pages at evals (seqlab.tools.inspect.log_page: the page
    # in WORKDIR/inspect/, and a wandb.Html panel when W&B is on); 0 = off
    c.inspect.every = 0

    c.wandb = ConfigDict()
    c.wandb.mode = (
        "auto"  # auto (online when logged in, else offline) | online | offline | disabled
    )
    c.wandb.project = "seqlab"
    c.wandb.entity = ""
    c.wandb.group = ""
    c.wandb.name = ""
    c.wandb.tags = ""  # comma-separated
    c.tensorboard = False
    return c


def parse_arg(arg: str | None, **defaults: Any) -> ConfigDict:
    """Parses "gru,runlocal,T=200" into {gru: True, runlocal: True, T: 200} over defaults.

    Bare words set a boolean flag when ``defaults`` has that flag, or else fill the first
    string-valued default whose allowed values are unknown (so ``:gru`` can set ``cell``);
    values are converted to the default's type. Unknown names are one clear error.
    """
    out = dict(defaults)
    for part in [p.strip() for p in (arg or "").split(",") if p.strip()]:
        if "=" in part:
            key, value = part.split("=", 1)
        elif part in defaults and isinstance(defaults[part], bool):
            key, value = part, "True"
        elif "cell" in defaults and not _close_flag(part, defaults):
            key, value = "cell", part
        else:
            key, value = part, "True"
        if key not in defaults:
            raise ConfigError(unknown("config variant", key, defaults))
        default = defaults[key]
        if isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes", "y")
        elif default is None:
            out[key] = value
        else:
            try:
                out[key] = type(default)(value)
            except ValueError:
                raise ConfigError(
                    f"config variant {key}={value!r} is not a {type(default).__name__}"
                ) from None
    return ConfigDict(out)


def _close_flag(word: str, defaults: dict[str, Any]) -> bool:
    """A bare word that looks like a misspelled boolean variant (``runlocl``), not a cell."""
    flags_ = [k for k, v in defaults.items() if isinstance(v, bool)]
    return bool(difflib.get_close_matches(word, flags_, n=1, cutoff=0.8))


#: ``base_config()``, read-only: where library constructors take their defaults from.
DEFAULTS = FrozenConfigDict(base_config())


def runlocal(c: ConfigDict, *, steps: int = 20) -> ConfigDict:
    """The ``runlocal`` variant every config file offers: ``steps`` training steps in seconds
    (batch 8, two eval batches of 8, eval and checkpoint every 10 steps, log every 5, no
    progress bar, W&B off), for tests and smoke checks. Configs shrink the model and the data
    themselves after calling it."""
    c.data.batch_size = 8
    c.task.eval_batches = 2
    if "eval_batch_size" in c.task:
        c.task.eval_batch_size = 8
    c.train.num_steps = steps
    c.train.log_every = 5
    c.train.eval_every = 10
    c.train.checkpoint_every = 10
    c.train.progress = False
    c.wandb.mode = "disabled"
    return c
