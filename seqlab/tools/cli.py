"""The ``seqlab`` command. It (with the command modules beside it) is all that reads flags;
it turns them into a config and calls the library (``train_and_evaluate``, ``Evaluator``,
``generate``).

    seqlab train  --config configs/charlm.py[:ARG] --workdir DIR [--config.KEY=VALUE ...]
    seqlab eval   --workdir DIR [--best]
    seqlab sample --workdir DIR [--prime TEXT] [--length N] [--temperature T] [--top_k K]
                  [--greedy] [--seed S] [--best]

The other commands live beside it: ``sweep_cmd`` (sweep, probe, report; their heavy imports
inside each command), and, loaded only for their command, ``tune_cmd`` (tune, study),
``plan_cli`` and ``inspect``.

Bad input ends with one line on stderr and exit status 2; set SEQLAB_DEBUG=1 to see the
traceback instead.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from absl import flags

from seqlab.errors import RunError, SeqlabError, UsageError
from seqlab.tools.flags import expand_sweep_point, parse
from seqlab.tools.sweep_cmd import cmd_probe, cmd_report, cmd_sweep

USAGE = """usage: seqlab COMMAND [flags]

commands:
  train   --config FILE.py[:ARG] --workdir DIR [--config.KEY=VALUE ...]
  eval    --workdir DIR [--best]
  sample  --workdir DIR [--prime TEXT] [--length N] [--temperature T] [--top_k K] [--greedy]
          [--seed S] [--best] [--num_samples N]
  probe   --config configs/probe.py[:ARG] --workdir DIR [--parallel N] [--sweep ARG]
          (gradient norm vs distance: the config's sweep, then its report)
  sweep   --config FILE.py[:ARG] --workdir DIR [--parallel N] [--sweep ARG] [--wandb]
          [--config.KEY=VALUE ...]  (applied to every point)
  tune    --config FILE.py[:ARG] --workdir DIR --trials N [--storage URL] [--parallel K]
          [--pruner median|halving|none] [--config.KEY=VALUE ...]
          (an Optuna study over the config's get_search_space(); re-running resumes)
  study   --config FILE.py[:ARG] --workdir DIR --arms KEY=V1+V2 --trials N --seeds K
          (each arm tuned alike, best retrained with K seeds: CIs, Welch/Holm, ordering)
  report  DIR                      (table, CSV and figures of the runs under DIR)
  inspect --workdir DIR [--text FILE | --split val] [--out DIR] [--max_chars N]
          (an HTML page of what the model's units and gates do, plus PNGs)
  plan    --config FILE.py[:ARG] --target v5e:2x4|v4:2x2x1|v6e:2x4|h100:8|cpu [--json FILE]
          [--config.KEY=VALUE ...]  (compile for the target: fits? how long?)
  bench   [--cells rnn,lstm,gru] [--batch B --length T --hidden H --layers L] [--json FILE]

`seqlab COMMAND --help` lists a command's flags."""


# -- commands --------------------------------------------------------------------------------
SAMPLE_CHUNK = 4096  # `seqlab sample` generates this many steps per compiled call
MAX_SAMPLE_LENGTH = 10**7  # minutes of generation on a CPU, not hours: a bound, not a hang


def _inspect_at_eval(task: Any, model: Any, config: Any, workdir: str, step: int) -> None:
    """``config.inspect.every``: the inspect page at those evals (and in W&B). The config
    here is the loop's completed, validated one, so the key is always there."""
    if config.inspect.every > 0 and step % config.inspect.every == 0:
        from seqlab.tools.inspect import log_page

        log_page(task, model, config, workdir, step)


def cmd_train(argv: Sequence[str]) -> int:
    def define(fv):
        flags.DEFINE_string("workdir", None, "run directory (re-running resumes)", flag_values=fv)

    fv = parse("train", expand_sweep_point(argv), define, with_config=True)
    import time

    import jax

    from seqlab.run.loop import train_and_evaluate
    from seqlab.run.mesh import maybe_initialize
    from seqlab.tools.final_test import final_test, wants_test
    from seqlab.tools.summary import ResumePoint, summary

    maybe_initialize()
    workdir = os.path.expandvars(fv.workdir)
    resumed = ResumePoint(workdir)  # lists the step folders before the run
    t0 = time.perf_counter()
    metrics = train_and_evaluate(fv.config, workdir, on_eval=_inspect_at_eval)
    if jax.process_index() == 0 and wants_test(fv.config):  # fixed splits: test once, at the end
        test = final_test(workdir)
        metrics = {**metrics, **{k: v for k, v in test.items() if k.startswith("test/")}}
    if jax.process_index() == 0:  # the final metrics are also in WORKDIR/results.json
        wall = time.perf_counter() - t0
        print(summary(workdir, fv.config, metrics, start=resumed.step(), wall_s=wall))
    return 0


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

    fv = parse("eval", argv, define)
    from seqlab.run import load_run
    from seqlab.run.evaluate import Evaluator
    from seqlab.run.replicas import Replicas
    from seqlab.run.writers import write_json

    run = load_run(fv.workdir, fv.best)
    replicas = Replicas(run.config)  # every seed of a num_seeds run
    batches, prefix, out = None, "eval/", "eval.json"
    if fv.split == "test":
        test = getattr(replicas.task, "test_batches", None)
        batches = test() if test is not None else []
        if not batches:
            why = (
                "its data.test_fraction is 0"
                if test is not None
                else "generated tasks draw fresh eval data"
            )
            raise UsageError(f"this run has no test split ({why}); use --split val")
        prefix, out = "test/", "eval_test.json"
    evaluate = Evaluator(run.mdef, replicas.task, replicas=replicas)
    metrics = evaluate(run.params, batches, prefix)
    result = {"step": run.step, "checkpoint": "best" if fv.best else "latest", **metrics}
    try:
        write_json(os.path.join(fv.workdir, out), result, indent=1)
    except OSError as e:  # a read-only or full workdir: the numbers are still printed
        print(json.dumps(result, indent=1))
        raise RunError(f"could not write {out} in {fv.workdir} ({e.strerror})") from None
    print(json.dumps(result, indent=1))
    return 0


def cmd_sample(argv: Sequence[str]) -> int:
    def define(fv):
        flags.DEFINE_string("workdir", None, "run directory of a char LM", flag_values=fv)
        flags.DEFINE_string(
            "prime",
            None,
            "text to start from (default: the run's task.sample_prime, else a newline)",
            flag_values=fv,
        )
        flags.DEFINE_integer(
            "length",
            500,
            f"characters to generate (streamed; above {SAMPLE_CHUNK} a progress bar shows "
            f"on stderr); at most {MAX_SAMPLE_LENGTH:,}",
            lower_bound=1,
            upper_bound=MAX_SAMPLE_LENGTH,
            flag_values=fv,
        )
        flags.DEFINE_float(
            "temperature", 1.0, "softmax temperature (0 = greedy)", lower_bound=0.0, flag_values=fv
        )
        flags.DEFINE_integer(
            "top_k", 0, "sample among the k likeliest (0 = all)", lower_bound=0, flag_values=fv
        )
        flags.DEFINE_bool("greedy", False, "always pick the likeliest character", flag_values=fv)
        flags.DEFINE_integer(
            "seed", 0, "sampling seed", lower_bound=0, upper_bound=2**32 - 1, flag_values=fv
        )
        flags.DEFINE_integer("replica", 0, "which seed of a num_seeds > 1 run", flag_values=fv)
        flags.DEFINE_integer(
            "num_samples",
            1,
            "independent samples; when N > 1 each follows a line '--- sample i/N (seed S, "
            "temperature T) ---' (one sample is printed bare)",
            lower_bound=1,
            flag_values=fv,
        )
        flags.DEFINE_bool("best", False, "use the best checkpoint, not the latest", flag_values=fv)

    fv = parse("sample", argv, define)
    import jax

    from seqlab.models.generate import check_temperature, generate_chunks
    from seqlab.run import load_run
    from seqlab.run.memory import check_sample_meta
    from seqlab.tools import sampling

    check_temperature(fv.temperature, flag="--")  # nan passes absl's lower_bound
    if fv.prime is not None and not fv.prime:
        raise UsageError("--prime must not be empty")
    meta = sampling.saved_meta(fv.workdir)  # the flags are checked before any array is read
    if meta is not None:
        sampling.check_flags(meta, fv.workdir, top_k=fv.top_k, prime=fv.prime, replica=fv.replica)
        check_sample_meta(meta, fv.num_samples, fv.length, fv.prime, SAMPLE_CHUNK)  # memory
    run = load_run(fv.workdir, fv.best)
    vocab, prime, ids = sampling.check_flags(
        run.meta, fv.workdir, top_k=fv.top_k, prime=fv.prime, replica=fv.replica
    )
    n = fv.num_samples
    how = {"temperature": fv.temperature, "top_k": fv.top_k, "greedy": fv.greedy}
    model = run.model(fv.replica)
    note = sampling.learned_positions_note(model, len(ids) + fv.length)
    if note:
        print(note, file=sys.stderr)
    chunks = generate_chunks(
        model,
        ids,
        fv.length,
        key=jax.random.key(fv.seed),
        num_samples=n,
        chunk_size=SAMPLE_CHUNK,
        **how,
    )
    headers = None
    if n > 1:
        headers = [sampling.header(i, n, seed=fv.seed, **how) for i in range(1, n + 1)]
    chunks = sampling.with_progress(chunks, fv.length, enabled=fv.length > SAMPLE_CHUNK)
    try:
        sampling.write_samples(chunks, vocab, prime, headers)
    except BrokenPipeError:  # `seqlab sample ... | head`: the reader has what it wanted
        with contextlib.suppress(OSError, ValueError):  # spare the exit-time flush its error
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def cmd_inspect(argv: Sequence[str]) -> int:
    """``seqlab inspect`` (``seqlab.tools.inspect.main``), loaded only for this command."""
    from seqlab.tools.inspect import main as inspect

    return inspect(argv)


def cmd_bench(argv: Sequence[str]) -> int:
    """Benchmarks live beside the package (``seqlab_bench``), loaded only for this command."""
    try:
        from seqlab_bench.cli import main as bench
    except ImportError as e:
        raise UsageError(
            f"seqlab bench needs the seqlab_bench package beside seqlab ({e}); "
            "install from a checkout: pip install -e '.[test]'"
        ) from None
    return bench(argv)


def cmd_plan(argv: Sequence[str]) -> int:
    """``seqlab plan`` (``seqlab.tools.plan_cli``): compile a run for an accelerator target."""
    from seqlab.tools.plan_cli import cmd_plan as plan

    return plan(argv)


def cmd_tune(argv: Sequence[str]) -> int:
    """``seqlab tune`` (``seqlab.tools.tune_cmd``): an Optuna study of seqlab runs."""
    from seqlab.tools.tune_cmd import cmd_tune as tune

    return tune(argv)


def cmd_study(argv: Sequence[str]) -> int:
    """``seqlab study``: arms tuned alike, retrained with seeds, compared with intervals."""
    from seqlab.tools.tune_cmd import cmd_study as study

    return study(argv)


COMMANDS: dict[str, Callable[[Sequence[str]], int]] = {
    "tune": cmd_tune,
    "study": cmd_study,
    "bench": cmd_bench,
    "sweep": cmd_sweep,
    "report": cmd_report,
    "train": cmd_train,
    "eval": cmd_eval,
    "sample": cmd_sample,
    "probe": cmd_probe,
    "inspect": cmd_inspect,
    "plan": cmd_plan,
}


def main(argv: Sequence[str] | None = None) -> int:
    process_exit = argv is None  # the `seqlab` process itself (see Stop.said)
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
    from seqlab.run.mesh import pin_cpu_if_no_accelerator
    from seqlab.tools.stop import Stop, Stopped

    pin_cpu_if_no_accelerator()  # an installed libtpu/CUDA plugin is not probed on a CPU box
    stop = Stop.install()
    try:
        return _run(name, rest)
    except (KeyboardInterrupt, Stopped) as e:
        return stop.said(name, e, process_exit=process_exit)
    finally:
        stop.uninstall()


def _run(name: str, rest: list[str]) -> int:
    """One command, its errors turned into one line and an exit status."""
    from seqlab.run import PREEMPTED_EXIT_CODE, Preempted

    try:
        return COMMANDS[name](rest)
    except Preempted as e:
        print(f"seqlab {name}: {e}", file=sys.stderr)
        return PREEMPTED_EXIT_CODE
    except SeqlabError as e:
        if os.environ.get("SEQLAB_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        print(f"seqlab {name}: error: {msg}", file=sys.stderr)
        return 2
    except Exception:
        traceback.print_exc()
        print(
            f"seqlab {name}: this is a bug in seqlab, not in your input: please report it "
            "with the command you ran and the traceback above",
            file=sys.stderr,
        )
        return 1
