"""The errors a user can act on. The command line prints their message as one line and exits
with status 2; anything else is a bug in seqlab and gets its traceback.

Each also derives from the builtin it refines (ValueError, ...), so library callers that catch
those keep working.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class SeqlabError(Exception):
    """Bad input, or a state of the world the user must change; the message says how."""


class ConfigError(SeqlabError, ValueError):
    """A config value is missing, of the wrong type, or out of range."""


class UsageError(SeqlabError, ValueError):
    """A command-line flag, or an argument of a public function (``seqlab.generate``), is
    wrong; both are checked by the same function, named with or without the flag's ``--``."""


class DataError(SeqlabError, ValueError):
    """A task's data cannot be made from what the config names (corpus, sizes, splits)."""


class RunError(SeqlabError, ValueError):
    """A workdir or checkpoint cannot be used as asked."""


class TrainingError(SeqlabError, RuntimeError):
    """Training stopped for a reason the user must act on (non-finite loss, explosion)."""


def unknown(what: str, name: object, known: Iterable[object]) -> str:
    """ "unknown <what> 'x' (did you mean 'y'?); known: a, b": the one wording for a name
    that is not among the known ones."""
    known = sorted(str(k) for k in known)
    hint = difflib.get_close_matches(str(name), known, n=1)
    return (
        f"unknown {what} {name!r}"
        + (f" (did you mean {hint[0]!r}?)" if hint else "")
        + f"; known: {', '.join(known)}"
    )
