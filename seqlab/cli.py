"""The ``seqlab`` command. This is the only module that reads flags; it turns them into a
config and calls the library (``train_and_evaluate``, ``Evaluator``, ``generate``).

    seqlab train  --config configs/charlm.py[:ARG] --workdir DIR [--config.KEY=VALUE ...]
    seqlab eval   --workdir DIR [--best]
    seqlab sample --workdir DIR [--prime TEXT] [--length N] [--temperature T] [--top_k K]
                  [--greedy] [--seed S] [--best]

Bad input ends with one line on stderr and exit status 2; set SEQLAB_DEBUG=1 to see the
traceback instead.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags
from ml_collections import ConfigDict

USAGE = """usage: seqlab COMMAND [flags]

commands:
  train   --config FILE.py[:ARG] --workdir DIR [--config.KEY=VALUE ...]
  eval    --workdir DIR [--best]
  sample  --workdir DIR [--prime TEXT] [--length N] [--temperature T] [--top_k K] [--greedy]
          [--seed S] [--best] [--num_samples N]
  probe   --config configs/probe.py[:ARG] --workdir DIR   (gradient norm vs distance)
  sweep   --config FILE.py[:ARG] --workdir DIR [--parallel N] [--sweep ARG] [--wandb]
          [--config.KEY=VALUE ...]  (applied to every point)
  report  DIR                      (table, CSV and figures of the runs under DIR)
  bench   [--cells rnn,lstm,gru] [--batch B --length T --hidden H --layers L] [--json FILE]

`seqlab COMMAND --help` lists a command's flags."""


class UsageError(ValueError):
    pass


def _flatten(d: Any, prefix: str = "") -> list[str]:
    out = []
    for k, v in d.items():
        if hasattr(v, "items"):
            out += _flatten(v, f"{prefix}{k}.")
        else:
            out.append(f"{prefix}{k}")
    return out


def _parse(
    name: str,
    argv: Sequence[str],
    define: Callable[[flags.FlagValues], None],
    with_config: bool = False,
) -> flags.FlagValues:
    from ml_collections import config_flags

    fv = flags.FlagValues()
    full = [f"seqlab {name}", *argv]
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
        raise UsageError(msg or f"bad --config: {type(e).__name__}: {_one_line(e)}") from None
    except OSError as e:
        lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
        raise UsageError("cannot load --config: " + lines[-1]) from None
    except UsageError:
        raise
    except Exception as e:  # the config file raised, or is not valid Python
        if os.environ.get("SEQLAB_DEBUG"):
            raise
        raise UsageError(f"bad --config: {type(e).__name__}: {_one_line(e)}") from None
    finally:
        absl_log.setLevel(level)
    for f in ("workdir",):
        if f in fv and fv[f].value is None:
            raise UsageError(f"--{f} is required")
    return fv


def _one_line(e: BaseException) -> str:
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
    """'unknown config key' with the nearest existing key as a suggestion."""
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


def _expand_sweep_point(argv: Sequence[str]) -> list[str]:
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


# -- commands --------------------------------------------------------------------------------
def cmd_train(argv: Sequence[str]) -> int:
    def define(fv):
        flags.DEFINE_string("workdir", None, "run directory (re-running resumes)", flag_values=fv)

    fv = _parse("train", _expand_sweep_point(argv), define, with_config=True)
    from seqlab.distributed import maybe_initialize
    from seqlab.train import train_and_evaluate

    maybe_initialize()
    metrics = train_and_evaluate(fv.config, os.path.expandvars(fv.workdir))
    print(json.dumps({k: round(v, 6) for k, v in metrics.items()}, indent=1))
    return 0


def _load_run(workdir: str, best: bool) -> tuple[Any, dict, dict, int]:
    """Restores (config, params pytree as saved, meta, step) from a workdir's checkpoint."""
    from ml_collections import ConfigDict

    from seqlab.checkpoint import Checkpointer

    ckdir = os.path.join(workdir, "checkpoints")
    if not os.path.isdir(ckdir):
        raise UsageError(
            f"no checkpoints in {workdir}; train first with "
            f"`seqlab train --config ... --workdir {workdir}`"
        )
    ckpt = Checkpointer(ckdir, async_save=False)
    step = ckpt.best_step() if best else ckpt.latest_step()
    if step is None:
        raise UsageError(f"no {'best ' if best else ''}checkpoint in {ckdir}")
    meta = ckpt.restore_meta(step)
    config = ConfigDict(meta["config"])
    return config, ckpt, meta, step


def _restore_params(config, ckpt, step, spec, replica: int = 0):
    """Restores one replica's parameters without building the task (no corpus needed)."""
    import jax
    import orbax.checkpoint as ocp
    from flax import nnx

    from seqlab.models.build import build_model

    model = build_model(config.model, spec, nnx.Rngs(params=config.seed))
    graphdef, params = nnx.split(model)
    raw = ckpt.manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    tree = _pure(raw["state"]["params"])
    k = int(config.get("num_seeds", 1))
    if not 0 <= replica < k:
        raise UsageError(f"--replica={replica} is out of range: the run has {k} seed(s)")
    if k > 1:
        tree = jax.tree.map(lambda x: x[replica], tree)
    nnx.replace_by_pure_dict(params, tree)
    return graphdef, params


def _pure(tree: Any) -> Any:
    """Orbax's raw restore of an nnx.State keeps {'value': array} wrappers; drop them."""
    if isinstance(tree, dict):
        if set(tree) == {"value"}:
            return tree["value"]
        return {
            (int(k) if isinstance(k, str) and k.isdigit() else k): _pure(v) for k, v in tree.items()
        }
    return tree


def cmd_eval(argv: Sequence[str]) -> int:
    def define(fv):
        flags.DEFINE_string("workdir", None, "run directory", flag_values=fv)
        flags.DEFINE_bool(
            "best", False, "evaluate the best checkpoint, not the latest", flag_values=fv
        )
        flags.DEFINE_enum(
            "split",
            "val",
            ["val", "test"],
            "val (eval.json) or test (eval_test.json)",
            flag_values=fv,
        )

    fv = _parse("eval", argv, define)
    from seqlab.evaluate import Evaluator
    from seqlab.seeds import Replicas
    from seqlab.train import init_train_state

    config, ckpt, meta, step = _load_run(fv.workdir, fv.best)
    replicas = Replicas(config)  # every seed of a num_seeds run
    batches, prefix, out = None, "eval/", "eval.json"
    if fv.split == "test":
        test = getattr(replicas.task, "test_batches", None)
        batches = test() if test is not None else []
        if not batches:
            ckpt.close()
            why = (
                "its data.test_fraction is 0"
                if test is not None
                else "generated tasks draw fresh eval data"
            )
            raise ValueError(f"this run has no test split ({why}); use --split val")
        prefix, out = "test/", "eval_test.json"
    graphdef, state, _ = replicas.init(init_train_state)
    state = ckpt.restore(step, state)
    ckpt.close()
    evaluate = Evaluator(graphdef, replicas.task, replicas=replicas)
    metrics = evaluate(state["params"], batches, prefix)
    result = {"step": step, "checkpoint": "best" if fv.best else "latest", **metrics}
    with open(os.path.join(fv.workdir, out), "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result, indent=1))
    return 0


def cmd_sample(argv: Sequence[str]) -> int:
    def define(fv):
        flags.DEFINE_string("workdir", None, "run directory of a char LM", flag_values=fv)
        flags.DEFINE_string(
            "prime", None, "text to start from (default: a newline)", flag_values=fv
        )
        flags.DEFINE_integer("length", 500, "characters to generate", lower_bound=1, flag_values=fv)
        flags.DEFINE_float(
            "temperature", 1.0, "softmax temperature (0 = greedy)", lower_bound=0.0, flag_values=fv
        )
        flags.DEFINE_integer(
            "top_k", 0, "sample among the k likeliest (0 = all)", lower_bound=0, flag_values=fv
        )
        flags.DEFINE_bool("greedy", False, "always pick the likeliest character", flag_values=fv)
        flags.DEFINE_integer("seed", 0, "sampling seed", flag_values=fv)
        flags.DEFINE_integer("replica", 0, "which seed of a num_seeds > 1 run", flag_values=fv)
        flags.DEFINE_integer("num_samples", 1, "independent samples", lower_bound=1, flag_values=fv)
        flags.DEFINE_bool("best", False, "use the best checkpoint, not the latest", flag_values=fv)

    fv = _parse("sample", argv, define)
    import jax

    from seqlab.corpora import Vocab
    from seqlab.sample import generate
    from seqlab.tasks import ModelSpec

    config, ckpt, meta, step = _load_run(fv.workdir, fv.best)
    if "vocab" not in meta or meta["spec"]["family"] != "lm":
        raise UsageError(
            f"{fv.workdir} is a {meta.get('task')!r} run; `seqlab sample` needs "
            "a character language model (task.name=charlm)"
        )
    vocab = Vocab.from_dict(meta["vocab"])
    prime = fv.prime
    if prime is None:  # the config's sample prime, else a newline, else the first symbol
        prime = config.task.get("sample_prime", "") or "\n"
        try:
            vocab.encode(prime)
        except ValueError:
            prime = vocab.decode([0])
    if not prime:
        raise UsageError("--prime must not be empty")
    ids = vocab.encode(prime)
    graphdef, params = _restore_params(
        config, ckpt, step, ModelSpec(**meta["spec"]), replica=fv.replica
    )
    ckpt.close()
    from flax import nnx

    model = nnx.merge(graphdef, params)
    k = fv.top_k
    if k > vocab.size:
        raise UsageError(f"--top_k={k} exceeds the vocabulary size {vocab.size}")
    out = generate(
        model,
        ids,
        fv.length,
        key=jax.random.key(fv.seed),
        temperature=fv.temperature,
        top_k=k,
        greedy=fv.greedy,
        num_samples=fv.num_samples,
    )
    for row in jax.device_get(out):
        print(prime + vocab.decode(row.tolist()))
    return 0


def cmd_probe(argv: Sequence[str]) -> int:
    def define(fv):
        flags.DEFINE_string(
            "workdir", None, "output directory (re-running resumes)", flag_values=fv
        )

    fv = _parse("probe", argv, define, with_config=True)
    from seqlab.config import validate
    from seqlab.probe_runs import run_probe, table

    validate(fv.config)
    os.makedirs(fv.workdir, exist_ok=True)
    print(table(run_probe(fv.config, fv.workdir)))
    print(f"figures: {fv.workdir}/grad_vs_distance.png, {fv.workdir}/grad_heatmap.png")
    return 0


def cmd_sweep(argv: Sequence[str]) -> int:
    """Runs a config's get_sweep(); flags other than these pass on to every point."""
    own = {"--config", "--workdir", "--parallel", "--sweep", "--wandb"}
    argv = list(argv)
    mine, passthrough, i = [], [], 0
    while i < len(argv):
        a = argv[i]
        name = a.split("=", 1)[0]
        takes_value = "=" not in a and name in own - {"--wandb"}
        target = mine if name in own else passthrough
        target.extend(argv[i : i + (2 if takes_value else 1)])
        i += 2 if takes_value else 1

    def define(fv):
        flags.DEFINE_string(
            "config", None, "config file with get_sweep(), FILE.py[:ARG]", flag_values=fv
        )
        flags.DEFINE_string("workdir", None, "sweep directory (re-running resumes)", flag_values=fv)
        flags.DEFINE_integer("parallel", 1, "points run at once", lower_bound=1, flag_values=fv)
        flags.DEFINE_string("sweep", None, "argument for get_sweep(arg)", flag_values=fv)
        flags.DEFINE_bool(
            "wandb",
            False,
            "write DIR/wandb_sweep.yaml for `wandb sweep` instead of running locally",
            flag_values=fv,
        )

    fv = _parse("sweep", mine, define)
    if fv.config is None:
        raise UsageError("--config is required, e.g. --config configs/long_range.py")
    from seqlab import sweep

    if fv.wandb:
        points = sweep.load_sweep(fv.config, fv.sweep)
        os.makedirs(fv.workdir, exist_ok=True)
        path = os.path.join(fv.workdir, "wandb_sweep.yaml")
        with open(path, "w") as f:
            f.write(sweep.wandb_sweep_yaml(fv.config, fv.workdir, points))
        print(
            f"wrote {path} ({len(points)} points). Start it with:\n"
            f"  wandb sweep {path}\n  wandb agent <the sweep id it prints>"
        )
        return 0
    statuses = sweep.run_sweep(
        fv.config, fv.workdir, sweep_arg=fv.sweep, parallel=fv.parallel, extra=passthrough
    )
    failed = [n for n, s in statuses.items() if s.get("state") != "done"]
    from seqlab.report import report

    print(report(fv.workdir))
    if failed:
        print(
            f"seqlab sweep: {len(failed)} point(s) failed: {', '.join(failed)}; "
            "re-run the same command to retry them",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_report(argv: Sequence[str]) -> int:
    argv = list(argv)
    if argv and not argv[0].startswith("-"):
        argv = ["--workdir", argv[0], *argv[1:]]

    def define(fv):
        flags.DEFINE_string("workdir", None, "directory of runs (a sweep)", flag_values=fv)
        flags.DEFINE_string(
            "metric", None, "metric for the figures (default: the task's)", flag_values=fv
        )

    fv = _parse("report", argv, define)
    from seqlab.report import report

    print(report(fv.workdir, fv.metric))
    print(f"wrote {fv.workdir}/report.md, report.csv and figures")
    return 0


def cmd_bench(argv: Sequence[str]) -> int:
    from seqlab.bench import cmd_bench as bench

    return bench(argv)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "bench": cmd_bench,
    "sweep": cmd_sweep,
    "report": cmd_report,
    "train": cmd_train,
    "eval": cmd_eval,
    "sample": cmd_sample,
    "probe": cmd_probe,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(USAGE)
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        hint = difflib.get_close_matches(name, list(COMMANDS), n=1)
        print(
            f"seqlab: unknown command {name!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; commands: {', '.join(COMMANDS)}",
            file=sys.stderr,
        )
        return 2
    from seqlab.train import PREEMPTED_EXIT_CODE, Preempted, TrainingError

    try:
        return COMMANDS[name](rest)
    except Preempted as e:
        print(f"seqlab {name}: {e}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    except (ValueError, FileNotFoundError, TrainingError, KeyError) as e:
        if os.environ.get("SEQLAB_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"seqlab {name}: error: {msg}", file=sys.stderr)
        return 2
