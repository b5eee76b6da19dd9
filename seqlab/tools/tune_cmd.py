"""``seqlab tune`` and ``seqlab study``: flags -> ``seqlab.tools.tune`` / ``study``
(``seqlab study``'s flags: see ``seqlab.tools.study``).

    seqlab tune --config FILE.py[:ARG] --workdir DIR --trials N [--storage URL] [--parallel K]
                [--study NAME] [--space ARG] [--pruner median|halving|none]
                [--startup_trials S] [--sampler_seed N] [--config.KEY=VALUE ...]
                (the --config.KEY=VALUE flags apply to every trial)

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
OWN |= {"--pruner", "--startup_trials", "--sampler_seed", "--baseline", "--nobaseline"}
OWN |= {"--help", "-h"}
BOOLS = {"--help", "-h", "--baseline", "--nobaseline"}
STUDY_OWN = OWN | {"--arms", "--seeds", "--match_params"}


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
    flags.DEFINE_integer(
        "sampler_seed",
        None,
        "seeds the TPE sampler: one worker with --parallel 1 then proposes the same trials on "
        "every run; give each worker of a shared study its own (default: Optuna's random seed)",
        flag_values=fv,
    )
    flags.DEFINE_boolean(
        "baseline",
        True,
        "first trial: the config's own values of the searched keys (the fixed recipe), so the "
        "tuned result is never worse on validation than the recipe",
        flag_values=fv,
    )


def make_tune(fv: Any, passthrough: list[str], log: Any = print) -> Any:
    """The ``Tune`` of parsed flags: the config built once (keys, task metric), its space."""
    from seqlab.run.validate import validate
    from seqlab.tasks import complete_config, get_task_class
    from seqlab.tools import space as spaces
    from seqlab.tools.sweep import _parse_train, make_sweep_dir
    from seqlab.tools.tune import Tune, baseline_values

    for name in ("config", "workdir", "trials"):
        if getattr(fv, name) is None:
            raise UsageError(f"--{name} is required (seqlab tune --help)")
    config = complete_config(_parse_train(["--config", fv.config, *passthrough]))
    validate(config)  # a bad key or value: one line now, not one failed trial
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
        sampler_seed=getattr(fv, "sampler_seed", None),
        baseline=baseline_values(config, space) if getattr(fv, "baseline", True) else {},
        extra=list(passthrough),
        log=log,
    )


def cmd_tune(argv: Sequence[str]) -> int:
    mine, passthrough = split_own(argv, OWN, BOOLS)
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


def cmd_study(argv: Sequence[str]) -> int:
    """Each arm tuned with the same budget, its best retrained with K seeds, then statistics."""
    mine, passthrough = split_own(argv, STUDY_OWN, BOOLS)

    def define(fv: flags.FlagValues) -> None:
        define_tune(fv)
        flags.DEFINE_string("arms", None, "KEY=V1+V2+...: the arms compared", flag_values=fv)
        flags.DEFINE_integer("seeds", 5, "seeds per arm's retrain", lower_bound=1, flag_values=fv)
        flags.DEFINE_integer(
            "match_params",
            None,
            "give each arm the model.hidden_size whose model has about N parameters",
            lower_bound=1,
            flag_values=fv,
        )

    fv = parse("study", mine, define)
    from types import SimpleNamespace

    from seqlab.tasks import complete_config
    from seqlab.tools import study as st
    from seqlab.tools.sweep import _parse_train, make_sweep_dir
    from seqlab.tools.tune import TRIALS_DIR, run_tune

    if fv.arms is None or fv.workdir is None:
        raise UsageError("--arms and --workdir are required (seqlab study --help)")
    key, values = st.parse_arms(fv.arms)
    make_sweep_dir(fv.workdir)
    base = fv.study or os.path.basename(fv.workdir.rstrip("/")) or "study"
    tunes, studies, capacity = {}, {}, {}
    width = "model.hidden_size"
    if fv.match_params and (
        key == width or any(p.startswith(f"--config.{width}=") for p in passthrough)
    ):
        raise UsageError(f"--match_params sets {width} per arm; do not also set or vary it")
    for v in values:  # every arm's config and space, checked before any trains
        over = [*passthrough, f"--config.{key}={v}"]
        if fv.match_params:
            h, n = st.matched_width(fv.config, over, fv.match_params)
            capacity[v] = {"hidden_size": h, "params": n}
            over.append(f"--config.{width}={h}")
        spec = SimpleNamespace(
            **{n: getattr(fv, n) for n in ("config", "trials", "storage", "parallel")},
            **{n: getattr(fv, n) for n in ("space", "pruner", "startup_trials")},
            sampler_seed=fv.sampler_seed,
            baseline=fv.baseline,
            workdir=os.path.join(fv.workdir, "arms", v),
            study=f"{base}-{v}",
        )
        tunes[v] = make_tune(spec, over)
        if key in tunes[v].space or (fv.match_params and width in tunes[v].space):
            raise UsageError(f"{key if key in tunes[v].space else width} is both fixed per arm "
                             "and searched; drop it from one")  # fmt: skip
    base_config = complete_config(_parse_train(["--config", fv.config, *passthrough]))
    steps = int(base_config.train.num_steps)
    b = st.budget(tunes[values[0]], steps)
    print(
        f"study: {len(values)} arms of {key}; budget per arm: {b['trials']} trials of up to "
        f"{steps} steps (pruner {b['pruner']}), then {fv.seeds} seeds"
    )
    record: dict[str, Any] = {"config": fv.config, "arm_key": key, "arms": values, "budget": b}
    record.update(seeds=fv.seeds, best={}, steps_trained={}, capacity=capacity)
    if capacity:
        print(f"study: capacity matched: {st.capacity_text(capacity)}")
    scores: dict[str, list[float]] = {}
    for v, t in tunes.items():
        studies[v] = run_tune(t)
        best = studies[v].best_trial
        record["best"][v] = {"number": best.number, "value": best.value, "params": best.params}
        trials = os.path.join(t.workdir, TRIALS_DIR)
        subs = [os.path.join(trials, d) for d in sorted(os.listdir(trials))]
        record["steps_trained"][v] = sum(st.trained_steps(s) for s in subs)
        final = st.retrain(t, best.params, fv.seeds)
        metric = t.metric.split("/", 1)[1]
        split, by_metric = st.seed_scores(final, metric, fv.seeds)
        scores[v] = by_metric.pop(metric)
        for other, per_seed in by_metric.items():
            record.setdefault("other_scores", {}).setdefault(other, {})[v] = per_seed
        record.update(metric=metric, mode=t.mode, split=split)
        print(
            f"study: {v}: best trial {best.number} ({t.metric} {best.value:.4g}); test "
            f"{metric} over {fv.seeds} seeds: {', '.join(f'{x:.4g}' for x in scores[v])}"
        )
    st.figure(
        studies, os.path.join(fv.workdir, "lr_sensitivity.png"), record["metric"], record["mode"]
    )
    print(st.report(fv.workdir, record, scores))
    from seqlab.run.writers import wandb_mode
    from seqlab.tools.study_wandb import log_report

    mode = wandb_mode(base_config.wandb.mode)
    where = log_report(fv.workdir, record, scores, base_config.wandb, base, mode)
    if where and mode == "offline":
        print(f"study: W&B report saved offline; upload it with: wandb sync {where}")
    return 0
