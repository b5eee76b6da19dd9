"""The sequence zoo's other shapes, assembled from seqlab's pieces and trained briefly.

- one-to-many: a class vector, mapped by an ``nnx.Linear`` into the initial carry of a
  ``LanguageModel``, decodes a class-specific token sequence;
- many-to-many with a delay: the output at step t is the input at step t - k, so the model
  must hold k tokens in its state.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from seqlab.models import LanguageModel

BOS = 0
TARGETS = np.array(
    [
        [2, 3, 4, 5, 2, 3],
        [5, 4, 3, 2, 5, 4],
        [3, 3, 5, 5, 2, 2],  # repeats: the next token depends on position, not the input alone
    ]
)
NUM_CLASSES, L = TARGETS.shape
VOCAB, HIDDEN = 6, 16


class ClassConditionedDecoder(nnx.Module):
    """one-to-many: class id -> initial (c, h) of a 1-layer LSTM language model -> tokens."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.lm = LanguageModel(VOCAB, cell="lstm", hidden_size=HIDDEN, rngs=rngs)
        self.to_carry = nnx.Linear(NUM_CLASSES, 2 * HIDDEN, rngs=rngs)

    def initial_carry(self, classes: jax.Array) -> list:
        c, h = jnp.split(self.to_carry(jax.nn.one_hot(classes, NUM_CLASSES)), 2, axis=-1)
        return [(c, jnp.tanh(h))]  # one (c, h) per layer, the LanguageModel's carry layout

    def __call__(self, classes: jax.Array, tgt_in: jax.Array) -> jax.Array:
        """Teacher-forced logits (B, T, V)."""
        logits, _ = self.lm(tgt_in, carry=self.initial_carry(classes))
        return logits

    def greedy(self, classes: jax.Array, length: int) -> jax.Array:
        """Feeds back its own argmax, starting from BOS: (B, length)."""

        def body(state, _):
            carry, tok = state
            carry, logits = self.lm.step(carry, tok)
            tok = jnp.argmax(logits, -1).astype(jnp.int32)
            return (carry, tok), tok

        bos = jnp.full(classes.shape, BOS, jnp.int32)
        _, toks = jax.lax.scan(body, (self.initial_carry(classes), bos), None, length=length)
        return toks.T


def fit(model: nnx.Module, loss_fn, batches, lr: float) -> list[float]:
    opt = nnx.Optimizer(model, optax.adam(lr), wrt=nnx.Param)

    @nnx.jit
    def train_step(model, opt, batch):
        loss, grads = nnx.value_and_grad(loss_fn)(model, batch)
        opt.update(model, grads)
        return loss

    return [float(train_step(model, opt, b)) for b in batches]


def xent(logits: jax.Array, labels: jax.Array) -> jax.Array:
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()


@pytest.mark.slow
def test_one_to_many_class_conditioned_initial_carry():
    model = ClassConditionedDecoder(rngs=nnx.Rngs(0))
    classes = jnp.arange(NUM_CLASSES)
    targets = jnp.asarray(TARGETS)
    tgt_in = jnp.concatenate([jnp.full((NUM_CLASSES, 1), BOS), targets[:, :-1]], 1)
    decode = nnx.jit(lambda m: m.greedy(classes, L))
    assert not np.array_equal(decode(model), TARGETS)  # untrained: not there by luck

    losses = fit(model, lambda m, b: xent(m(classes, tgt_in), targets), [None] * 120, 2e-2)
    assert losses[-1] < 0.05 * losses[0]
    np.testing.assert_array_equal(decode(model), TARGETS)  # each class its own sequence
    # the sequence is chosen by the carry alone: a zero carry forgets the class
    zero = model.lm(tgt_in)[0]
    assert not np.array_equal(np.asarray(jnp.argmax(zero, -1)), TARGETS)


@pytest.mark.slow
def test_many_to_many_with_delay():
    """y_t = x_{t-k}: a LanguageModel whose head reads the input k steps back."""
    k, T, B, V = 2, 12, 32, 4
    model = LanguageModel(V, cell="gru", hidden_size=HIDDEN, rngs=nnx.Rngs(1))

    def loss(m: LanguageModel, x: jax.Array) -> jax.Array:
        return xent(m(x)[0][:, k:], x[:, :-k])

    rng = np.random.default_rng(0)
    batches = [jnp.asarray(rng.integers(0, V, (B, T))) for _ in range(150)]
    losses = fit(model, loss, batches, 2e-2)
    assert losses[-1] < 0.1 * losses[0]
    x = jnp.asarray(rng.integers(0, V, (256, T)))  # held out
    pred = jnp.argmax(nnx.jit(lambda m, x: m(x)[0])(model, x), -1)
    acc = float(jnp.mean(pred[:, k:] == x[:, :-k]))
    assert acc > 0.98, acc
