"""The task interface: a task owns its data, its loss and its metrics; the loop owns neither.

The train/eval loop only ever calls these methods, so it has no ``if task == ...`` branches.

Data contract (determinism and exact resume):
- ``train_batch(step)`` is a pure function of (config.seed, step, process_index): the same
  arguments give the same NumPy arrays, so a resumed run needs no saved iterator.
- Each process gets its own ``batch_size // process_count`` rows of the global batch.
- ``eval_batches()`` returns the same fixed list every call; like training batches, each
  process holds its own rows of every (global) eval batch.

Loss/metric contract (runs inside ``jax.jit``; ``model`` is a live NNX module):
- ``loss(model, batch, carry=..., rng=...) -> (scalar, (metrics, new_carry))``; a key
  ``rng`` means training (dropout on), none means evaluation.
- metrics are ``{name: (sum, count)}`` pairs of scalars so they merge across batches,
  devices and hosts by adding; the loop reports ``sum / count``.
- ``carry`` is ``None`` for stateless tasks. Stateful ones (char-rnn's truncated BPTT) get
  back what they returned, and reset it themselves when a batch says so.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from seqlab.errors import DataError

Array = jax.Array
Batch = dict[str, np.ndarray]  # host side: NumPy arrays by name
Arrays = dict[str, Array]  # the same batch on device, inside jit
Metrics = dict[str, tuple[Array, Array]]
Key = Array | None  # a PRNG key: training (dropout on) when given, evaluation when None
LossOut = tuple[Array, tuple[Metrics, Any]]


def cross_entropy(logits: Array, labels: Array) -> Array:
    """Per-position softmax cross-entropy of integer ``labels`` (...,) under ``logits`` (..., V).

    The value of ``optax.softmax_cross_entropy_with_integer_labels``, written as
    ``logsumexp - take_along_axis`` because optax's form makes XLA constant-fold a scatter
    element by element at compile time, so compile time grew with B*T (1.6-1.9x from T=100
    to T=10,000; docs/BENCHMARKS.md). This one compiles in the same time at any T.
    """
    picked = jnp.take_along_axis(logits, labels[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return jax.nn.logsumexp(logits, axis=-1) - picked


@dataclass(frozen=True)
class ModelSpec:
    """What the model builder needs to know from the task.

    family: ``lm`` (LanguageModel), ``classifier`` (SequenceClassifier) or ``seq2seq``.
    input_kind: ``tokens`` or ``features`` (the config's model.input_kind refines tokens
    into onehot/embed).
    """

    family: str
    vocab_size: int = 0  # input vocabulary (tokens) / source vocabulary (seq2seq)
    num_features: int = 0  # for input_kind == "features"
    num_outputs: int = 0  # classifier/regressor head size
    tgt_vocab_size: int = 0  # seq2seq
    input_kind: str = "tokens"
    extras: dict[str, Any] = field(default_factory=dict)


class Task:
    """Base class; subclasses implement the methods that raise NotImplementedError."""

    name: str = "task"
    #: the metric that selects the "best" checkpoint (lower is better unless noted)
    best_metric: str = "eval/loss"
    best_mode: str = "min"
    #: the config keys this class reads beyond ``base_config()``: dotted key -> (default,
    #: meaning). Subclasses add to their parents' (``config_keys``).
    KEYS: dict[str, tuple[Any, str]] = {}

    @classmethod
    def config_keys(cls) -> dict[str, tuple[Any, str]]:
        """Every key this task reads beyond ``base_config()``, parents' first."""
        out: dict[str, tuple[Any, str]] = {}
        for klass in reversed(cls.__mro__):
            out.update(klass.__dict__.get("KEYS", {}))
        return out

    def __init__(self, config: ConfigDict, *, process_index: int = 0, process_count: int = 1):
        self.config = config
        self.seed = int(config.seed)
        self.process_index = process_index
        self.process_count = process_count
        global_bs = int(config.data.batch_size)
        if global_bs % process_count:
            raise DataError(
                f"data.batch_size={global_bs} is not divisible by the {process_count} processes"
            )
        self.global_batch_size = global_bs
        self.batch_size = global_bs // process_count

    # -- what the model is -----------------------------------------------------------------
    @property
    def spec(self) -> ModelSpec:
        raise NotImplementedError

    # -- data ------------------------------------------------------------------------------
    def train_batch(self, step: int) -> Batch:
        raise NotImplementedError

    def eval_batches(self) -> Sequence[Batch]:
        raise NotImplementedError

    def tokens_per_batch(self) -> int:
        """Global tokens (timesteps x examples) in one training batch, for tokens/s."""
        return self.global_batch_size * int(self.config.data.seq_len)

    # -- loss and metrics (inside jit) ----------------------------------------------------
    def initial_carry(self, model: Any, batch_size: int) -> Any:
        """Carry threaded across training (and eval) batches; None for stateless tasks."""
        return None

    def loss(self, model: Any, batch: Arrays, *, carry: Any = None, rng: Key = None) -> LossOut:
        raise NotImplementedError

    def eval_metrics(
        self, model: Any, batch: dict[str, Array], *, carry: Any = None
    ) -> tuple[Metrics, Any]:
        """Metrics on one eval batch (defaults to the loss's metrics, no dropout)."""
        _, (metrics, carry) = self.loss(model, batch, carry=carry)
        return metrics, carry

    # -- reporting (host side) -------------------------------------------------------------
    def summarize(self, means: dict[str, float], prefix: str) -> dict[str, float]:
        """Derived metrics from the means (bits/char, perplexity, baselines). Keys are
        already prefixed (``eval/loss``); return extra prefixed keys."""
        return {}

    def baselines(self) -> dict[str, float]:
        """Chance / no-memory reference values, keyed like the metric they compare with."""
        return {}

    def text_samples(self, model: Any, step: int) -> dict[str, str]:
        """Human-readable outputs logged at eval time (LM samples, decoded examples)."""
        return {}


def rng_for(seed: int, step: int, process_index: int = 0, stream: int = 0) -> np.random.Generator:
    """A NumPy generator that is a pure function of (seed, step, process, stream)."""
    return np.random.default_rng([int(seed), int(stream), int(process_index), int(step)])
