"""Flag parsing for the ``seqlab`` command: a command's flags (absl), its ``--config``
file with ``--config.KEY=VALUE`` overrides (ml_collections), and every way they can be wrong
turned into one ``UsageError`` line (an unknown key with the nearest one suggested, a config
file that fails to load, ...)."""

from __future__ import annotations

import difflib
import json
import logging
import os
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags
from ml_collections import ConfigDict

from seqlab.errors import UsageError


def _flatten(d: Any, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if hasattr(v, "items"):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def parse(
    name: str,
    argv: Sequence[str],
    define: Callable[[flags.FlagValues], None],
    with_config: bool = False,
) -> flags.FlagValues:
    from ml_collections import config_flags

    fv = flags.FlagValues()
    full = [f"seqlab {name}", *argv]
    if with_config and (problem := config_problem(argv)):
        raise UsageError(problem)
    if with_config:
        config_flags.DEFINE_config_file(
            "config",
            None,
            "config file, FILE.py[:ARG]",
            flag_values=fv,
            lock_config=True,
            sys_argv=full,
        )
    define(fv)
    if "--help" in argv or "-h" in argv:
        print(f"usage: seqlab {name} [flags]\n" + fv.get_help())
        raise SystemExit(0)
    absl_log = logging.getLogger("absl")
    level = absl_log.level
    absl_log.setLevel(logging.ERROR)  # ml_collections warns on stderr when get_config -> None
    try:
        fv(full)
        if with_config and fv["config"].value is None:
            if any(a == "--config" or a.startswith("--config=") for a in argv):
                raise UsageError("bad --config: get_config() returned None; return a ConfigDict")
            raise UsageError("--config is required, e.g. --config configs/charlm.py")
        if with_config:
            fv.config.get("seed")  # a config file that failed to load raises only on access
            if not isinstance(fv.config, ConfigDict):
                raise UsageError(
                    f"bad --config: get_config() returned a {type(fv.config).__name__}; "
                    "return an ml_collections.ConfigDict"
                )
    except flags.Error as e:
        raise UsageError(_flag_error(str(e), fv, with_config)) from None
    except (AttributeError, KeyError, TypeError) as e:  # an override naming a missing key
        msg = None
        if with_config and any(a.startswith("--config.") for a in argv):
            try:
                msg = _unknown_override(argv)
            except Exception:  # the config itself does not load: report that below
                msg = None
        raise UsageError(msg or f"bad --config: {type(e).__name__}: {one_line(e)}") from None
    except OSError as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        raise UsageError("cannot load --config: " + lines[-1]) from None
    except UsageError:
        raise
    except SystemExit as e:  # sys.exit() in the config file: nothing was loaded, say so
        raise UsageError(
            f"bad --config: the config file called sys.exit({e.code!r}) while loading; "
            "get_config(arg) must return a ConfigDict"
        ) from None
    except Exception as e:  # the config file raised, or is not valid Python
        if os.environ.get("SEQLAB_DEBUG"):
            raise
        raise UsageError(f"bad --config: {type(e).__name__}: {one_line(e)}") from None
    finally:
        absl_log.setLevel(level)
    for f in ("workdir",):
        if f in fv and fv[f].value is None:
            raise UsageError(f"--{f} is required")
    for f in PATH_FLAGS:
        if f in fv and isinstance(fv[f].value, str) and not fv[f].value.strip():
            raise UsageError(f"--{f} is empty; give it a path, e.g. --{f}={PATH_FLAGS[f]}")
    return fv


#: flags naming a path, which an empty value (``--workdir ''``) cannot be; an example each
PATH_FLAGS = {"workdir": "runs/mine", "out": "inspect_out", "text": "notes.txt", "json": "out.json"}


def config_value(argv: Sequence[str]) -> str | None:
    """The value of ``--config`` in ``argv`` (the last one given), or None."""
    found = None
    for i, a in enumerate(argv):
        if a.startswith("--config="):
            found = a.split("=", 1)[1]
        elif a == "--config" and i + 1 < len(argv):
            found = argv[i + 1]
    return found


def config_problem(argv: Sequence[str]) -> str | None:
    """What is wrong with the path in ``--config FILE.py[:ARG]`` before anything loads it
    (empty, a directory, missing), in one line; None when it names a file."""
    value = config_value(argv)
    if value is None:
        return None
    path = value.split(":", 1)[0]
    if not path.strip():
        return "--config is empty; give a config file, e.g. --config configs/charlm.py"
    if os.path.isdir(path):
        files = sorted(f for f in os.listdir(path) if f.endswith(".py"))[:3]
        eg = f" (it holds {', '.join(files)})" if files else ""
        return f"--config {path} is a directory; give a config file in it{eg}"
    if not os.path.exists(path):
        return f"--config {path}: no such file; give a config file, e.g. configs/charlm.py"
    return None


def one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


def _flag_error(msg: str, fv: flags.FlagValues, with_config: bool) -> str:
    msg = msg.strip()
    if "Error whilst parsing config file" in msg:  # get_config raised: keep its last line
        return "bad --config: " + msg.splitlines()[-1].strip()
    if msg.startswith("Unknown command line flag"):
        name = msg.split("'")[1] if "'" in msg else msg
        if name.startswith("config.") and with_config:
            return _unknown_key(name.split(".", 1)[1], _flatten(fv["config"].value))
        hint = difflib.get_close_matches(name, list(fv), n=1)
        return f"unknown flag --{name}" + (f" (did you mean --{hint[0]}?)" if hint else "")
    return msg.splitlines()[0]


def _unknown_key(name: str, keys: list[str]) -> str:
    """'unknown config key' with the nearest existing key as a suggestion; a key every
    config has, missing from this one, is said to be missing."""
    from seqlab.config import base_config

    if name in _flatten(base_config()):
        return (
            f"the config has no key {name!r}: its get_config built it without it; start "
            "from seqlab.tasks.task_config(name), which has every key"
        )
    leaf = name.rsplit(".", 1)[-1]
    hint = (
        difflib.get_close_matches(name, keys, n=1)
        or [
            k
            for k in keys
            if k.rsplit(".", 1)[-1]
            in difflib.get_close_matches(leaf, [x.rsplit(".", 1)[-1] for x in keys], n=1)
        ][:1]
    )
    return f"unknown config key {name!r}" + (f" (did you mean --config.{hint[0]}?)" if hint else "")


def _unknown_override(argv: Sequence[str]) -> str:
    """Finds which --config.KEY override names a missing key, by loading the bare config."""
    from ml_collections import config_flags

    path = [a for a in argv if a.startswith("--config=")] or [
        f"--config={argv[i + 1]}" for i, a in enumerate(argv[:-1]) if a == "--config"
    ]
    fv = flags.FlagValues()
    bare = ["seqlab", path[0]] if path else ["seqlab"]
    config_flags.DEFINE_config_file("config", None, "", flag_values=fv, sys_argv=bare)
    fv(bare)
    keys = _flatten(fv.config)
    for a in argv:
        if a.startswith("--config."):
            name = a.split("=", 1)[0][len("--config.") :]
            if name not in keys:
                return _unknown_key(name, keys)
    return "an override names a key the config does not have"


def expand_sweep_point(argv: Sequence[str]) -> list[str]:
    """``--config.sweep_point=<json dict>`` (from a W&B sweep) -> its --config.KEY=VALUE."""
    out = []
    for a in argv:
        if a.startswith("--config.sweep_point="):
            try:
                point = json.loads(a.split("=", 1)[1])
            except json.JSONDecodeError as e:
                raise UsageError(f"--config.sweep_point is not JSON: {e}") from None
            out += [f"--config.{k}={v}" for k, v in point.items()]
        else:
            out.append(a)
    return out


def split_own(argv: Sequence[str], own: set[str], bools: set[str]) -> tuple[list, list]:
    """(this command's flags, the rest): the rest pass on to every point of a sweep.
    ``own`` are the command's flag names (``--x``); ``bools`` those taking no value."""
    mine: list[str] = []
    passthrough: list[str] = []
    i = 0
    while i < len(argv):
        a = argv[i]
        name = a.split("=", 1)[0]
        n = 2 if "=" not in a and name in own - bools else 1
        (mine if name in own else passthrough).extend(argv[i : i + n])
        i += n
    return mine, passthrough


def define_sweep(fv: flags.FlagValues, workdir_help: str, sweep_help: str) -> None:
    """The flags ``seqlab sweep`` and ``seqlab probe`` share."""
    flags.DEFINE_string(
        "config", None, "config file with get_sweep(), FILE.py[:ARG]", flag_values=fv
    )
    flags.DEFINE_string("workdir", None, workdir_help, flag_values=fv)
    flags.DEFINE_integer("parallel", 1, "points run at once", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("sweep", None, sweep_help, flag_values=fv)
