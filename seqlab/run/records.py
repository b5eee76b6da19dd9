"""Reading back the JSON and JSONL files seqlab writes (metrics.jsonl, samples.jsonl,
config.json, status.json, results.json, probe.json, ...): they may have been damaged or edited
since, so nothing read here is trusted.

- ``read_jsonl``: the rows of a JSONL file that can be used; each line that cannot (bytes that
  are not UTF-8, not JSON, not an object, a field of the wrong type) is skipped and counted,
  and the file gets one warning line saying how many and why.
- ``read_json``: a JSON file's object, or None (with one warning line when the file exists but
  cannot be used).

A schema is ``{key: type or tuple of types}``: each named key must be there with that type;
the key ``"*"`` types every other value. ``bool`` is never taken for ``int``.
"""

from __future__ import annotations

import json
import logging
import os
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger("seqlab")

Schema = dict[str, Any]
#: metrics.jsonl: an integer step; numbers, or strings for non-finite values ("nan")
METRICS: Schema = {"step": int, "*": (int, float, str)}
#: samples.jsonl: an integer step and text
SAMPLES: Schema = {"step": int, "*": str}


@dataclass
class Lines:
    """What ``read_jsonl`` found: the usable rows and why the others were skipped."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    skipped: Counter = field(default_factory=Counter)
    raw_skipped: list[bytes] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.rows) + sum(self.skipped.values())

    def summary(self, path: str) -> str:
        """``PATH: skipped 3 of 12 lines it cannot use (2 not UTF-8, 1 not an object)``."""
        why = ", ".join(f"{n} {reason}" for reason, n in self.skipped.most_common())
        n = sum(self.skipped.values())
        return f"{path}: skipped {n} of {self.total} line(s) that cannot be used ({why})"


def _is(v: Any, types: Any) -> bool:
    types = types if isinstance(types, tuple) else (types,)
    if isinstance(v, bool) and bool not in types:
        return False
    if isinstance(v, float) and float not in types and int in types:
        return False
    return isinstance(v, types)


def check(obj: Any, schema: Schema | None) -> str | None:
    """Why ``obj`` does not fit ``schema`` (a few words), or None when it does."""
    if not isinstance(obj, dict):
        return "not an object"
    if not schema:
        return None
    for key, types in schema.items():
        if key == "*":
            continue
        if key not in obj:
            return f"no {key!r}"
        if not _is(obj[key], types):
            return f"{key!r} of the wrong type"
    rest = schema.get("*")
    if rest is not None:
        for key, v in obj.items():
            if key not in schema and not _is(v, rest):
                return "a value of the wrong type"
    return None


def parse_line(raw: bytes, schema: Schema | None) -> tuple[dict[str, Any] | None, str]:
    """(the row, "") or (None, why it cannot be used)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return None, "not UTF-8"
    try:
        obj = json.loads(text)
    except ValueError:
        return None, "not JSON"
    why = check(obj, schema)
    return (obj, "") if why is None else (None, why)


def scan_jsonl(path: str, schema: Schema | None = None) -> Lines:
    """Every line of ``path`` sorted into usable rows and skipped ones (no warning). A torn
    last line (a writer killed mid-line) counts as skipped like any other. OSError when the
    file cannot be opened."""
    out = Lines()
    with open(path, "rb") as f:
        for raw in f:
            if not raw.strip():
                continue
            row, why = parse_line(raw, schema)
            if why == "not JSON" and not raw.endswith(b"\n"):
                why = "a torn last line (its writer stopped mid-line)"
            if row is None:
                out.skipped[why] += 1
                out.raw_skipped.append(raw if raw.endswith(b"\n") else raw + b"\n")
            else:
                out.rows.append(row)
    return out


def read_jsonl(
    path: str, schema: Schema | None = None, *, warn: Callable[[str], None] | None = None
) -> list[dict[str, Any]]:
    """The usable rows of ``path`` ([] when it is missing); one warning line when some were
    skipped (``warn``, default: the ``seqlab`` logger)."""
    try:
        lines = scan_jsonl(path, schema)
    except FileNotFoundError:
        return []
    except OSError as e:
        (warn or log.warning)(f"{path}: cannot be read ({e.strerror or e}); ignored")
        return []
    if lines.skipped:
        (warn or log.warning)(lines.summary(path))
    return lines.rows


def load_json(path: str, schema: Schema | None = None) -> tuple[Any, str]:
    """(the object, "") or (None, why it cannot be used); a missing file is (None, "missing")."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except FileNotFoundError:
        return None, "missing"
    except OSError as e:
        return None, f"cannot be read ({e.strerror or e})"
    obj, why = parse_line(raw, schema)
    return obj, why


def read_json(
    path: str,
    schema: Schema | None = None,
    *,
    warn: Callable[[str], None] | None = None,
    set_aside: bool = False,
) -> dict[str, Any] | None:
    """The object in ``path``, or None: quietly when it is missing, with one warning line
    when it exists but cannot be used. ``set_aside``: such a file (about to be written
    anew) is first renamed ``PATH.unreadable``, so nothing is lost."""
    obj, why = load_json(path, schema)
    if obj is None and why != "missing":
        note = "ignored"
        if set_aside:
            try:
                os.replace(path, path + ".unreadable")
                note = f"moved to {path}.unreadable"
            except OSError as e:
                note = f"ignored (could not move it aside: {e.strerror or e})"
        (warn or log.warning)(f"{path}: {why}; {note}")
    return obj
