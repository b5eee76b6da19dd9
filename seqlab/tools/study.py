"""``seqlab study``: arms compared with equal tuning budgets, then seeds, then statistics.

    seqlab study --config FILE.py[:ARG] --workdir DIR --arms KEY=V1+V2[+...] --trials N
                 --seeds K [--storage URL] [--parallel P] [--pruner ...] [--config.KEY=V ...]

1. Each arm (``KEY=V``) is tuned as ``seqlab tune`` does, in ``DIR/arms/V`` (its own study,
   ``NAME-V``), with the same search space, the same N trials and the same steps per trial
   (the budget is printed and recorded in study.json).
2. Each arm's best trial by validation is retrained with K seeds in one program
   (``num_seeds``) in ``DIR/arms/V/final``: an ordinary run (re-running resumes).
3. The K seeds are scored once on data selection never saw: the test split (tasks with a
   fixed split, the char LM's held-out text), or for generated tasks a fresh eval set
   (``task.eval_seed + 1000``; the tuning chose on ``task.eval_seed``'s set).
4. study.md / study.csv / study.json: per arm mean and 95% CI over seeds, Welch's t-test per
   pair with Holm's correction, the ordering (``~`` where not separated); lr_sensitivity.png:
   every trial's validation metric against its learning rate, and each arm's best so far.
"""

from __future__ import annotations

import json
import os
import subprocess
from typing import Any

from seqlab.errors import UsageError
from seqlab.tools import stats


def parse_arms(text: str) -> tuple[str, list[str]]:
    """``model.cell=rnn+lstm`` -> ("model.cell", ["rnn", "lstm"])."""
    key, eq, values = text.partition("=")
    arms = [v for v in values.split("+") if v]
    if not eq or not key or len(arms) < 2 or len(set(arms)) != len(arms):
        raise UsageError(
            f"--arms={text!r}: give a config key and two or more distinct values, e.g. "
            "--arms=model.cell=rnn+lstm+gru"
        )
    return key, arms


def matched_width(config_file: str, overrides: list[str], target: int) -> tuple[int, int]:
    """(``model.hidden_size``, its parameter count) of the arm's model nearest ``target``
    parameters, all else as configured: arms compared at equal capacity, as Karpathy,
    Johnson & Fei-Fei 2015 and Melis, Dyer & Blunsom 2018 compare cells."""
    from seqlab.models.build import hidden_size_for, num_params
    from seqlab.tasks import complete_config, make_task
    from seqlab.tools.sweep import _parse_train

    config = complete_config(_parse_train(["--config", config_file, *overrides]))
    spec = make_task(config).spec
    h = hidden_size_for(config.model, spec, target)
    config.model.hidden_size = h
    return h, num_params(config.model, spec)


def capacity_text(capacity: dict[str, dict[str, int]]) -> str:
    """``rnn H=121 (59,960 parameters), lstm H=58 (...)``: each arm's matched width."""
    return ", ".join(
        f"{a} H={c['hidden_size']} ({c['params']:,} parameters)" for a, c in capacity.items()
    )


def budget(tune: Any, steps: int) -> dict[str, Any]:
    return {"trials": tune.trials, "steps_per_trial": steps, "pruner": tune.pruner}


def trained_steps(sub: str) -> int:
    """The last step a trial logged (pruned trials stop early)."""
    last = 0
    try:
        with open(os.path.join(sub, "metrics.jsonl")) as f:
            for line in f:
                try:
                    last = max(last, int(json.loads(line)["step"]))
                except (ValueError, KeyError, TypeError):
                    continue
    except OSError:
        pass
    return last


def retrain(tune: Any, params: dict[str, Any], seeds: int) -> str:
    """The arm's best configuration trained with ``seeds`` seeds; its workdir."""
    from seqlab.tools.sweep import _command

    final = os.path.join(tune.workdir, "final")
    os.makedirs(final, exist_ok=True)
    cmd = _command(tune.config, final, params, [*tune.extra, f"--config.num_seeds={seeds}"])
    with open(os.path.join(final, "train.log"), "a") as log:
        rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc != 0:
        raise UsageError(f"retraining the best trial in {final} failed (exit {rc}); see train.log")
    return final


def seed_scores(final: str, metric: str, seeds: int) -> tuple[str, dict[str, list[float]]]:
    """(what was scored, {metric: one value per seed}) on data the selection never saw
    (``final_test``): ``metric`` (e.g. ``accuracy``, the one selection used) first, then every
    other metric the task reports (a classifier's loss beside its accuracy)."""
    from seqlab.tools.final_test import final_test

    result = final_test(final)
    if not result:
        raise UsageError(f"{final}: its task has neither a test split nor a fresh eval set")
    names = [metric] + sorted(
        k.split("/")[1]
        for k in result
        if k.startswith("test/") and k.count("/") == 1 and k != f"test/{metric}"
    )
    out = {}
    for name in names:
        key = f"test/{name}"
        if seeds == 1:
            out[name] = [float(result[key])]
        elif all(f"{key}/seed_{i}" in result for i in range(seeds)):
            out[name] = [float(result[f"{key}/seed_{i}"]) for i in range(seeds)]
    return result["data"], out


def direction(metric: str) -> str | None:
    """ "max" or "min" for metrics whose better direction the name tells; None otherwise."""
    if any(w in metric for w in ("accuracy", "acc")):
        return "max"
    if any(w in metric for w in ("loss", "mse", "bpc", "perplexity", "error")):
        return "min"
    return None


def trial_points(study: Any, lr_key: str) -> list[tuple[float, float, str]]:
    """(learning rate, last reported validation value, state) of every finished trial."""
    out = []
    for t in study.get_trials(deepcopy=False):
        if t.state.name not in ("COMPLETE", "PRUNED") or lr_key not in t.params:
            continue
        value = t.value if t.value is not None else None
        if value is None and t.intermediate_values:
            value = t.intermediate_values[max(t.intermediate_values)]
        if value is not None:
            out.append((float(t.params[lr_key]), float(value), t.state.name))
    return out


def figure(studies: dict[str, Any], path: str, metric: str, mode: str) -> None:
    """Two panels: validation metric vs learning rate per arm (Greff et al. 2017's
    sensitivity plot; hollow = pruned, its last value), and each arm's best so far."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (arm, study) in enumerate(studies.items()):
        color = f"C{i}"
        pts = trial_points(study, "optim.learning_rate")
        for state, face in (("COMPLETE", color), ("PRUNED", "none")):
            xs = [p[0] for p in pts if p[2] == state]
            ys = [p[1] for p in pts if p[2] == state]
            ax1.scatter(
                xs, ys, edgecolors=color, facecolors=face, label=arm if face != "none" else None
            )
        done = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
        best, curve = None, []
        for t in sorted(done, key=lambda t: t.number):
            better = best is None or (t.value > best if mode == "max" else t.value < best)
            best = t.value if better else best
            curve.append(best)
        ax2.plot(range(1, len(curve) + 1), curve, marker="o", color=color, label=arm)
    ax1.set(xscale="log", xlabel="learning rate", ylabel=f"validation {metric}")
    ax1.set_title("learning-rate sensitivity (hollow: pruned, at its last eval)")
    ax2.set(xlabel="completed trial", ylabel=f"best validation {metric} so far")
    ax2.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    ax2.set_title("optimization history")
    for ax in (ax1, ax2):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def report(workdir: str, record: dict[str, Any], scores: dict[str, list[float]]) -> str:
    """study.md, study.csv, study.json in ``workdir``; returns the markdown."""
    from seqlab.run.writers import write_json

    metric, split, mode = record["metric"], record["split"], record["mode"]
    b = record["budget"]
    order = stats.ordering(scores, mode)
    capacity = record.get("capacity")
    capacity_lines = [f"Capacity matched: {capacity_text(capacity)}.", ""] if capacity else []
    lines = [
        f"# Study: {record['arm_key']} in {record['config']}",
        "",
        f"Budget per arm: {b['trials']} trials of up to {b['steps_per_trial']} steps "
        f"(pruner: {b['pruner']}); steps actually trained: "
        + ", ".join(f"{a} {s}" for a, s in record["steps_trained"].items())
        + f". Best trial by validation retrained with {record['seeds']} seeds, scored once on "
        f"{split}.",
        "",
        *capacity_lines,
        f"Ordering (test {metric}, {'higher' if mode == 'max' else 'lower'} is better; "
        f"`~` = not separated by Welch's test at 0.05 after Holm): **{order}**",
        "",
        stats.markdown(scores, f"test/{metric}"),
        "",
        "| arm | best trial | validation | params |",
        "| --- | --- | --- | --- |",
    ]
    for arm, best in record["best"].items():
        params = ", ".join(
            f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
            for k, v in best["params"].items()
        )
        lines.append(f"| {arm} | {best['number']} | {best['value']:.4g} | {params} |")
    for other, by_arm in record.get("other_scores", {}).items():
        if set(by_arm) != set(scores):
            continue
        better = direction(other)
        lines += ["", f"Also scored on {split} (not used for selection): test {other}."]
        if better:
            lines += ["", f"Ordering by test {other}: **{stats.ordering(by_arm, better)}**"]
        lines += ["", stats.markdown(by_arm, f"test/{other}")]
    lines += ["", "![lr sensitivity](lr_sensitivity.png)", ""]
    md = "\n".join(lines)
    with open(os.path.join(workdir, "study.md"), "w") as f:
        f.write(md)
    with open(os.path.join(workdir, "study.csv"), "w") as f:
        f.write(stats.csv_rows(scores, f"test/{metric}"))
    write_json(
        os.path.join(workdir, "study.json"),
        {**record, "ordering": order, "scores": scores},
        indent=1,
    )
    return md


def tuned_links(here: str) -> str:
    """A results file's section linking the experiment's tuned comparisons: each
    ``HERE/tuned_*/README.md`` (a ``seqlab study`` written up: its table, intervals, verdict),
    by its title and its ``**Verdict:**`` paragraph; "" when there are none. Experiments append
    it when they rewrite their fixed-recipe results, so the two stay side by side."""
    entries = []
    for name in sorted(os.listdir(here)) if os.path.isdir(here) else []:
        path = os.path.join(here, name, "README.md")
        if not (name.startswith("tuned_") and os.path.isfile(path)):
            continue
        with open(path) as f:
            lines = f.read().splitlines()
        title = next((ln[2:] for ln in lines if ln.startswith("# ")), name)
        start = next((i for i, ln in enumerate(lines) if ln.startswith("**Verdict:**")), None)
        verdict = ""
        if start is not None:  # the paragraph, however it is wrapped
            end = next((i for i in range(start, len(lines)) if not lines[i].strip()), len(lines))
            verdict = " ".join(ln.strip() for ln in lines[start:end])
        entries.append(f"- [{title}]({name}/README.md). {verdict}".rstrip())
    if not entries:
        return ""
    head = (
        "\n## Tuned with equal budgets (`seqlab study`)\n\nThe tables above use one fixed recipe."
    )
    return (
        head
        + " Each arm tuned with the same budget, then seeds and intervals:\n\n"
        + "\n".join(entries)
        + "\n"
    )
