"""What ``seqlab sample`` checks and prints.

Every flag that can be wrong for a run (not a language model, ``--top_k`` above the
vocabulary, a prime with unknown characters, a replica out of range) is checked against the
checkpoint's metadata alone, before any array is read. The samples are streamed a chunk of
tokens at a time (``seqlab.models.generate.generate_chunks``), with a progress bar on stderr
for long ones; with ``--num_samples`` N > 1 each sample follows one header line,
``--- sample i/N (seed S, temperature T) ---``, so a script can split them.
"""

from __future__ import annotations

import codecs
import os
import re
import sys
from collections.abc import Iterable, Iterator
from typing import Any, TextIO

import numpy as np

from seqlab.errors import UsageError
from seqlab.models.generate import check_top_k
from seqlab.tasks.corpora import Vocab

#: the header line before each sample when there are several; ``HEADER.match`` finds them
HEADER = re.compile(r"^--- sample (\d+)/(\d+) \((.*)\) ---$")


def saved_meta(workdir: str) -> dict[str, Any] | None:
    """The metadata of the workdir's newest checkpoint whose metadata reads (JSON only: no
    array is read); None when there is none, and ``load_run`` then says why. The vocabulary,
    model family and seed count are the same in every checkpoint of a run."""
    from seqlab.run.checkpoint import Checkpointer

    ckdir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckdir):
        return None
    ckpt = Checkpointer(ckdir, async_save=False, read_only=True)
    try:
        return ckpt.newest_meta()
    finally:
        ckpt.close()


def check_flags(
    meta: dict[str, Any], workdir: str, *, top_k: int, prime: str | None, replica: int
) -> tuple[Vocab, str, np.ndarray]:
    """(vocabulary, prime text, prime ids) for these flags, or the UsageError that says
    which flag does not fit the run."""
    config = meta.get("config") or {}
    if "vocab" not in meta or (meta.get("spec") or {}).get("family") != "lm":
        task = (config.get("task") or {}).get("name", meta.get("task"))
        raise UsageError(
            f"{workdir} is a {task!r} run; `seqlab sample` needs a character language "
            "model (task.name=charlm)"
        )
    vocab = Vocab.from_dict(meta["vocab"])
    check_top_k(top_k, vocab.size, flag="--")  # the check `seqlab.generate` makes
    seeds = int(config.get("num_seeds", 1))
    if not 0 <= replica < seeds:
        raise UsageError(f"--replica={replica} is out of range: the run has {seeds} seed(s)")
    text = vocab.prime(prime or (config.get("task") or {}).get("sample_prime", ""))
    try:
        ids = vocab.encode(text)
    except ValueError as e:
        raise UsageError(f"--prime {text!r}: {e}") from None
    return vocab, text, ids


def learned_positions_note(model: Any, total: int) -> str | None:
    """One line when ``total`` characters (prime + generated) run past an attention layer's
    learned position table (``model.positions=learned``): those positions reuse its last row,
    which training never saw there (rotary positions slide past the window; recurrences have
    no positions). None otherwise."""
    from flax import nnx

    from seqlab.cells.attention import CausalSelfAttention

    for _, m in nnx.iter_graph(model):
        if isinstance(m, CausalSelfAttention) and m.positions == "learned" and total > m.window:
            return (
                f"seqlab sample: note: this model's learned positions cover {m.window} "
                f"characters; the {total - m.window} after them reuse position "
                f"{m.window - 1}, which training never saw there (train with "
                "model.positions=rotary to sample past the trained context)"
            )
    return None


def header(i: int, n: int, *, seed: int, temperature: float, top_k: int, greedy: bool) -> str:
    how = "greedy" if greedy or temperature <= 0 else f"temperature {temperature:g}"
    how += f", top_k {top_k}" if top_k else ""
    return f"--- sample {i}/{n} (seed {seed}, {how}) ---"


class Decoder:
    """Token ids -> text, one chunk at a time: a byte vocabulary's UTF-8 characters may
    straddle two chunks, so the text equals ``vocab.decode`` of all the ids at once."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self._bytes = None
        if vocab.unit == "byte":
            self._bytes = codecs.getincrementaldecoder("utf-8")(errors="replace")
            self._codes = np.asarray(vocab.symbols, np.uint8)

    def __call__(self, ids: np.ndarray, final: bool = False) -> str:
        if self._bytes is None:
            return self.vocab.decode(ids)
        return self._bytes.decode(self._codes[np.asarray(ids, np.int64)].tobytes(), final=final)


def write_samples(
    chunks: Iterable[np.ndarray],
    vocab: Vocab,
    prime: str,
    headers: list[str] | None,
    out: TextIO | None = None,
) -> None:
    """Writes the samples whose (N, c) token chunks ``chunks`` yields: one sample streams
    chunk by chunk; several are printed in turn once complete, each after its header.
    ``out``: default sys.stdout."""
    out = sys.stdout if out is None else out
    if headers is None:
        decode = Decoder(vocab)
        out.write(prime)
        for chunk in chunks:
            out.write(decode(chunk[0]))
            out.flush()
        out.write(decode(np.zeros(0, np.int32), final=True) + "\n")
        out.flush()
        return
    rows = np.concatenate(list(chunks), axis=1)
    for line, row in zip(headers, rows, strict=True):
        decode = Decoder(vocab)
        out.write(f"{line}\n{prime}{decode(row, final=True)}\n")
    out.flush()


def with_progress(chunks: Iterator[Any], total: int, enabled: bool) -> Iterator[np.ndarray]:
    """The chunks on the host, counted on a tqdm bar on stderr (``enabled``: long samples)."""
    import jax
    from tqdm import tqdm

    with tqdm(total=total, unit="char", file=sys.stderr, disable=not enabled) as bar:
        for chunk in chunks:
            host = np.asarray(jax.device_get(chunk))
            bar.update(host.shape[1])
            yield host
