"""Search spaces: a config file's ``get_search_space(arg)``, beside its ``get_sweep``.

It returns ``{dotted config key: distribution}``. A distribution is an Optuna one
(``optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)``) or a short spec that
this module builds into one:

    ("log", 1e-4, 1e-2)     # log-uniform float
    ("float", 0.0, 0.5)     # uniform float
    ("int", 1, 4)           # integer, both ends included
    ("choice", ["a", "b"])  # categorical

Every key must exist in the config the file builds; a key that does not, or a spec that
cannot be built, is one UsageError naming it.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
from typing import Any

from seqlab.errors import UsageError

SPECS = ("log", "float", "int", "choice")


def build(key: str, spec: Any) -> Any:
    """The Optuna distribution of one ``spec`` (see the module docstring)."""
    from optuna.distributions import (
        BaseDistribution,
        CategoricalDistribution,
        FloatDistribution,
        IntDistribution,
    )

    if isinstance(spec, BaseDistribution):
        return spec
    kind = spec[0] if isinstance(spec, tuple | list) and spec else None
    try:
        if kind in ("log", "float") and len(spec) == 3:
            return FloatDistribution(float(spec[1]), float(spec[2]), log=kind == "log")
        if kind == "int" and len(spec) == 3:
            return IntDistribution(int(spec[1]), int(spec[2]))
        if kind == "choice" and len(spec) == 2 and len(spec[1]) > 0:
            return CategoricalDistribution(list(spec[1]))
    except (TypeError, ValueError) as e:
        why = " ".join(str(e).split())
        raise UsageError(f"search space key {key}: cannot build {spec!r} ({why})") from None
    raise UsageError(
        f"search space key {key}: {spec!r} is not a distribution; use an optuna distribution "
        "or ('log', lo, hi), ('float', lo, hi), ('int', lo, hi), ('choice', [values])"
    )


def load_space(config_path: str, arg: str | None, keys: set[str]) -> dict[str, Any]:
    """``config_path``'s ``get_search_space(arg)`` as {key: optuna distribution}; ``keys``
    are the dotted keys of the config it builds (a key outside them is one line)."""
    path = config_path.split(":", 1)[0]
    if not os.path.isfile(path):
        raise UsageError(f"no config file {path}")
    spec = importlib.util.spec_from_file_location("_seqlab_space_config", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
        fn = getattr(module, "get_search_space", None)
        if not callable(fn):
            raise UsageError(
                f"{path} defines no get_search_space(arg); add one returning "
                "{'optim.learning_rate': ('log', 1e-4, 1e-2), ...}"
            )
        space = fn(arg)
    except UsageError:
        raise
    except (Exception, SystemExit) as e:  # noqa: BLE001 (a user's file: any failure is one line)
        what = " ".join(str(e).split())
        raise UsageError(f"{path}:get_search_space({arg!r}) failed: {what}") from None
    if not isinstance(space, dict) or not space:
        raise UsageError(f"{path}:get_search_space({arg!r}) returned {space!r}; return a dict")
    out = {}
    for key, dist in space.items():
        if key not in keys:
            near = difflib.get_close_matches(str(key), sorted(keys), n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            raise UsageError(f"search space key {key!r} is not a key of {path}'s config{hint}")
        out[key] = build(key, dist)
    return out


def leaves(d: dict, prefix: str = "") -> set[str]:
    """The dotted keys of a nested dict."""
    out: set[str] = set()
    for k, v in d.items():
        out |= leaves(v, f"{prefix}{k}.") if isinstance(v, dict) else {f"{prefix}{k}"}
    return out


def describe(space: dict[str, Any]) -> str:
    """``optim.learning_rate ~ log[0.0001, 0.03], model.cell ~ {rnn, gru}``."""
    parts = []
    for key, d in space.items():
        if hasattr(d, "choices"):
            parts.append(f"{key} ~ {{{', '.join(map(str, d.choices))}}}")
        else:
            kind = "log" if d.log else ("int" if isinstance(d.low, int) else "uniform")
            parts.append(f"{key} ~ {kind}[{d.low:g}, {d.high:g}]")
    return ", ".join(parts)


def suggest(trial: Any, space: dict[str, Any]) -> dict[str, Any]:
    """One value per key, drawn by ``trial`` from its distribution."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution

    out = {}
    for key, d in space.items():
        if isinstance(d, CategoricalDistribution):
            out[key] = trial.suggest_categorical(key, d.choices)
        elif isinstance(d, FloatDistribution):
            out[key] = trial.suggest_float(key, d.low, d.high, log=d.log, step=d.step)
        else:
            out[key] = trial.suggest_int(key, d.low, d.high, log=d.log, step=d.step)
    return out
