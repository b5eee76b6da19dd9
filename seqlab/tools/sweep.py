"""Local sweeps: a config file's ``get_sweep(arg)`` expanded into runs, N at a time.

Each point is an ordinary ``seqlab train`` process in its own sub-workdir named from its
overrides, so every point resumes like any run. ``status.json`` in a sub-workdir records how
its last attempt ended; re-running the sweep skips finished points and retries failed ones.
One failing point is recorded with its error and the rest go on.

Sweeps are generators of override dicts (kauldron/big_vision style); ``product`` and ``zip_``
build them.
"""

from __future__ import annotations

import importlib.util
import itertools
import json
import os
import re
import subprocess
import sys
import time
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
    (``cells=lstm+gru,lengths=100+200``): points set ``model.cell`` and ``data.seq_len``."""
    from seqlab.config import parse_arg

    a = parse_arg(arg, cells="+".join(cells), lengths="+".join(map(str, lengths)))
    chosen = a.cells.split("+")
    for cell in chosen:
        if cell not in cells:
            raise UsageError(f"unknown cell {cell!r} in the sweep; choose from {tuple(cells)}")
    for p in product(cell=chosen, T=[int(t) for t in a.lengths.split("+")]):
        yield {"model.cell": p["cell"], "data.seq_len": p["T"]}


def point_name(overrides: dict[str, Any]) -> str:
    """A directory name from overrides: ``cell-gru_seq_len-200`` (leaf names, sanitized)."""
    parts = [f"{k.rsplit('.', 1)[-1]}-{v}" for k, v in overrides.items()]
    return re.sub(r"[^A-Za-z0-9._=-]+", "-", "_".join(parts)) or "default"


def load_sweep(config_path: str, arg: str | None) -> list[dict[str, Any]]:
    """The override dicts of ``config_path``'s ``get_sweep(arg)``."""
    path = config_path.split(":", 1)[0]
    if not os.path.exists(path):
        raise UsageError(f"no config file {path}")
    spec = importlib.util.spec_from_file_location("_seqlab_sweep_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_sweep"):
        raise UsageError(f"{path} defines no get_sweep(arg); add one yielding override dicts")
    points = list(module.get_sweep(arg))
    if not points:
        raise UsageError(f"{path}:get_sweep({arg!r}) yielded no points")
    names = [point_name(p) for p in points]
    if len(set(names)) != len(names):
        raise UsageError("two sweep points map to the same directory name; make them differ")
    return points


def _status(workdir: str) -> dict[str, Any]:
    try:
        with open(os.path.join(workdir, "status.json")) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return {}


def _write_status(workdir: str, status: dict[str, Any]) -> None:
    from seqlab.run.writers import write_json  # here: seqlab.run loads jax; configs import us

    os.makedirs(workdir, exist_ok=True)
    write_json(os.path.join(workdir, "status.json"), status, indent=1)


def _command(
    config: str, workdir: str, overrides: dict[str, Any], extra: Iterable[str]
) -> list[str]:
    python = os.environ.get("PYTHON", sys.executable)
    flags = [f"--config.{k}={v}" for k, v in overrides.items()]
    return [
        python,
        "-m",
        "seqlab",
        "train",
        "--config",
        config,
        "--workdir",
        workdir,
        *flags,
        *extra,
    ]


def run_sweep(
    config: str,
    workdir: str,
    *,
    sweep_arg: str | None = None,
    parallel: int = 1,
    extra: Sequence[str] = (),
    log=print,
) -> dict[str, dict[str, Any]]:
    """Runs every point not yet done; returns {point name: status}."""
    points = load_sweep(config, sweep_arg)
    os.makedirs(workdir, exist_ok=True)
    todo, statuses = [], {}
    for p in points:
        name = point_name(p)
        sub = os.path.join(workdir, name)
        st = _status(sub)
        if st.get("state") == "done":
            statuses[name] = st
            continue
        todo.append((name, sub, p))
    log(
        f"sweep: {len(points)} points, {len(points) - len(todo)} done, {len(todo)} to run, "
        f"{parallel} at a time"
    )
    running: list[tuple[str, str, dict, subprocess.Popen, float, Any]] = []
    while todo or running:
        while todo and len(running) < max(1, parallel):
            name, sub, p = todo.pop(0)
            os.makedirs(sub, exist_ok=True)
            _write_status(sub, {"state": "running", "overrides": p})
            logf = open(os.path.join(sub, "train.log"), "w")  # noqa: SIM115 (closed below)
            proc = subprocess.Popen(
                _command(config, sub, p, extra), stdout=logf, stderr=subprocess.STDOUT
            )
            running.append((name, sub, p, proc, time.time(), logf))
        time.sleep(0.2)
        for item in list(running):
            name, sub, p, proc, t0, logf = item
            if proc.poll() is None:
                continue
            running.remove(item)
            logf.close()
            st = {
                "overrides": p,
                "returncode": proc.returncode,
                "wall_time_s": round(time.time() - t0, 2),
                "state": "done" if proc.returncode == 0 else "failed",
            }
            if proc.returncode != 0:
                st["error"] = _last_error(os.path.join(sub, "train.log"))
            _write_status(sub, st)
            statuses[name] = st
            log(f"sweep: {name} {st['state']}" + (f": {st['error']}" if "error" in st else ""))
    return statuses


def _last_error(log_path: str) -> str:
    with open(log_path, errors="replace") as f:
        lines = [ln.strip() for ln in f if ln.strip()]
    for ln in reversed(lines):
        if "error" in ln.lower() or "Error" in ln:
            return ln[-300:]
    return lines[-1][-300:] if lines else "no output"


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
