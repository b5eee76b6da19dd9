"""What a sweep is: its points, as generators of override dicts (kauldron/big_vision
style) that configs' ``get_sweep`` build with ``product``, ``zip_`` and
``cells_by_lengths``, and the same points as a W&B sweep spec. Running them is
``seqlab.tools.sweep``'s job."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from seqlab.errors import UsageError


def product(**axes: Sequence[Any]) -> Iterator[dict[str, Any]]:
    """``product(**{"model.cell": ["rnn", "lstm"], "data.seq_len": [50, 100]})``."""
    keys = list(axes)
    for values in itertools.product(*(axes[k] for k in keys)):
        yield dict(zip(keys, values, strict=True))


def zip_(**axes: Sequence[Any]) -> Iterator[dict[str, Any]]:
    """Points taken in lockstep: ``zip_(**{"model.cell": [...], "model.init": [...]})``."""
    keys = list(axes)
    for values in zip(*(axes[k] for k in keys), strict=True):
        yield dict(zip(keys, values, strict=True))


def cells_by_lengths(
    arg: str | None, cells: Sequence[str], lengths: Sequence[int]
) -> Iterator[dict[str, Any]]:
    """A ``get_sweep`` of cells x sequence lengths, narrowed by ``arg``
    (``cells=lstm+gru,lengths=100+200``): points set ``model.cell`` and ``data.seq_len``.

    A cell may name an initialization preset after a slash, ``lstm/chrono``: the point also
    sets ``model.init`` (and, for ``chrono``, ``model.chrono_max_len`` to the point's T, the
    dependency length the task asks for), and reports label its rows ``lstm/chrono``."""
    from seqlab.cells.base import INIT_PRESETS
    from seqlab.config import parse_arg

    a = parse_arg(arg, cells="+".join(cells), lengths="+".join(map(str, lengths)))
    chosen = [c.partition("/") for c in a.cells.split("+")]
    for cell, slash, init in chosen:
        if cell not in cells:
            raise UsageError(f"unknown cell {cell!r} in the sweep; choose from {tuple(cells)}")
        if slash and init not in INIT_PRESETS:
            raise UsageError(
                f"unknown init {init!r} in the sweep's {cell}/{init}; choose from {INIT_PRESETS}"
            )
    for (cell, _, init), T in itertools.product(chosen, _lengths(a.lengths)):
        point: dict[str, Any] = {"model.cell": cell, "data.seq_len": T}
        if init:
            point["model.init"] = init
            if init == "chrono":
                point["model.chrono_max_len"] = T
        yield point


def _lengths(text: str) -> list[int]:
    """``100+200`` -> [100, 200]; anything else is one UsageError naming the argument."""
    parts = text.split("+")
    for part in parts:
        if not part.strip().isdigit() or int(part) < 1:
            raise UsageError(
                f"sweep argument lengths={text!r}: {part!r} is not a whole number >= 1 "
                "(lengths are '+'-separated, e.g. lengths=100+200)"
            )
    return [int(p) for p in parts]


def wandb_sweep_yaml(
    config: str,
    workdir: str,
    points: list[dict[str, Any]],
    metric: str = "eval/loss",
    goal: str = "minimize",
    method: str = "grid",
) -> str:
    """A W&B sweep spec running ``seqlab train`` with ``--config.<key>=<value>`` flags.

    Points that form a full grid become one W&B parameter per key; any other set of points
    (zipped keys) becomes a single ``config.sweep_point`` categorical that ``seqlab train``
    expands back into its overrides, so the points W&B runs are exactly ``get_sweep``'s.
    The W&B agent sets WANDB_RUN_ID, which names each run's sub-workdir.
    """
    keys = list(dict.fromkeys(k for p in points for k in p))
    values = {k: list(dict.fromkeys(json.dumps(p.get(k)) for p in points)) for k in keys}
    grid = len(points) == _prod(len(v) for v in values.values()) and all(
        set(p) == set(keys) for p in points
    )
    lines = [
        f"# seqlab sweep of {config} ({len(points)} points)",
        f"method: {method}",
        "metric:",
        f"  name: {metric}",
        f"  goal: {goal}",
        "parameters:",
    ]
    if grid:
        for k in keys:
            lines.append(f"  config.{k}:")
            lines.append(f"    values: [{', '.join(values[k])}]")
    else:
        lines.append("  config.sweep_point:")
        encoded = [json.dumps(json.dumps(p, sort_keys=True)) for p in points]
        lines.append(f"    values: [{', '.join(encoded)}]")
    lines += [
        "command:",
        "  - ${env}",
        "  - ${interpreter}",
        "  - -m",
        "  - seqlab",
        "  - train",
        f"  - --config={config}",
        f"  - --workdir={workdir}/$WANDB_RUN_ID",
        "  - ${args}",
    ]
    return "\n".join(lines) + "\n"


def _prod(xs: Iterable[int]) -> int:
    out = 1
    for x in xs:
        out *= x
    return out
