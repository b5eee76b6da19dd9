"""The benchmarked workload: a char-LM training step (one-hot input of ``vocab`` symbols ->
recurrent stack -> per-step logits -> mean cross-entropy -> backward -> Adam) and a
forward-only loss, on one fixed batch of random tokens.

Every JAX peer (seqlab's model, stock Flax) runs the same step code here, so the peers
differ only in their model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from seqlab_bench.footprint import xla_memory
from seqlab_bench.timing import timed

PASSES = ("train", "forward")
LOSSES = ("optax", "take")


@dataclass
class Shape:
    """Batch B, length T, hidden size H, layers L and vocabulary of one benchmark."""

    batch: int = 32
    length: int = 100
    hidden: int = 128
    layers: int = 1
    vocab: int = 65


@dataclass
class Peer:
    """A built model: ``train()`` runs one training step and returns its loss (blocking);
    ``forward()`` computes the loss without gradients."""

    name: str
    impl: str
    train: Callable[[], float]
    forward: Callable[[], float]
    first_call_s: dict[str, float]
    compile_s: dict[str, float | None]
    xla: dict[str, dict[str, float]]

    @property
    def label(self) -> str:
        return self.name if self.impl in ("", "-") else f"{self.name}-{self.impl}"


def make_tokens(shape: Shape, seed: int = 0) -> np.ndarray:
    """(B, T+1) random token ids: inputs are [:, :-1], targets [:, 1:]."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, shape.vocab, (shape.batch, shape.length + 1)).astype(np.int32)


def cross_entropy(logits: Any, labels: Any, kind: str = "take") -> Any:
    """Mean softmax cross-entropy of integer labels, two ways with the same value:

    - ``take``: ``seqlab.tasks.base.cross_entropy`` (what seqlab's tasks use),
      ``logsumexp - take_along_axis(...)[..., 0]``; compile time independent of T.
    - ``optax``: ``optax.softmax_cross_entropy_with_integer_labels``. Its ``take(0)`` of a
      size-1 axis transposes to a scatter of constants, which XLA constant-folds at compile
      time in O(B*T): +3.5 s of compile at B*T = 320k.
    """
    import optax

    from seqlab.tasks.base import cross_entropy as take

    if kind == "optax":
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
    if kind == "take":
        return take(logits, labels).mean()
    raise ValueError(f"unknown loss {kind!r}; choose optax or take")


def lm_step_fns(
    model: Any, apply: Callable[[Any, Any], Any], lr: float, loss: str = "take"
) -> tuple[Any, ...]:
    """(loss_fn(p, x, y), train_step(p, o, x, y) -> (p, o, loss), params, opt_state) for a
    char-LM: mean softmax cross-entropy of per-step logits, Adam on the ``nnx.Param`` leaves."""
    import jax
    import optax
    from flax import nnx

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = optax.adam(lr)

    def loss_fn(p, x, y):
        return cross_entropy(apply(nnx.merge(graphdef, p, rest), x), y, loss)

    def train_step(p, o, x, y):
        loss, g = jax.value_and_grad(loss_fn)(p, x, y)
        updates, o = tx.update(g, o, p)
        return optax.apply_updates(p, updates), o, loss

    return loss_fn, train_step, params, tx.init(params)


def jax_peer(
    name: str,
    impl: str,
    model: Any,
    apply: Callable[[Any, Any], Any],
    tokens: np.ndarray,
    lr: float,
    modes: Sequence[str] = PASSES,
) -> Peer:
    """Compiles the step (and/or forward loss) of a JAX model, timing the compile, and runs
    each once: the ``Peer`` whose calls are then timed."""
    import jax
    import jax.numpy as jnp

    loss_fn, train_step, params, opt_state = lm_step_fns(model, apply, lr)
    x, y = jnp.asarray(tokens[:, :-1]), jnp.asarray(tokens[:, 1:])
    state = [params, opt_state]
    specs = {
        "train": (train_step, (params, opt_state, x, y), (0, 1)),
        "forward": (loss_fn, (params, x, y), ()),
    }
    compiled: dict[str, Any] = {}
    compile_s: dict[str, float | None] = {}
    for mode in modes:
        fn, args, donate = specs[mode]
        jitted = jax.jit(fn, donate_argnums=donate)
        compiled[mode], compile_s[mode], _ = timed(lambda j=jitted, a=args: j.lower(*a).compile())

    def train() -> float:
        p, o, loss = compiled["train"](state[0], state[1], x, y)
        state[0], state[1] = p, o
        return float(loss)

    def forward() -> float:
        return float(compiled["forward"](state[0], x, y))

    run = {"train": train, "forward": forward}
    first = {m: compile_s[m] + timed(run[m])[1] for m in modes}
    xla = {m: xla_memory(c) for m, c in compiled.items()}
    return Peer(name, impl, train, forward, first, compile_s, xla)
