"""The markdown tables (and the generate line) printed for each mode: one table writer,
and per mode the columns it shows of that mode's JSON rows."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

Row = dict[str, Any]
Column = tuple[str, Callable[[Row], str]]


def fmt(v: Any, spec: str = ".2f") -> str:
    """``v`` formatted, or ``n/a`` for a missing measurement."""
    return "n/a" if v is None else format(v, spec)


def key(name: str, spec: str = "") -> Callable[[Row], str]:
    """A column showing ``row[name]`` (``n/a`` when missing or None)."""
    return lambda r: fmt(r.get(name), spec) if spec else str(r[name])


def markdown_table(columns: Sequence[Column], rows: Sequence[Row]) -> str:
    """A markdown table: a header of the column titles, then one line per row."""
    lines = [
        "| " + " | ".join(title for title, _ in columns) + " |",
        "|" + "---|" * len(columns),
    ]
    for r in rows:
        cells = [cell(r) for _, cell in columns]
        lines.append("|" + "".join(f" {c} |" if c else " |" for c in cells))
    return "\n".join(lines)


def _peer(r: Row) -> str:
    return r["peer"] if r["impl"] == "-" else f"{r['peer']}-{r['impl']}"


SPEED: list[Column] = [
    ("cell", key("cell")),
    ("B,T,H,L", lambda r: f"{r['batch']},{r['length']},{r['hidden']},{r['layers']}"),
    ("mode", key("mode")),
    ("peer", _peer),
    ("tokens/s", key("tokens_per_s", ",.0f")),
    ("us/step", key("us_per_step", ".0f")),
    ("x torch (wall)", key("ratio_torch", ".2f")),
    ("x torch (cpu)", key("ratio_torch_cpu", ".2f")),
    ("GFLOP/s", key("gflops_per_s", ".1f")),
    (
        "% peak",
        lambda r: fmt(None if r.get("peak_fraction") is None else 100 * r["peak_fraction"], ".0f"),
    ),
    ("first call s", key("first_call_s", ".2f")),
    ("peak RSS MiB", key("peak_rss_mib", ".0f")),
    ("XLA temp MiB", key("xla_temp_mib", ".0f")),
]

COMPILE: list[Column] = [
    ("cell", key("cell")),
    ("impl", key("impl")),
    ("loss", key("loss")),
    ("T", key("length")),
    ("trace+lower s", key("lower_s", ".2f")),
    ("compile s", key("compile_s", ".2f")),
    ("total s", key("total_s", ".2f")),
    ("x shortest T", key("ratio_to_shortest", ".2f")),
]


def _measured(name: str, spec: str) -> Callable[[Row], str]:
    """A memory column that a skipped or failed point leaves empty (its note is shown)."""
    return lambda r: "" if _note(r) else fmt(r.get(name), spec)


def _note(r: Row) -> str | None:
    return r.get("skipped") or r.get("error")


MEMORY: list[Column] = [
    ("cell", key("cell")),
    ("impl", key("impl")),
    ("T", key("length")),
    ("remat", lambda r: "on" if r["remat"] else "off"),
    ("XLA plan GiB", key("xla_need_gib", ".2f")),
    ("XLA temp GiB", lambda r: f"{r['xla_plan'].get('temp_mib', 0.0) / 1024:.2f}"),
    ("peak RSS in a step MiB", lambda r: _note(r) or fmt(r.get("peak_rss_step_abs_mib"), ".0f")),
    ("RSS rise in the step MiB", _measured("peak_rss_step_mib", ".0f")),
    ("step s", _measured("step_s", ".2f")),
]

PROBE: list[Column] = [
    ("cell", key("cell")),
    ("impl", key("impl")),
    ("task", key("task")),
    ("T", key("length")),
    ("fwd+bwd ms", lambda r: f"{r['grad_s'] * 1e3:.1f}"),
    ("probe ms", lambda r: f"{r['probe_s'] * 1e3:.1f}"),
    ("probe / fwd+bwd", key("ratio", ".2f")),
    ("CPU ratio", key("ratio_cpu", ".2f")),
]


LINEAR: list[Column] = [
    ("cell", key("cell")),
    ("T", key("length")),
    ("engine", key("engine")),
    ("tokens/s", key("tokens_per_s", ",.0f")),
    ("x sequential", key("ratio_to_sequential", ".2f")),
    ("XLA plan MiB", key("plan_mib", ".1f")),
    ("compile s", key("compile_s", ".2f")),
]


def speed_table(rows: Sequence[Row]) -> str:
    """``--mode speed``: one line per (pass, peer)."""
    return markdown_table(SPEED, rows)


def compile_table(rows: Sequence[Row]) -> str:
    """``--mode compile``: one line per (impl, loss form, T)."""
    return markdown_table(COMPILE, rows)


def memory_table(rows: Sequence[Row]) -> str:
    """``--mode memory``: one line per (T, remat, impl); a skipped point shows why."""
    return markdown_table(MEMORY, rows)


def probe_table(rows: Sequence[Row]) -> str:
    """``--mode probe``: one line per (task, T, impl)."""
    return markdown_table(PROBE, rows)


def generate_line(g: Row) -> str:
    """``--mode generate``: its one measurement, as a sentence."""
    return (
        f"generate {g['chars']} chars, {g['layers']}x{g['hidden']} {g['cell']}: "
        f"first call {g['first_call_s']:.2f} s, then {g['median_s']:.3f} s "
        f"({g['chars_per_s']:,.0f} chars/s)"
    )


def linear_table(rows: Sequence[Row]) -> str:
    """``--mode linear``: one line per (cell, T, engine)."""
    return markdown_table(LINEAR, rows)
