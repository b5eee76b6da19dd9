"""``seqlab sweep``, ``seqlab probe`` and ``seqlab report``: many runs from a config's
``get_sweep()``, and the table and figures over them (``seqlab.tools.sweep`` and
``seqlab.tools.report``, loaded only when a command runs). ``seqlab.tools.cli`` dispatches here.

    seqlab sweep  --config FILE.py[:ARG] --workdir DIR [--parallel N] [--sweep ARG] [--wandb]
                  [--config.KEY=VALUE ...]  (applied to every point)
    seqlab probe  --config configs/probe.py[:ARG] --workdir DIR [--parallel N] [--sweep ARG]
    seqlab report DIR [--metric NAME]
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from absl import flags

from seqlab.errors import RunError, UsageError
from seqlab.tools.flags import define_sweep, parse, split_own


def cmd_probe(argv: Sequence[str]) -> int:
    """The config's get_sweep (cells x lengths) run as `seqlab sweep` does, each point probing
    during training, then `seqlab report` (merged probe.json, figures, decay table)."""
    own = {"--config", "--workdir", "--parallel", "--sweep", "--help", "-h"}
    mine, passthrough = split_own(argv, own, {"--help", "-h"})
    fv = parse(
        "probe",
        mine,
        lambda fv: define_sweep(
            fv,
            "output directory (re-running resumes)",
            "argument for get_sweep(arg) (default: the config's :ARG)",
        ),
    )
    if fv.config is None:
        raise UsageError("--config is required, e.g. --config configs/probe.py")
    config = parse(
        "probe", ["--config", fv.config, *passthrough], lambda fv: None, with_config=True
    ).config
    from seqlab.tasks import complete_config
    from seqlab.tools import sweep
    from seqlab.tools.report import probe_table, report

    config = complete_config(config)
    if config.probe.every <= 0:  # probe at init and at the end
        passthrough.append(f"--config.probe.every={config.train.num_steps}")
    sweep_arg = fv.sweep if fv.sweep is not None else fv.config.partition(":")[2] or None
    points = sweep.load_sweep(fv.config, sweep_arg)
    sweep.check_points(fv.config, points, passthrough, fv.parallel)  # all, before any runs
    failed = sweep.failed_points(fv.config, fv.workdir, sweep_arg, fv.parallel, passthrough)
    if len(failed) < len(points):
        report(fv.workdir)
        from seqlab.run import records

        merged = records.read_json(os.path.join(fv.workdir, "probe.json"))
        if merged is None:
            raise RunError(
                f"no run under {fv.workdir} left a readable probe.json; see each point's train.log"
            )
        print(probe_table(merged))
        print(f"figures: {fv.workdir}/grad_vs_distance.png, {fv.workdir}/grad_heatmap.png")
    return sweep.say_failed("probe", failed)


def cmd_sweep(argv: Sequence[str]) -> int:
    """Runs a config's get_sweep(); flags other than these pass on to every point."""
    own = {"--config", "--workdir", "--parallel", "--sweep", "--wandb", "--help", "-h"}
    mine, passthrough = split_own(argv, own, {"--wandb", "--help", "-h"})

    def define(fv):
        define_sweep(fv, "sweep directory (re-running resumes)", "argument for get_sweep(arg)")
        flags.DEFINE_bool(
            "wandb",
            False,
            "write DIR/wandb_sweep.yaml for `wandb sweep` instead of running locally",
            flag_values=fv,
        )

    fv = parse("sweep", mine, define)
    if fv.config is None:
        raise UsageError("--config is required, e.g. --config configs/long_range.py")
    from seqlab.tools import sweep
    from seqlab.tools.report import report

    points = sweep.load_sweep(fv.config, fv.sweep)
    # every point's config, before any runs (W&B agents run elsewhere: no memory check here)
    sweep.check_points(fv.config, points, passthrough, fv.parallel, memory=not fv.wandb)
    if fv.wandb:
        sweep.make_sweep_dir(fv.workdir)
        path = os.path.join(fv.workdir, "wandb_sweep.yaml")
        from seqlab.run.writers import atomic_open

        with atomic_open(path) as f:
            f.write(sweep.wandb_sweep_yaml(fv.config, fv.workdir, points))
        print(
            f"wrote {path} ({len(points)} points). Start it with:\n"
            f"  wandb sweep {path}\n  wandb agent <the sweep id it prints>"
        )
        return 0
    failed = sweep.failed_points(fv.config, fv.workdir, fv.sweep, fv.parallel, passthrough)
    print(report(fv.workdir))
    return sweep.say_failed("sweep", failed)


def cmd_report(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv and not argv[0].startswith("-"):
        argv = ["--workdir", argv[0], *argv[1:]]

    def define(fv):
        flags.DEFINE_string("workdir", None, "directory of runs (a sweep)", flag_values=fv)
        flags.DEFINE_string(
            "metric", None, "metric for the figures (default: the task's)", flag_values=fv
        )

    fv = parse("report", argv, define)
    from seqlab.tools.report import report

    print(report(fv.workdir, fv.metric))
    print(f"wrote {fv.workdir}/report.md, report.csv and figures")
    return 0
