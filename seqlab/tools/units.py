"""What hidden units and gates do over a text: named properties of the text, the units that
track them best, gate saturation, and where a model gains on a baseline, by character class.

Plain NumPy on arrays a tool has already computed (no model, no HTML): ``seqlab inspect``
and experiments/interpretable_cells use it; Karpathy, Johnson & Fei-Fei 2015 ("Visualizing
and Understanding Recurrent Networks") is the reference for each analysis.

Every property is causal: its value at position t describes the text up to and including
character t, the same text the unit's state at t has read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: what a unit's score is (said on the page and in results.md)
SCORE = "|Pearson r| between the unit's activation and the property over the text"
#: a gate value below LEFT is left-saturated, above RIGHT right-saturated (KJF15 Fig. 3)
LEFT, RIGHT = 0.1, 0.9
OPEN, CLOSE = "([{", ")]}"


def in_quote(text: str) -> np.ndarray:
    """1 inside a double quote: an odd number of ``"`` read so far (the opening one counts)."""
    return (np.cumsum([c == '"' for c in text]) % 2).astype(np.float64)


def bracket_depth(text: str) -> np.ndarray:
    """Open ``( [ {`` minus closed ``) ] }`` so far, never below 0."""
    out, d = np.zeros(len(text)), 0
    for i, c in enumerate(text):
        d = d + 1 if c in OPEN else max(d - 1, 0) if c in CLOSE else d
        out[i] = d
    return out


def line_position(text: str) -> np.ndarray:
    """Characters since the last newline (0 at the newline itself)."""
    out, col = np.zeros(len(text)), 0
    for i, c in enumerate(text):
        col = 0 if c == "\n" else col + 1
        out[i] = col
    return out


def indentation(text: str) -> np.ndarray:
    """Leading spaces/tabs of the current line read so far (a tab counts 4)."""
    out, indent, leading = np.zeros(len(text)), 0, True
    for i, c in enumerate(text):
        if c == "\n":
            indent, leading = 0, True
        elif leading and c in " \t":
            indent += 4 if c == "\t" else 1
        else:
            leading = False
        out[i] = indent
    return out


def python_lex(text: str) -> tuple[np.ndarray, np.ndarray]:
    """(inside a # comment, inside a string literal) per character, by a small Python lexer:
    ' " ''' \"\"\" strings with backslash escapes; a one-quote string ends at its line's end.
    Quotes and the ``#`` count as inside."""
    comment, string = np.zeros(len(text)), np.zeros(len(text))
    state, i, n = "", 0, len(text)  # state: "" code, "#" comment, else the string's delimiter
    while i < n:
        c = text[i]
        if state == "#":
            if c == "\n":
                state = ""
            else:
                comment[i] = 1
        elif state:
            string[i] = 1
            if c == "\\" and i + 1 < n:
                string[i + 1] = 1
                i += 1
            elif text.startswith(state, i):
                string[i : i + len(state)] = 1
                i += len(state) - 1
                state = ""
            elif c == "\n" and len(state) == 1:
                string[i], state = 0, ""
        elif c == "#":
            comment[i], state = 1, "#"
        elif c in "'\"":
            state = c * 3 if text.startswith(c * 3, i) else c
            string[i : i + len(state)] = 1
            i += len(state) - 1
        i += 1
    return comment, string


def in_comment(text: str) -> np.ndarray:
    return python_lex(text)[0]


def in_string(text: str) -> np.ndarray:
    return python_lex(text)[1]


#: name -> (what it is, how to compute it from the text)
PROPERTIES: dict[str, tuple[str, Callable[[str], np.ndarray]]] = {
    "quote": ('inside a double quote "..."', in_quote),
    "bracket_depth": ("nesting depth of ( [ {", bracket_depth),
    "line_position": ("characters since the last newline", line_position),
    "indentation": ("leading whitespace of the current line", indentation),
    "comment": ("inside a Python # comment", in_comment),
    "string": ("inside a Python string literal", in_string),
}


def text_properties(text: str, context: str = "") -> dict[str, np.ndarray]:
    """Every property in ``PROPERTIES`` of ``text``, read after ``context`` (so a text cut
    from a corpus does not start outside a string it is in): name -> (len(text),) floats."""
    return {name: fn(context + text)[len(context) :] for name, (_, fn) in PROPERTIES.items()}


def pearson_columns(acts: np.ndarray, prop: np.ndarray) -> np.ndarray:
    """Pearson r of each column of ``acts`` (T, H) with ``prop`` (T,); NaN where either is
    constant over the text (no correlation is defined)."""
    a = np.asarray(acts, np.float64)
    p = np.asarray(prop, np.float64)
    a = a - a.mean(axis=0)
    p = p - p.mean()
    denom = np.sqrt((a * a).sum(axis=0) * (p * p).sum())
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (a * p[:, None]).sum(axis=0) / denom
    return np.where(denom > 1e-12 * max(len(p), 1), r, np.nan)


@dataclass(frozen=True)
class UnitScore:
    """One unit's score for one property: ``series`` names the activations ("layer 1 h")."""

    series: str
    unit: int
    r: float

    @property
    def score(self) -> float:
        return abs(self.r)


def rank_units(
    acts: dict[str, np.ndarray], props: dict[str, np.ndarray], top: int = 5
) -> dict[str, list[UnitScore]]:
    """For each property, the ``top`` units over every series of ``acts`` ({series: (T, H)})
    by |Pearson r|, best first. A property constant over the text gets no units."""
    out: dict[str, list[UnitScore]] = {}
    for name, prop in props.items():
        scored = []
        for series, a in acts.items():
            r = pearson_columns(a, prop)
            scored += [UnitScore(series, int(u), float(r[u])) for u in np.flatnonzero(~np.isnan(r))]
        scored.sort(key=lambda s: (-s.score, s.series, s.unit))
        out[name] = scored[:top]
    return out


def saturation(gate: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per unit of ``gate`` (T, H), the fraction of steps left-saturated (< LEFT) and
    right-saturated (> RIGHT)."""
    g = np.asarray(gate)
    return (g < LEFT).mean(axis=0), (g > RIGHT).mean(axis=0)


#: character classes for the error analysis, first match wins (``char_class``)
CLASSES = (
    "newline",
    "line start",
    "closing bracket",
    "opening bracket",
    "quote",
    "space",
    "digit",
    "word start",
    "inside a word",
    "other punctuation",
)


def char_class(prev: str, c: str) -> str:
    """The class (``CLASSES``) of character ``c`` read after ``prev``."""
    if c == "\n":
        return "newline"
    if prev == "\n":
        return "line start"
    if c in CLOSE:
        return "closing bracket"
    if c in OPEN:
        return "opening bracket"
    if c in "'\"":
        return "quote"
    if c.isspace():
        return "space"
    if c.isdigit():
        return "digit"
    if c.isalpha() or c == "_":
        return "inside a word" if prev.isalnum() or prev == "_" else "word start"
    return "other punctuation"


@dataclass(frozen=True)
class GainRow:
    """Mean bits per character of the model and of the baseline on one group of characters;
    ``gain`` = baseline - model (positive: the model is better)."""

    name: str
    count: int
    model_bits: float
    baseline_bits: float

    @property
    def gain(self) -> float:
        return self.baseline_bits - self.model_bits


def gain_table(
    text: str,
    model_bits: np.ndarray,
    baseline_bits: np.ndarray,
    by: str = "class",
    prev: str = "",
) -> list[GainRow]:
    """Rows by mean gain, largest first (``*_bits[t]``: the surprisal of ``text[t]``, NaN
    where there is no prediction; ``prev`` is the character before the text). ``by``:
    ``class`` (``char_class``) or ``char`` (each character seen at least 5 times)."""
    groups: dict[str, list[int]] = {}
    for t in np.flatnonzero(~(np.isnan(model_bits) | np.isnan(baseline_bits))):
        before = text[t - 1] if t else prev
        key = char_class(before, text[t]) if by == "class" else text[t]
        groups.setdefault(key, []).append(int(t))
    rows = [
        GainRow(k, len(ix), float(np.mean(model_bits[ix])), float(np.mean(baseline_bits[ix])))
        for k, ix in groups.items()
        if by == "class" or len(ix) >= 5
    ]
    return sorted(rows, key=lambda r: -r.gain)
