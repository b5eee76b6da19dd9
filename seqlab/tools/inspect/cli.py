"""``seqlab inspect``: what a trained recurrent model does, as one self-contained HTML page
(inline CSS and JS, no network: it works from file:// and as a W&B Html panel) plus PNGs.

For a character LM, over a text (``--text FILE`` or the first ``--max_chars`` characters of
a split): (1) per character the model's probability and its top-5 guesses (Karpathy's blog
figure); (2) every hidden unit's activation, ranked by how well it tracks named properties of
the text (``seqlab.tools.units``); (3) gate saturation (Karpathy, Johnson & Fei-Fei 2015,
Fig. 3); (4) per character, the model's gain over the n-gram baseline (1-4: ``lm``);
(5) the samples the run logged while training. Other tasks get the hidden state and gates
over a few eval examples with the model's prediction beside the target (``examples``).

Every check (checkpoint, text, vocabulary, output folder) happens before anything is
written, so bad input leaves the workdir as it was.
"""

from __future__ import annotations

import codecs
import os
import sys
from collections.abc import Sequence
from typing import Any

import numpy as np
from absl import flags

from seqlab.errors import DataError, SeqlabError, UsageError
from seqlab.tasks.corpora import Vocab
from seqlab.tools.flags import parse
from seqlab.tools.inspect.lm import lm_report

DEFAULT_MAX_CHARS = 2000
#: samples.jsonl rows shown (evenly spaced over training, first and last kept)
MAX_SAMPLE_ROWS = 60
#: symbols of the corpus before a split's text that the model (and the property lexer, and
#: the n-gram) read first, so the text does not start from a blank state mid-string
CONTEXT = 2000
#: below this many symbols a correlation or a saturation fraction is mostly noise: said so
MIN_STATS_SYMBOLS = 200
#: the n-gram baseline's highest order (its tables grow with order x train characters)
MAX_NGRAM_ORDER = 8


# -- input ---------------------------------------------------------------------------------
def check_out(out: str) -> None:
    """That ``out`` is, or can be made as, a writable folder (nothing is created here)."""
    path = os.path.abspath(out)
    probe = path
    while not os.path.lexists(probe):
        probe = os.path.dirname(probe)
    if not os.path.isdir(probe):
        raise UsageError(f"--out {out}: {probe} is not a directory")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: {probe} is not writable")


def read_text(path: str, vocab: Vocab, max_chars: int) -> tuple[np.ndarray, str]:
    """(ids of the first ``max_chars`` symbols, a note when the text was cut). At most
    4 x ``max_chars`` bytes are read (UTF-8 needs at most 4 per character): a huge file
    costs no more than its first characters."""
    limit = max_chars * (4 if vocab.unit == "char" else 1)
    try:
        with open(path, "rb") as f:
            raw, more = f.read(limit), bool(f.read(1))
    except OSError as e:
        raise UsageError(f"--text {path}: {e.strerror or e}") from None
    data: str | bytes = raw
    if vocab.unit == "char":
        try:  # a character cut at the byte limit is left out, not an error
            data = codecs.getincrementaldecoder("utf-8")().decode(raw, final=not more)
        except UnicodeDecodeError as e:
            raise UsageError(
                f"--text {path} is not UTF-8 text ({e.reason} at byte {e.start})"
            ) from None
    if not data:
        raise UsageError(f"--text {path} is empty")
    note = ""
    if more or len(data) > max_chars:
        note = f"{path} is longer than {max_chars:,} {vocab.unit}s; inspecting the first "
        note += f"{max_chars:,} (--max_chars)"
        data = data[:max_chars]
    try:
        return vocab.encode(data), note
    except ValueError as e:
        raise UsageError(f"--text {path}: {e}") from None


def split_text(task: Any, split: str, max_chars: int) -> tuple[np.ndarray, np.ndarray, str]:
    """(the first ``max_chars`` symbols of the split, up to ``CONTEXT`` symbols before them
    in the corpus, a note when the split was cut)."""
    ids = task.splits[split]
    if len(ids) < 2:
        raise UsageError(f"the run's {split} split has {len(ids)} symbols; use --text FILE")
    note = ""
    if len(ids) > max_chars:
        note = f"the {split} split has {len(ids):,} symbols; inspecting the first {max_chars:,}"
        note += " (--max_chars)"
    start = len(task.splits["train"]) + (len(task.splits["val"]) if split == "test" else 0)
    context = np.asarray(task.corpus.ids[max(0, start - CONTEXT) : start])
    return np.asarray(ids[:max_chars]), context, note


def read_samples(workdir: str) -> dict[str, Any]:
    """The text samples the run logged while training (WORKDIR/samples.jsonl, rows
    ``{"step": s, "sample/t=T": text, ...}``), at most ``MAX_SAMPLE_ROWS`` steps."""
    from seqlab.run import records

    path = os.path.join(workdir, "samples.jsonl")
    if not os.path.exists(path):
        return {"rows": [], "note": "no samples.jsonl in the workdir (no eval step sampled)"}
    rows = sorted(records.read_jsonl(path, records.SAMPLES), key=lambda r: r["step"])
    if len(rows) > MAX_SAMPLE_ROWS:
        keep = np.unique(np.linspace(0, len(rows) - 1, MAX_SAMPLE_ROWS).round().astype(int))
        rows = [rows[i] for i in keep]
    out = []
    for r in rows:
        for key, text in r.items():
            if key.startswith("sample/t="):
                out.append({"step": r["step"], "temperature": key[9:], "text": text})
    return {"rows": out, "note": "" if out else "samples.jsonl holds no samples"}


# -- the command ---------------------------------------------------------------------------
def inspect_workdir(
    workdir: str,
    *,
    text: str | None = None,
    split: str | None = None,
    out: str | None = None,
    max_chars: int = DEFAULT_MAX_CHARS,
    ngram_order: int = 5,
    best: bool = False,
    position: int = -1,
) -> tuple[str, list[str]]:
    """Writes OUT/index.html and the PNGs; returns (the page's path, notes for the user).
    A mixer without a recurrent state (attention) gets its attention maps from the character
    at ``position`` instead (``attention``)."""
    from seqlab.cells import provides
    from seqlab.run import load_run
    from seqlab.tools.sampling import saved_meta

    if text is not None and split is not None:
        raise UsageError("give --text FILE or --split, not both")
    out = out if out is not None else os.path.join(workdir, "inspect")
    meta = saved_meta(workdir) or {}  # JSON only; None: load_run says what is missing
    vocab = Vocab.from_dict(meta["vocab"]) if "vocab" in meta else None
    if meta and vocab is None and (text is not None or split is not None):
        raise UsageError(
            f"--text/--split choose a character LM's text; {workdir} is a "
            f"{meta.get('task')!r} run, inspected on its eval examples (drop the flag)"
        )
    check_out(out)
    ids, note = read_text(text, vocab, max_chars) if text is not None and vocab else (None, "")
    context = np.zeros(0, np.int32)  # a --text file is read from its start
    run = load_run(workdir, best)
    model, notes = run.model(0), [note] if note else []
    if run.num_seeds > 1:
        notes.append(f"the run trained {run.num_seeds} seeds; this is seed replica 0")
    stateful = "state" in provides(str(run.config.model.cell))
    if not stateful and run.vocab is None:
        raise UsageError(
            f"{workdir}: inspect shows a {run.config.model.cell} model's attention maps for "
            "character LMs only; this run's task has no page for it yet"
        )
    if run.vocab is None:
        from seqlab.tools.inspect.examples import examples_report

        task, why = load_task(run.config)
        if task is None:
            raise DataError(f"cannot make the run's eval examples: {why}")
        report = examples_report(model, task, run.spec.family)
    else:
        task, why = load_task(run.config)
        if ids is None:
            if task is None:
                raise DataError(f"cannot read the run's {split or 'val'} split: {why}")
            ids, context, note = split_text(task, split or "val", max_chars)
            notes += [note] if note else []
        if not stateful:  # no hidden units or gates: the attention maps
            from seqlab.tools.inspect.attention import attention_page

            page = attention_page(model, run.vocab, ids, out, position=position, title=workdir)
            return page, notes
        report = lm_report(
            model, run.vocab, ids, context=context, task=task, why=why, ngram_order=ngram_order
        )
        notes += [note] if (note := too_short(len(ids), run.vocab.unit)) else []
        report["source"] = f"--text {text}" if text else f"the {split or 'val'} split"
        report["samples"] = read_samples(workdir)
    report["run"] = run_info(run.config, run.workdir, run.step, run.spec.family, run.metrics)
    report["notes"] = notes
    return write_page(report, out), notes


def too_short(n: int, unit: str) -> str:
    """A note when ``n`` symbols are too few for the page's statistics to mean much."""
    if n >= MIN_STATS_SYMBOLS:
        return ""
    return (
        f"only {n} {unit}s inspected: the unit scores (Pearson r), gate saturation and n-gram "
        f"gain are computed from too little text to mean much (give at least "
        f"{MIN_STATS_SYMBOLS}: a larger --max_chars or a longer --text)"
    )


def load_task(config: Any) -> tuple[Any, str]:
    """(the run's task with its data, ""), or (None, why it cannot be built)."""
    from seqlab.tasks import make_task

    try:
        return make_task(config), ""
    except (SeqlabError, OSError) as e:
        return None, " ".join(str(e).split()) or type(e).__name__


def run_info(
    config: Any, workdir: str, step: int, family: str, metrics: dict[str, Any]
) -> dict[str, Any]:
    m = config.model
    return {
        "workdir": os.path.abspath(workdir),
        "step": int(step),
        "task": str(config.task.name),
        "family": family,
        "cell": str(m.cell),
        "layers": int(m.num_layers),
        "hidden": int(m.hidden_size),
        "metrics": {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))},
    }


def log_page(task: Any, model: Any, config: Any, workdir: str, step: int) -> str | None:
    """``config.inspect.every``'s eval hook, for the loop's eval block on process 0 (it gets
    the live task and model): on steps divisible by ``every``, writes WORKDIR/inspect/ from
    the first ``DEFAULT_MAX_CHARS`` of the val split (a char LM) or the first eval examples,
    and logs the page to the active W&B run as ``wandb.Html`` under ``inspect``. Returns the
    page's path (None when off for this step)."""
    every = int(config.inspect.every)
    if every <= 0 or step % every:
        return None
    vocab = getattr(task, "vocab", None)
    family = task.spec.family
    from seqlab.cells import provides

    if "state" not in provides(str(config.model.cell)):  # attention: its maps (char LMs)
        if vocab is None:
            return None
        from seqlab.tools.inspect.attention import attention_page

        ids, _, _ = split_text(task, "val", DEFAULT_MAX_CHARS)
        out = os.path.join(workdir, "inspect")
        return attention_page(model, vocab, ids, out, title=f"{workdir} step {step}")
    if vocab is not None:
        ids, context, _ = split_text(task, "val", DEFAULT_MAX_CHARS)
        report = lm_report(model, vocab, ids, context=context, task=task, why="", ngram_order=5)
        report["source"] = "the val split"
        report["samples"] = read_samples(workdir)
    else:
        from seqlab.tools.inspect.examples import examples_report

        report = examples_report(model, task, family)
    report["run"] = run_info(config, workdir, step, family, {})
    report["notes"] = []
    path = write_page(report, os.path.join(workdir, "inspect"))
    import wandb

    if wandb.run is not None:
        with open(path, encoding="utf-8") as f:
            wandb.run.log({"inspect": wandb.Html(f.read(), inject=False)}, step=int(step))
    return path


def write_page(report: dict[str, Any], out: str) -> str:
    """OUT/index.html and OUT/*.png; an unwritable folder is one UsageError line."""
    from seqlab.run.writers import atomic_open
    from seqlab.tools.inspect.figures import draw_figures
    from seqlab.tools.inspect.page import render

    try:
        os.makedirs(out, exist_ok=True)
        report["figures"] = draw_figures(report, out)
        path = os.path.join(out, "index.html")
        with atomic_open(path, encoding="utf-8") as f:
            f.write(render(report))
    except OSError as e:
        raise UsageError(f"--out {out}: cannot write there ({e.strerror or e})") from None
    return path


def main(argv: Sequence[str]) -> int:
    """``seqlab inspect``: flags -> ``inspect_workdir`` -> the page's path (and notes)."""

    def define(fv):
        flags.DEFINE_string("workdir", None, "run directory", flag_values=fv)
        flags.DEFINE_string("text", None, "a char LM: inspect this text file", flag_values=fv)
        flags.DEFINE_enum(
            "split", "val", ["val", "test"], "a char LM: inspect this split", flag_values=fv
        )
        flags.DEFINE_string("out", None, "output folder (default: WORKDIR/inspect)", flag_values=fv)
        flags.DEFINE_integer(
            "max_chars",
            2000,
            "inspect at most this many characters (the page holds every unit's activation at "
            "each one)",
            lower_bound=2,
            upper_bound=20000,
            flag_values=fv,
        )
        flags.DEFINE_integer(
            "ngram_order",
            5,
            "the n-gram baseline's order (0 = off)",
            lower_bound=0,
            upper_bound=MAX_NGRAM_ORDER,
            flag_values=fv,
        )
        flags.DEFINE_bool("best", False, "use the best checkpoint, not the latest", flag_values=fv)
        flags.DEFINE_integer(
            "position",
            -1,
            "attention models: the character (index in the inspected text, -1 = the last) "
            "whose attention maps are shown",
            flag_values=fv,
        )

    fv = parse("inspect", argv, define)
    path, notes = inspect_workdir(
        fv.workdir,
        text=fv.text,
        split=fv.split if fv["split"].present else None,
        out=fv.out,
        max_chars=fv.max_chars,
        ngram_order=fv.ngram_order,
        best=fv.best,
        position=fv.position,
    )
    for note in notes:
        print(f"seqlab inspect: {note}", file=sys.stderr)
    print(f"wrote {path} (open it in a browser) and its figures")
    return 0
