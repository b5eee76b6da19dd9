"""The config validator and the code agree (issue 22, family 5): a value the validator
lets through builds and runs; what the code cannot honour (float64 without JAX's 64-bit mode,
a dtype a cell cannot build, a range a cell refuses) and what it would ignore (block options
with no block, keys another model family reads) are one ConfigError naming the key the user
set."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from seqlab.cells import make_cell
from seqlab.errors import ConfigError
from seqlab.run.validate import validate, validate_for
from seqlab.tasks import complete_config, make_task, task_config


def config(task: str = "copy_memory", **model):
    c = complete_config(task_config(task))
    c.model.update(hidden_size=8, **model)
    return c


def check(c) -> None:
    validate(c)
    validate_for(c, make_task(c).spec)


# (case, task, model keys, words the one-line refusal must hold: the key set comes first)
REFUSED = [
    ("float64-params-no-x64", "copy_memory", {"param_dtype": "float64"},
     ["config.model.param_dtype='float64'", "JAX_ENABLE_X64=1", "float32"]),
    ("float64-compute-no-x64", "copy_memory", {"dtype": "float64"},
     ["config.model.dtype='float64'", "64-bit"]),
    ("lru-bfloat16-params", "copy_memory", {"cell": "lru", "param_dtype": "bfloat16"},
     ["model.param_dtype='bfloat16'", "model.cell='lru'", "complex"]),
    ("lru-r_max-0", "copy_memory", {"cell": "lru", "r_min": 0.0, "r_max": 0.0},
     ["config.model.r_max=0.0"]),
    ("rglru-r_min-0", "copy_memory", {"cell": "rglru", "r_min": 0.0},
     ["model.r_min=0.0", "model.cell='rglru'", "0 < r_min"]),
    ("r_max-below-default-r_min", "copy_memory", {"cell": "lru", "r_max": 0.5},
     ["config.model.r_max=0.5", "r_min <= r_max"]),
    ("max_phase-huge", "copy_memory", {"cell": "lru", "max_phase": 1e30},
     ["config.model.max_phase=1e+30", "2 pi"]),
    ("block_out-without-block", "copy_memory", {"cell": "gru", "block_out": "glu"},
     ["config.model.block_out='glu'", "no effect", "model.block=residual"]),
    ("block_mlp-block-none", "copy_memory", {"cell": "lru", "block": "none", "block_mlp": True},
     ["config.model.block_mlp=True", "model.block='none'"]),
    ("chunk_size-nonlinear-cell", "copy_memory", {"cell": "gru", "chunk_size": 4},
     ["config.model.chunk_size=4", "'gru'"]),
    ("chrono_max_len-without-chrono", "copy_memory", {"chrono_max_len": 50},
     ["config.model.chrono_max_len=50", "init=chrono"]),
    ("forget_bias-with-chrono", "copy_memory",
     {"init": "chrono", "chrono_max_len": 10, "forget_bias": 3.0},
     ["config.model.forget_bias=3.0", "chrono"]),
    ("chrono-on-rnn-names-the-cell", "copy_memory", {"cell": "rnn", "init": "chrono"},
     ["config.model.init='chrono'", "model.cell='rnn'"]),
    ("attention_size-without-attention", "reverse", {"attention_size": 8},
     ["config.model.attention_size=8", "model.attention=True"]),
    ("readout-on-an-lm", "copy_memory", {"readout": "mean"},
     ["config.model.readout='mean'", "lm model"]),
    ("bidirectional-lm", "copy_memory", {"bidirectional": True},
     ["config.model.bidirectional=True", "lm model"]),
    ("attention-on-a-classifier", "parity", {"attention": True},
     ["config.model.attention=True", "classifier"]),
    ("embed_dim-with-onehot", "copy_memory", {"embed_dim": 16},
     ["config.model.embed_dim=16", "input_kind=embed"]),
    ("onehot_fan_in-with-embed", "copy_memory",
     {"input_kind": "embed", "embed_dim": 8, "onehot_fan_in": 1},
     ["config.model.onehot_fan_in=1", "'embed'"]),
    ("onehot_fan_in-above-vocab", "copy_memory", {"onehot_fan_in": 100_000},
     ["config.model.onehot_fan_in=100000", "<="]),
    ("mamba-state_size-0", "copy_memory", {"cell": "mamba", "state_size": 0},
     ["model.state_size=0", "model.cell='mamba'"]),
]  # fmt: skip


@pytest.mark.parametrize("case,task,model,words", REFUSED, ids=[r[0] for r in REFUSED])
def test_refused_in_one_line_naming_the_key_set(case, task, model, words) -> None:
    with jax.enable_x64(False):
        c = config(task, **model)
        with pytest.raises(ConfigError) as e:
            check(c)
    msg = str(e.value)
    assert "\n" not in msg and all(w in msg for w in words), msg
    assert msg.startswith("config."), msg


ALLOWED = [  # at the validator's edges, and combinations that must keep working
    ("bfloat16-params-lstm", "copy_memory", {"param_dtype": "bfloat16"}),
    ("bfloat16-params-float16-compute", "copy_memory",
     {"cell": "gru", "param_dtype": "bfloat16", "dtype": "float16"}),
    ("float16-compute-lru", "copy_memory", {"cell": "lru", "dtype": "float16"}),
    ("r_min-equals-r_max", "copy_memory", {"cell": "lru", "r_min": 0.5, "r_max": 0.5}),
    ("max_phase-2pi", "copy_memory", {"cell": "lru", "max_phase": 6.283185}),
    ("block-residual-with-glu", "copy_memory", {"cell": "gru", "block": "residual",
                                                 "block_out": "glu", "block_mlp": True}),
    ("chunk_size-linear", "copy_memory", {"cell": "mingru", "chunk_size": 3}),
    ("embed-with-dim", "copy_memory", {"input_kind": "embed", "embed_dim": 4}),
    ("classifier-readout-bidirectional", "parity", {"readout": "mean", "bidirectional": True}),
    ("seq2seq-attention-size", "reverse", {"attention": True, "attention_size": 8}),
]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case,task,model", ALLOWED, ids=[a[0] for a in ALLOWED])
def test_what_the_validator_allows_builds_and_runs(case, task, model) -> None:
    """Validated, then built and run for one (abstract) training loss: no crash inside."""
    from seqlab.models.build import build_model

    c = config(task, **model)
    check(c)
    t = make_task(c)
    model_ = build_model(c.model, t.spec, nnx.Rngs(0))
    batch = t.train_batch(0) if hasattr(t, "train_batch") else None
    if batch is not None:
        carry = t.initial_carry(model_, t.global_batch_size)
        loss = jax.eval_shape(lambda b: t.loss(model_, b, carry=carry)[0], batch)
        assert loss.shape == ()


def test_bfloat16_parameters_of_an_orthogonal_init_are_drawn_wide_then_rounded() -> None:
    """QR has no bfloat16: the recurrent blocks are drawn in float32, then rounded."""
    for kind in ("lstm", "gru", "rnn"):
        cell = make_cell(kind, 3, 8, rngs=nnx.Rngs(0), param_dtype=jnp.bfloat16)
        ref = make_cell(kind, 3, 8, rngs=nnx.Rngs(0))
        assert cell.w_h.dtype == jnp.bfloat16
        w = np.asarray(cell.w_h[...], np.float32)[:, :8]
        np.testing.assert_allclose(w.T @ w, np.eye(8), atol=0.03)  # orthogonal, rounded
        np.testing.assert_array_equal(
            w, np.asarray(ref.w_h[...].astype(jnp.bfloat16), np.float32)[:, :8]
        )


def test_float64_is_allowed_with_x64_and_then_trains_in_float64() -> None:
    from seqlab.models.build import build_model

    with jax.enable_x64(True):
        c = config(param_dtype="float64")
        check(c)
        model = build_model(c.model, make_task(c).spec, nnx.Rngs(0))
        leaves = jax.tree.leaves(nnx.state(model, nnx.Param))
        assert {leaf.dtype for leaf in leaves} == {jnp.dtype("float64")}


def test_task_defaults_are_not_refused_as_no_effect() -> None:
    """A key at its task's default (seq2seq's embed_dim) is never 'set by the user'."""
    for task in ("copy_memory", "parity", "reverse", "adding", "s3"):
        check(config(task))
    c = config("reverse", input_kind="embed")  # what configs/seq2seq.py sets: it embeds
    check(c)
    c = config("reverse", input_kind="features")
    with pytest.raises(ConfigError, match="config.model.input_kind='features'"):
        check(c)


@pytest.mark.parametrize(
    "optim,named",
    [
        ({"momentum": 0.5}, "optim.momentum=0.5"),
        ({"name": "sgd", "b2": 0.9}, "optim.b2=0.9"),
        ({"weight_decay": 0.1}, "optim.weight_decay=0.1"),
        ({"decay_rate": 0.5}, "optim.decay_rate=0.5"),
        ({"schedule": "exponential", "warmup_steps": 3}, "optim.warmup_steps=3"),
        ({"clip": "none", "clip_value": 1.0}, "optim.clip_value=1.0"),
    ],
)
def test_optimizer_keys_without_effect_are_announced_once(optim, named, caplog) -> None:
    """Announced, not refused: a sweep over optim.name sets such keys for some points."""
    import logging

    c = config()
    c.optim.update(**optim)
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        check(c)
        check(c)  # validated again (the CLI, then the loop): said once
    said = [r.getMessage() for r in caplog.records if "no effect" in r.getMessage()]
    assert len(said) == 1 and named in said[0], said
    from seqlab.run.validate import unused_optim_keys

    assert any(named in k for k in unused_optim_keys(c))
    assert unused_optim_keys(config()) == []
