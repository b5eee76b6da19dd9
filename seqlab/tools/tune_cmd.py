"""``seqlab tune`` and ``seqlab study``: flags -> ``seqlab.tools.tune`` / ``study``.

    seqlab tune --config FILE.py[:ARG] --workdir DIR --trials N [--storage URL] [--parallel K]
                [--study NAME] [--space ARG] [--pruner median|halving|none]
                [--startup_trials S] [--config.KEY=VALUE ...]  (applied to every trial)

Re-running the same command resumes the study; the same command on N machines with one
``--storage postgresql://...`` shares it.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from typing import Any

from absl import flags

from seqlab.errors import UsageError
from seqlab.tools.flags import parse, split_own

OWN = {"--config", "--workdir", "--trials", "--storage", "--parallel", "--study", "--space"}
OWN |= {"--pruner", "--startup_trials", "--help", "-h"}


def define_tune(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("config", None, "config file with get_search_space()", flag_values=fv)
    flags.DEFINE_string("workdir", None, "study directory (re-running resumes)", flag_values=fv)
    flags.DEFINE_integer("trials", None, "finished trials in all", lower_bound=1, flag_values=fv)
    flags.DEFINE_string(
        "storage", None, "database URL (default: sqlite:///WORKDIR/study.db)", flag_values=fv
    )
    flags.DEFINE_integer("parallel", 1, "trials at once here", lower_bound=1, flag_values=fv)
    flags.DEFINE_string("study", None, "study name (default: WORKDIR's name)", flag_values=fv)
    flags.DEFINE_string("space", None, "argument for get_search_space(arg)", flag_values=fv)
    flags.DEFINE_enum("pruner", "median", ["median", "halving", "none"], "", flag_values=fv)
    flags.DEFINE_integer(
        "startup_trials", 5, "median pruner: trials before pruning", lower_bound=0, flag_values=fv
    )


def make_tune(fv: Any, passthrough: list[str], log: Any = print) -> Any:
    """The ``Tune`` of parsed flags: the config built once (keys, task metric), its space."""
    from seqlab.tasks import complete_config, get_task_class
    from seqlab.tools import space as spaces
    from seqlab.tools.sweep import _parse_train, make_sweep_dir
    from seqlab.tools.tune import Tune

    for name in ("config", "workdir", "trials"):
        if getattr(fv, name) is None:
            raise UsageError(f"--{name} is required (seqlab tune --help)")
    config = complete_config(_parse_train(["--config", fv.config, *passthrough]))
    arg = fv.space if fv.space is not None else fv.config.partition(":")[2] or None
    space = spaces.load_space(fv.config, arg, spaces.leaves(config.to_dict()))
    both = [k for k in space if any(p.startswith(f"--config.{k}=") for p in passthrough)]
    if both:
        raise UsageError(f"{both[0]} is both searched and set by a flag; drop one")
    task = get_task_class(config.task.name)
    make_sweep_dir(fv.workdir)
    name = fv.study or re.sub(r"[^A-Za-z0-9._-]+", "-", os.path.basename(fv.workdir.rstrip("/")))
    return Tune(
        config=fv.config,
        workdir=fv.workdir,
        trials=fv.trials,
        space=space,
        metric=task.best_metric,
        mode=task.best_mode,
        storage=fv.storage,
        study_name=name or "study",
        parallel=fv.parallel,
        pruner=fv.pruner,
        startup_trials=fv.startup_trials,
        extra=list(passthrough),
        log=log,
    )


def cmd_tune(argv: Sequence[str]) -> int:
    mine, passthrough = split_own(argv, OWN, {"--help", "-h"})
    fv = parse("tune", mine, define_tune)
    from seqlab.run.writers import write_json
    from seqlab.tools.tune import run_tune, summary

    t = make_tune(fv, passthrough)
    from seqlab.tools.space import describe

    t.log(f"tune: searching {describe(t.space)}")
    study = run_tune(t)
    out = summary(study, t)
    write_json(os.path.join(t.workdir, "tune.json"), out, indent=1)
    print(json.dumps(out, indent=1))
    return 0
