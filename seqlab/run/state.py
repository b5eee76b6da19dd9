"""A run's state: the model split into what is trained and what is not, the pure training
step over it, and the metadata every checkpoint carries.

The train state is a plain dict pytree -- step, params (the model's ``nnx.Param`` leaves only:
nothing else is ever given to the optimizer), optimizer state, the carried RNN state for
stateful tasks, and the non-finite bookkeeping -- so it can be vmapped over seeds, sharded
and checkpointed as one tree.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from ml_collections import ConfigDict

from seqlab.models.build import build_model
from seqlab.run.optim import make_optimizer
from seqlab.tasks import Task
from seqlab.tasks.vocab import Vocab

#: the config.model keys that fix the parameters' shapes (a resumed run must match them)
SHAPE_KEYS = (
    "cell",
    "hidden_size",
    "num_layers",
    "input_kind",
    "embed_dim",
    "bidirectional",
    "readout",
    "attention",
    "attention_size",
    "activation",
    "param_dtype",
)


@dataclasses.dataclass(frozen=True)
class ModelDef:
    """A model's structure (``graphdef``) and its untrained state (``rest``: any non-Param
    variables, carried as they are); ``merge(params)`` rebuilds the live module."""

    graphdef: Any
    rest: Any

    def merge(self, params: Any) -> Any:
        return nnx.merge(self.graphdef, params, self.rest)


def split_model(model: nnx.Module) -> tuple[ModelDef, Any]:
    """(definition, trainable params): only ``nnx.Param`` leaves are trained."""
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return ModelDef(graphdef, rest), params


def make_train_step(mdef: ModelDef, task: Task, tx: optax.GradientTransformation):
    """The pure step ``(state, batch, key) -> (state, metrics)``; jit it at the call site.

    A non-finite loss or gradient never reaches the parameters: the update is skipped,
    counted, and the first such step recorded, so no non-finite state is ever saved.
    """

    def train_step(state: dict, batch: dict, key: jax.Array) -> tuple[dict, dict]:
        rng = jax.random.fold_in(key, state["step"])  # then per site: layers.dropout_key

        def loss_fn(params):
            model = mdef.merge(params)
            return task.loss(model, batch, carry=state["carry"], rng=rng)

        (loss, (metrics, carry)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state["params"])
        grad_norm = optax.global_norm(grads)
        finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
        updates, opt_state = tx.update(grads, state["opt_state"], state["params"])
        params = optax.apply_updates(state["params"], updates)
        keep = lambda new, old: jax.tree.map(lambda n, o: jnp.where(finite, n, o), new, old)
        new_state = {
            "step": state["step"] + 1,
            "params": keep(params, state["params"]),
            "opt_state": keep(opt_state, state["opt_state"]),
            "carry": keep(carry, state["carry"]),
            "skipped": state["skipped"] + (~finite).astype(jnp.int32),
            "first_bad": jnp.where(
                (state["first_bad"] < 0) & ~finite, state["step"], state["first_bad"]
            ),
        }
        metrics = {
            **metrics,
            "grad_norm": (jnp.where(finite, grad_norm, 0.0), finite.astype(jnp.float32)),
        }
        return new_state, metrics

    return train_step


def init_train_state(config: ConfigDict, task: Task) -> tuple[ModelDef, dict, Any]:
    """(model definition, train state, optimizer): a pure function of the config and task."""
    model = build_model(config.model, task.spec, nnx.Rngs(params=config.seed))
    mdef, params = split_model(model)
    tx = make_optimizer(config.optim, int(config.train.num_steps))
    state = {
        "step": jnp.zeros((), jnp.int32),
        "params": params,
        "opt_state": tx.init(params),
        "carry": task.initial_carry(model, task.global_batch_size),
        "skipped": jnp.zeros((), jnp.int32),
        "first_bad": jnp.full((), -1, jnp.int32),
    }
    # Every leaf its own buffer: the state is donated to the step, and a carry may hold one
    # array twice (an LSTM's zero c and h).
    return mdef, jax.tree.map(jnp.array, state), tx


def checkpoint_meta(config: ConfigDict, task: Task) -> dict[str, Any]:
    meta = {
        "config": config.to_dict(),
        "task": config.task.name,
        "spec": dataclasses.asdict(task.spec),
        "model_shape": {
            **{k: config.model.get(k) for k in SHAPE_KEYS},
            "num_seeds": int(config.num_seeds),
        },
    }
    vocab = getattr(task, "vocab", None)
    if isinstance(vocab, Vocab):  # a task may name an int size "vocab"; only a Vocab is saved
        meta["vocab"] = vocab.to_dict()
    return meta
