"""Builds the model a task's ``ModelSpec`` asks for from the config's ``model`` section."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

from seqlab.models.classifier import SequenceClassifier
from seqlab.models.language_model import LanguageModel
from seqlab.models.seq2seq import Seq2Seq

#: config.model.param_dtype names; config.model.dtype (the matmul compute dtype) also takes
#: "" for "the parameter dtype".
PARAM_DTYPES = {"float32": jnp.float32, "float64": jnp.float64, "bfloat16": jnp.bfloat16}
COMPUTE_DTYPES = {"": None, **PARAM_DTYPES, "float16": jnp.float16}


#: the config.model keys each cell takes beyond init and dtype (a key set for another cell is
#: rejected by validation, not silently ignored)
CELL_OPTIONS: dict[str, tuple[str, ...]] = {
    "rnn": ("activation",),
    "lstm": ("forget_bias", "chrono_max_len"),
    "gru": ("carry_bias", "chrono_max_len"),
    "gru_reset_before": ("carry_bias", "chrono_max_len"),
    "lru": ("r_min", "r_max", "max_phase"),
    "attention": ("num_heads", "window", "positions"),
    "rglru": ("r_min", "r_max", "negative_eigenvalues"),
    "mingru": ("negative_eigenvalues",),
    "mamba": ("state_size", "negative_eigenvalues"),
    "slstm": ("num_heads",),
    "mlstm": ("num_heads",),
    "deltanet": ("num_heads", "negative_eigenvalues"),
    "gated_deltanet": ("num_heads", "negative_eigenvalues"),
}


def cell_kwargs(m: ConfigDict) -> dict[str, Any]:
    """The cell options from ``config.model`` (``init="default"`` is each cell's own default;
    ``activation`` applies to the vanilla RNN, ``cell=rnn``, only)."""
    kw: dict[str, Any] = {"init": m.init, "dtype": COMPUTE_DTYPES[m.dtype]}
    for key in CELL_OPTIONS.get(m.cell, ()):
        kw[key] = m[key]
    return kw


def build_model(m: ConfigDict, spec: Any, rngs: nnx.Rngs) -> nnx.Module:
    """``m`` is ``config.model``; ``spec`` is the task's ``ModelSpec``."""
    common = {
        "cell": m.cell,
        "hidden_size": int(m.hidden_size),
        "num_layers": int(m.num_layers),
        "dropout": float(m.dropout),
        "unroll": int(m.unroll),
        "remat": bool(m.remat),
        "backend": str(m.backend),
        "chunk_size": int(m.chunk_size),
        "block": str(m.block),
        "block_out": str(m.block_out),
        "block_mlp": bool(m.block_mlp),
        "cell_kwargs": cell_kwargs(m),
        "param_dtype": PARAM_DTYPES[m.param_dtype],
        "rngs": rngs,
    }
    input_kind = m.input_kind
    # one-hot inputs: the first layer's LeCun init with the fan-in the config names
    fan_in = int(m.onehot_fan_in)
    if spec.family == "lm":
        return LanguageModel(
            spec.vocab_size,
            input_kind=input_kind,
            input_fan_in=fan_in if input_kind == "onehot" else 0,
            embed_dim=int(m.embed_dim),
            embed_init=str(m.embed_init),
            **common,
        )
    if spec.family == "classifier":
        kind = "features" if spec.input_kind == "features" else input_kind
        return SequenceClassifier(
            spec.num_outputs,
            input_kind=kind,
            input_fan_in=fan_in if kind == "onehot" else 0,
            vocab_size=spec.vocab_size,
            num_features=spec.num_features,
            embed_dim=int(m.embed_dim),
            embed_init=str(m.embed_init),
            bidirectional=bool(m.bidirectional),
            readout=m.readout,
            **common,
        )
    if spec.family == "seq2seq":
        return Seq2Seq(
            spec.vocab_size,
            spec.tgt_vocab_size,
            embed_dim=int(m.embed_dim),
            embed_init=str(m.embed_init),
            bidirectional_encoder=bool(m.bidirectional),
            attention=bool(m.attention),
            attention_size=int(m.attention_size),
            **common,
        )
    raise ValueError(f"unknown model family {spec.family!r}")


def num_params(m: ConfigDict, spec: Any) -> int:
    """Parameter count of the model ``build_model(m, spec, ...)`` makes (shapes only: nothing
    is allocated or initialized)."""
    model = nnx.eval_shape(lambda: build_model(m, spec, nnx.Rngs(0)))
    return sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))


#: widths a mixer accepts, as a multiple of this (from config.model): attention's heads of an
#: even width (rotary pairs channels)
WIDTH_MULTIPLE: dict[str, Callable[[ConfigDict], int]] = {
    "attention": lambda m: 2 * int(m.num_heads),
}


def hidden_size_for(m: ConfigDict, spec: Any, target: int) -> int:
    """The ``hidden_size`` that brings the model's parameter count closest to ``target``, all
    else in ``m`` fixed: how cell x depth comparisons match capacity (Karpathy et al. 2015).
    Only widths the mixer accepts are tried (multiples of ``WIDTH_MULTIPLE``)."""
    if target < 1:
        raise ValueError(f"target parameter count must be >= 1, got {target}")
    unit = WIDTH_MULTIPLE.get(m.cell, lambda m: 1)(m)

    def count(k: int) -> int:
        c = ConfigDict(m.to_dict())
        c.hidden_size = k * unit
        return num_params(c, spec)

    lo, hi = 1, 2
    while count(hi) < target:  # the count grows with h: bracket, then bisect
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    return unit * min((lo, hi), key=lambda k: abs(count(k) - target))
