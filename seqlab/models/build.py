"""Builds the model a task's ``ModelSpec`` asks for from the config's ``model`` section."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
from flax import nnx
from ml_collections import ConfigDict

from seqlab.models.classifier import SequenceClassifier
from seqlab.models.language_model import LanguageModel
from seqlab.models.seq2seq import Seq2Seq

DTYPES = {
    "float32": jnp.float32,
    "bfloat16": jnp.bfloat16,
    "float16": jnp.float16,
    "float64": jnp.float64,
    "": None,
    "none": None,
}


def cell_kwargs(m: ConfigDict) -> dict[str, Any]:
    kw: dict[str, Any] = {
        # "default" means each cell's own default: the IRNN keeps its identity init.
        "init": m.get("init", "default")
        if not (m.cell == "irnn" and m.get("init", "default") == "default")
        else "irnn",
        "forget_bias": float(m.get("forget_bias", 1.0)),
        "dtype": DTYPES[str(m.get("dtype", "") or "")],
    }
    if m.cell == "rnn" and m.get("activation"):
        kw["activation"] = m.activation
    return kw


def build_model(m: ConfigDict, spec: Any, rngs: nnx.Rngs) -> nnx.Module:
    """``m`` is ``config.model``; ``spec`` is the task's ``ModelSpec``."""
    common = {
        "cell": m.cell,
        "hidden_size": int(m.hidden_size),
        "num_layers": int(m.num_layers),
        "dropout": float(m.get("dropout", 0.0)),
        "unroll": int(m.get("unroll", 1)),
        "remat": bool(m.get("remat", False)),
        "cell_kwargs": cell_kwargs(m),
        "param_dtype": DTYPES[str(m.get("param_dtype", "float32"))],
        "rngs": rngs,
    }
    input_kind = m.get("input_kind", "onehot")
    if spec.family == "lm":
        return LanguageModel(
            spec.vocab_size, input_kind=input_kind, embed_dim=int(m.get("embed_dim", 0)), **common
        )
    if spec.family == "classifier":
        kind = "features" if spec.input_kind == "features" else input_kind
        return SequenceClassifier(
            spec.num_outputs,
            input_kind=kind,
            vocab_size=spec.vocab_size,
            num_features=spec.num_features,
            embed_dim=int(m.get("embed_dim", 0)),
            bidirectional=bool(m.get("bidirectional", False)),
            readout=m.get("readout", "last"),
            **common,
        )
    if spec.family == "seq2seq":
        return Seq2Seq(
            spec.vocab_size,
            spec.tgt_vocab_size,
            embed_dim=int(m.get("embed_dim") or 64),
            bidirectional_encoder=bool(m.get("bidirectional", False)),
            attention=bool(m.get("attention", False)),
            attention_size=int(m.get("attention_size", 0)),
            **common,
        )
    raise ValueError(f"unknown model family {spec.family!r}")
