"""The character-LM sections of ``seqlab inspect``'s page, computed from a model and a text:
the model's distributions and top-5 guesses (section 1), every unit's activations and their
ranking by text property (2), gate saturation (3) and the gain over the n-gram (4)."""

from __future__ import annotations

import base64
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from seqlab.tasks.corpora import Vocab
from seqlab.tasks.ngram import NGramLM
from seqlab.tools import units
from seqlab.tools.internals import LayerTrace, to_host, trace_stack

#: the n-gram is fit on at most this many characters of the train split (its end)
NGRAM_MAX_TRAIN = 5_000_000
TOP_UNITS = 5
Array = jax.Array


def symbol_chars(vocab: Vocab) -> np.ndarray:
    """One display character per symbol id (a byte vocabulary's non-ASCII bytes show as the
    replacement character), so a text of N symbols is a string of N characters."""
    if vocab.unit == "char":
        return np.asarray(vocab.symbols, dtype=object)
    return np.asarray([chr(b) if b < 128 else "\ufffd" for b in vocab.symbols], dtype=object)


@nnx.jit
def _lm_forward(model: Any, context: Array, x: Array) -> tuple[Array, list[LayerTrace]]:
    carry, first = None, None
    if context.shape[1]:
        logits, aux = model(context)
        carry, first = aux["final_carry"], logits[0, -1:]
    logits, _ = model(x, carry=carry)
    before = logits[0, :-1] if first is None else jnp.concatenate([first, logits[0, :-1]])
    probs = jax.nn.softmax(before.astype(jnp.float32), axis=-1)
    return probs, trace_stack(model.rnn, model.inputs(x, ids_ok=True), initial_carry=carry)


def lm_forward(
    model: Any, ids: np.ndarray, context: np.ndarray
) -> tuple[np.ndarray, list[LayerTrace]]:
    """(the model's distribution over symbol t before reading it, (N, V), a NaN row where it
    has none: position 0 without context; its internals over ``ids``), after it has read
    ``context`` from its initial state. One compiled program."""
    as_batch = lambda a: jnp.asarray(np.asarray(a, np.int32))[None]  # noqa: E731
    probs, traces = _lm_forward(model, as_batch(context), as_batch(ids))
    probs = np.asarray(probs, np.float64)
    if not len(context):
        probs = np.concatenate([np.full((1, probs.shape[1]), np.nan), probs])
    return probs, to_host(traces)


def predictions(probs: np.ndarray, ids: np.ndarray, chars: np.ndarray) -> dict[str, Any]:
    """Per position: the probability of symbol t and the 5 likeliest symbols there."""
    prob, top5 = [], []
    for t, dist in enumerate(probs):
        if np.isnan(dist[0]):
            prob.append(None)
            top5.append(None)
            continue
        best = np.argsort(-dist, kind="stable")[:5]
        prob.append(float(dist[ids[t]]))
        top5.append([[str(chars[k]), round(float(dist[k]), 6)] for k in best])
    return {"prob": prob, "top5": top5}


def _listed(a: np.ndarray) -> list[float | None]:
    """NaN -> None (JSON null: no prediction there)."""
    return [None if np.isnan(v) else round(float(v), 4) for v in a]


def activation_series(traces: list[LayerTrace]) -> dict[str, np.ndarray]:
    """{"layer i h": (N, H), "layer i tanh(c)": (N, H)} of the one inspected sequence."""
    out = {}
    for tr in traces:
        out[f"{tr.name} h"] = tr.h[0]
        if tr.c is not None:
            out[f"{tr.name} tanh(c)"] = np.tanh(tr.c[0])
    return out


def pack_series(name: str, a: np.ndarray) -> dict[str, Any]:
    """(N, H) activations as int8 per unit scale, base64: about 1 byte per value on the page."""
    scale = np.maximum(np.abs(a).max(axis=0), 1e-12)
    q = np.clip(np.round(a / scale * 127), -127, 127).astype(np.int8)
    data = base64.b64encode(q.tobytes()).decode("ascii")
    return {"name": name, "H": int(a.shape[1]), "scale": [float(s) for s in scale], "q": data}


def gate_saturation(traces: list[LayerTrace], lengths: np.ndarray | None = None) -> list[dict]:
    """Per layer, per gate: each unit's fraction of steps < 0.1 and > 0.9 (valid steps)."""
    out = []
    for tr in traces:
        if not tr.gates:
            continue
        gates = {}
        for name, g in tr.gates.items():
            n = [g.shape[1]] * len(g) if lengths is None else lengths
            left, right = units.saturation(np.concatenate([g[b, : n[b]] for b in range(len(g))]))
            gates[name] = {"left": left.round(4).tolist(), "right": right.round(4).tolist()}
        out.append({"name": tr.name, "gates": gates})
    return out


#: the last n-gram fit: (train split, order, model, characters), reused by the next page
_NGRAM: list[tuple[np.ndarray, int, NGramLM, int]] = []


def fit_ngram(task: Any, chars: np.ndarray, order: int) -> tuple[NGramLM, int]:
    """The n-gram fit on the end of ``task``'s train split (at most ``NGRAM_MAX_TRAIN``)."""
    split = task.splits["train"]
    if not (_NGRAM and _NGRAM[0][0] is split and _NGRAM[0][1] == order):
        train = split[-NGRAM_MAX_TRAIN:]
        _NGRAM[:] = [(split, order, NGramLM(order).fit("".join(chars[train])), len(train))]
    return _NGRAM[0][2], _NGRAM[0][3]


def ngram_section(
    text: str, context: str, model_bits: np.ndarray, ngram: NGramLM, train_chars: int
) -> dict[str, Any]:
    """Per position, the n-gram's surprisal (it reads the same context as the model) and
    the model's gain over it, and the gain tables by character class and by character."""
    n, full, k = ngram.order, context + text, len(context)
    bits = np.full(len(text), np.nan)
    for t in np.flatnonzero(~np.isnan(model_bits)):
        p = ngram.prob(full[max(0, k + t - n + 1) : k + t], full[k + t])
        bits[t] = -math.log2(max(p, 1e-300))
    prev = context[-1:]
    rows = lambda by: [  # noqa: E731
        {"name": r.name, "count": r.count, "model": r.model_bits, "ngram": r.baseline_bits}
        for r in units.gain_table(text, model_bits, bits, by, prev=prev)
    ]
    return {
        "order": n,
        "train_chars": train_chars,
        "gain": _listed(bits - model_bits),
        "mean_model": float(np.nanmean(model_bits)),
        "mean_ngram": float(np.nanmean(bits)),
        "classes": rows("class"),
        "chars": rows("char")[:12],
    }


def lm_report(
    model: Any,
    vocab: Vocab,
    ids: np.ndarray,
    *,
    context: np.ndarray,
    task: Any,
    why: str,
    ngram_order: int,
) -> dict[str, Any]:
    """Sections 1-4 for a char LM over ``ids``, read after ``context`` (by the model, the
    property lexer and the n-gram alike). The n-gram is fit on ``task``'s train split
    (``task`` None: the corpus is unavailable, ``why``)."""
    chars = symbol_chars(vocab)
    text, before = "".join(chars[ids]), "".join(chars[np.asarray(context, np.int64)])
    probs, traces = lm_forward(model, ids, context)
    pred = predictions(probs, ids, chars)
    acts = activation_series(traces)
    names = list(acts)
    ranked = units.rank_units(acts, units.text_properties(text, before), top=TOP_UNITS)
    ranking = [
        {
            "name": prop,
            "desc": units.PROPERTIES[prop][0],
            "units": [{"series": names.index(s.series), "unit": s.unit, "r": s.r} for s in best],
        }
        for prop, best in ranked.items()
    ]
    model_bits = np.array(
        [np.nan if p is None else -math.log2(max(p, 1e-300)) for p in pred["prob"]]
    )
    if ngram_order < 1:
        ngram: dict[str, Any] = {"na": "the n-gram comparison is off (--ngram_order=0)"}
    elif task is None:
        ngram = {"na": f"the n-gram is fit on the run's train split, which is unavailable: {why}"}
    else:
        lm, n_train = fit_ngram(task, chars, ngram_order)
        ngram = ngram_section(text, before, model_bits, lm, n_train)
    return {
        "chars": text,
        "context": len(context),
        "predictions": pred,
        "bits": _listed(model_bits),
        "series": [pack_series(n, a) for n, a in acts.items()],
        "ranking": ranking,
        "gates": gate_saturation(traces),
        "ngram": ngram,
    }
