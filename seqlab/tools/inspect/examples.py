"""``seqlab inspect`` for tasks other than a character LM (many-to-one, seq2seq, copy
memory): the hidden state and gates over time for a few eval examples, the model's
prediction beside the target, and gate saturation over the first eval batch."""

from __future__ import annotations

from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqlab.tools.internals import LayerTrace, to_host, trace_stack

Array = jax.Array

NUM_EXAMPLES = 3  # examples drawn as heatmaps
NUM_STATS = 16  # examples whose steps the gate saturation counts


def _tokens(row: np.ndarray) -> str:
    s = " ".join(str(int(t)) for t in row[:80])
    return s + (" ..." if len(row) > 80 else "")


def classifier_lines(model: Any, batch: dict[str, np.ndarray]) -> list[list[list[str]]]:
    x = jnp.asarray(batch["inputs"])
    out = np.asarray(model(x)[0], np.float64)
    rows = []
    for b in range(len(x)):
        shown = (
            _tokens(batch["inputs"][b])
            if x.ndim == 2
            else f"{x.shape[1]} steps x {x.shape[2]} features"
        )
        if "labels" in batch:
            p = np.exp(out[b] - out[b].max())
            p /= p.sum()
            k = int(np.argmax(p))
            pred, target = f"class {k} (p = {p[k]:.3f})", f"class {int(batch['labels'][b])}"
        else:
            pred, target = f"{out[b, 0]:.4f}", f"{float(batch['targets'][b]):.4f}"
        rows.append([["input", shown], ["target", target], ["prediction", pred]])
    return rows


def lm_lines(model: Any, batch: dict[str, np.ndarray]) -> list[list[list[str]]]:
    """A many-to-many model over token ids (copy memory): argmax per step."""
    pred = np.asarray(jnp.argmax(model(jnp.asarray(batch["inputs"]))[0], -1))
    return [
        [
            ["input", _tokens(batch["inputs"][b])],
            ["target", _tokens(batch["targets"][b])],
            ["prediction", _tokens(pred[b])],
            ["steps right", f"{int((pred[b] == batch['targets'][b]).sum())} / {pred.shape[1]}"],
        ]
        for b in range(len(pred))
    ]


def seq2seq_lines(model: Any, task: Any, batch: dict[str, np.ndarray]) -> list[list[list[str]]]:
    part = {k: jnp.asarray(v) for k, v in batch.items()}
    pred = np.asarray(task.decode(model, part))
    rows = []
    for b in range(len(pred)):
        hits = np.flatnonzero(pred[b] == 2)  # EOS (seqlab.tasks.seq2seq)
        cut = int(hits[0]) if hits.size else len(pred[b])
        rows.append(
            [
                ["source", task.show_source(batch["src"][b, : batch["src_lengths"][b]])],
                ["target", task.detokenize(batch["tgt_out"][b, : batch["tgt_lengths"][b] - 1])],
                ["prediction", task.detokenize(pred[b, :cut])],
            ]
        )
    return rows


@partial(nnx.jit, static_argnames=("family",))
def _traces(model: Any, family: str, batch: dict[str, Array]) -> list[LayerTrace]:
    if family != "seq2seq":
        x = model.inputs(batch["inputs"], ids_ok=True)
        return trace_stack(model.rnn, x, lengths=batch.get("lengths"))
    src, src_len = batch["src"], batch["src_lengths"]
    enc = trace_stack(model.encoder, model.src_embed(src), lengths=src_len)
    for tr in enc:
        tr.name = f"encoder {tr.name}"
    if model.use_attention:
        return enc
    _, carry, _ = model.encode(src, src_len)
    dec = trace_stack(
        model.decoder,
        model.tgt_embed(batch["tgt_in"]),
        lengths=batch["tgt_lengths"],
        initial_carry=carry,
    )
    for tr in dec:
        tr.name = f"decoder {tr.name}"
    return enc + dec


def traces_of(model: Any, family: str, batch: dict[str, np.ndarray]) -> tuple[list, list, str]:
    """(traces on the host, per-trace valid lengths (B,), a note) of the model over the
    batch."""
    traces = to_host(_traces(model, family, {k: jnp.asarray(v) for k, v in batch.items()}))
    if family != "seq2seq":
        n = len(batch["inputs"])
        full = batch.get("lengths", np.full(n, batch["inputs"].shape[1]))
        return traces, [np.asarray(full)] * len(traces), ""
    enc = [t for t in traces if t.name.startswith("encoder")]
    lens = [batch["src_lengths"]] * len(enc) + [batch["tgt_lengths"]] * (len(traces) - len(enc))
    note = "the decoder (with attention) is not traced; the encoder is"
    return traces, lens, note if len(enc) == len(traces) else ""


def examples_report(model: Any, task: Any, family: str) -> dict[str, Any]:
    """What the page shows for a task other than a char LM (``NUM_EXAMPLES`` examples)."""
    from seqlab.tools.inspect.lm import gate_saturation

    first = task.eval_batches()[0]
    batch = {k: np.asarray(v[:NUM_STATS]) for k, v in first.items()}
    traces, lengths, note = traces_of(model, family, batch)
    few = {k: v[:NUM_EXAMPLES] for k, v in batch.items()}
    if family == "seq2seq":
        lines = seq2seq_lines(model, task, few)
    elif family == "lm":
        lines = lm_lines(model, few)
    else:
        lines = classifier_lines(model, few)
    examples = []
    for b, rows in enumerate(lines):
        per = [
            LayerTrace(
                tr.name,
                tr.h[b, : n[b]],
                None if tr.c is None else np.tanh(tr.c[b, : n[b]]),
                tr.gate_names,
                tuple(v[b, : n[b]] for v in tr.gate_values),
            )
            for tr, n in zip(traces, lengths, strict=True)
        ]
        examples.append({"title": f"eval example {b + 1}", "lines": rows, "traces": per})
    gates = []
    for tr, n in zip(traces, lengths, strict=True):
        gates += gate_saturation([tr], n)
    return {
        "examples": examples,
        "examples_note": note,
        "gates": gates,
        "stats_examples": len(lengths[0]) if lengths else 0,
    }
