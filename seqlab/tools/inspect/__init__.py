"""``seqlab inspect``: what a trained model does, as one self-contained HTML page plus PNGs.

The command and its input checks are in ``cli`` (re-exported here, so
``seqlab.tools.inspect.main`` and ``log_page`` keep their import paths); the page's sections
in ``lm`` (char LMs: probabilities, units, gate saturation, n-gram gain), ``examples`` (other
tasks) and ``attention`` (attention maps); the HTML in ``page`` with its inline CSS and JS in
``script``; the PNGs in ``figures``.
"""

from seqlab.tools.inspect.cli import (
    CONTEXT,
    DEFAULT_MAX_CHARS,
    MAX_NGRAM_ORDER,
    MAX_SAMPLE_ROWS,
    MIN_STATS_SYMBOLS,
    check_out,
    inspect_workdir,
    load_task,
    log_page,
    main,
    read_samples,
    read_text,
    run_info,
    split_text,
    too_short,
    write_page,
)

__all__ = [
    "CONTEXT",
    "DEFAULT_MAX_CHARS",
    "MAX_NGRAM_ORDER",
    "MAX_SAMPLE_ROWS",
    "MIN_STATS_SYMBOLS",
    "check_out",
    "inspect_workdir",
    "load_task",
    "log_page",
    "main",
    "read_samples",
    "read_text",
    "run_info",
    "split_text",
    "too_short",
    "write_page",
]
