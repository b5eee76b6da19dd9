"""``seqlab tune``: search spaces, pruning, and a study that survives ``kill -9`` (SQLite).
The shared-database tests are in test_tune_postgres.py."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess

import optuna
import pytest

from seqlab.errors import UsageError
from seqlab.tools import space as spaces
from seqlab.tools import tune

try:
    from tests import tune_util as tu
except ImportError:  # pytest run from inside tests/
    import tune_util as tu


# -- search spaces -------------------------------------------------------------------------
def _config(tmp_path, body: str) -> str:
    path = tmp_path / "cfg.py"
    path.write_text(
        "from seqlab.tasks import task_config\n"
        "def get_config(arg=None):\n    return task_config('adding')\n" + body
    )
    return str(path)


def test_search_space_specs_build_optuna_distributions(tmp_path):
    path = _config(
        tmp_path,
        "import optuna\n"
        "def get_search_space(arg):\n"
        "    return {'optim.learning_rate': ('log', 1e-4, 1e-2), 'model.num_layers': ('int', 1, 3),"
        " 'model.cell': ('choice', ['rnn', 'gru']),"
        " 'optim.clip_value': optuna.distributions.FloatDistribution(0.5, 2.0)}\n",
    )
    keys = {"optim.learning_rate", "model.num_layers", "model.cell", "optim.clip_value"}
    got = spaces.load_space(path, None, keys)
    assert got["optim.learning_rate"] == optuna.distributions.FloatDistribution(
        1e-4, 1e-2, log=True
    )
    assert got["model.num_layers"] == optuna.distributions.IntDistribution(1, 3)
    assert got["model.cell"].choices == ("rnn", "gru")
    trial = optuna.create_study().ask()
    drawn = spaces.suggest(trial, got)
    assert 1e-4 <= drawn["optim.learning_rate"] <= 1e-2 and drawn["model.cell"] in ("rnn", "gru")


@pytest.mark.parametrize(
    "space, needle",
    [
        ("{'optim.learning_rat': ('log', 1e-4, 1e-2)}", r"'optim.learning_rat' is not a key.*"),
        ("{'optim.learning_rate': ('log', 1e-2, 1e-4)}", r"cannot build \('log', 0.01, 0.0001\)"),
        ("{'optim.learning_rate': ('log', 0.0, 1.0)}", r"cannot build"),
        ("{'optim.learning_rate': [1, 2]}", r"is not a distribution; use an optuna"),
        ("{'optim.learning_rate': ('choice', [])}", r"is not a distribution"),
        ("{}", r"returned \{\}; return a dict"),
        ("1 / 0", r"get_search_space\(None\) failed: division by zero"),
    ],
)
def test_bad_search_spaces_are_one_line(tmp_path, space, needle):
    path = _config(tmp_path, f"def get_search_space(arg):\n    return {space}\n")
    with pytest.raises(UsageError, match=needle) as e:
        spaces.load_space(path, None, {"optim.learning_rate", "optim.clip_value"})
    assert "\n" not in str(e.value)


def test_tune_refuses_bad_input_in_one_line(tmp_path, capsys):
    from seqlab.tools.cli import main

    cfg = _config(tmp_path, "")  # no get_search_space
    argv = ["tune", "--config", cfg, "--workdir", str(tmp_path / "w"), "--trials", "2"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "defines no get_search_space(arg)" in err and "\n" not in err
    good = os.path.join(tu.ROOT, "configs", "long_range.py:runlocal")
    argv = ["tune", "--config", good, "--workdir", str(tmp_path / "w"), "--trials", "2"]
    assert main([*argv, "--config.optim.learning_rate=0.1"]) == 2
    assert "optim.learning_rate is both searched and set" in capsys.readouterr().err
    assert main(["tune", "--config", good, "--workdir", str(tmp_path / "w")]) == 2
    assert "--trials is required" in capsys.readouterr().err


# -- pruning -------------------------------------------------------------------------------
class _Running:
    """A trial process that runs until signalled."""

    def __init__(self):
        self.signals: list[int] = []

    def poll(self):
        return 1 if self.signals else None

    def send_signal(self, s):
        self.signals.append(s)


def test_follow_reports_each_new_eval_and_stops_a_pruned_trial(tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=1.0))
    trial = study.ask()
    rows = [{"step": 5, "train/loss": 9.0}, {"step": 10, "eval/loss": 0.5}]
    rows += [{"step": 20, "eval/loss": 2.0}, {"step": 30, "eval/loss": 0.1}]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"st')
    proc = _Running()
    assert tune.follow(proc, trial, str(tmp_path), "eval/loss") == 20  # above the threshold
    assert proc.signals == [signal.SIGTERM]
    assert study.trials[0].intermediate_values == {10: 0.5, 20: 2.0}  # not 30: stopped


def test_the_first_trial_is_the_configs_own_recipe(tmp_path):
    """--baseline (the default): the config's values of the searched keys are enqueued by the
    worker that creates the study, so a re-run or a second worker does not add them again;
    values outside their range are left to the sampler."""
    from ml_collections import ConfigDict

    from seqlab.tools import space as spaces

    raw = {"optim.learning_rate": ("log", 1e-4, 1e-1), "model.x": ("int", 1, 4)}
    space = {k: spaces.build(k, v) for k, v in raw.items()}
    config = ConfigDict({"optim": {"learning_rate": 3e-3}, "model": {"x": 9}})
    assert tune.baseline_values(config, space) == {"optim.learning_rate": 3e-3}  # x: outside
    t = tune.Tune(
        config=tu.CONFIG, workdir=str(tmp_path), trials=0, space=space, metric="eval/loss",
        mode="min", baseline={"optim.learning_rate": 3e-3}, log=lambda *a: None,
    )  # fmt: skip
    for _ in range(2):  # trials=0: the workers return at once, after the enqueue
        study = tune.run_tune(t)
    (waiting,) = study.get_trials(deepcopy=False)
    assert waiting.state.name == "WAITING" and waiting.params == {}
    assert waiting.system_attrs["fixed_params"] == {"optim.learning_rate": 3e-3}


def test_surplus_trials_beyond_the_budget(tmp_path):
    study = optuna.create_study()
    for _ in range(3):
        study.tell(study.ask(), 1.0)
    late = study.ask()
    assert tune.surplus(study, late.number, 3) and not tune.surplus(study, late.number, 4)


@pytest.mark.slow
def test_a_pruned_trial_stops_and_says_so_in_its_workdir(tmp_path):
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=-1.0))  # all
    t = tune.Tune(
        config=tu.CONFIG,
        workdir=str(tmp_path),
        trials=1,
        space={"optim.learning_rate": optuna.distributions.FloatDistribution(1e-3, 1e-2)},
        metric="eval/loss",
        mode="min",
        study_name="p",
        extra=tu.LONG,
        log=lambda s: None,
    )
    trial = study.ask()
    assert tune.run_trial(study, trial, t) == ("pruned", None)
    sub = os.path.join(str(tmp_path), "trials", "0000")
    st = tu.status(sub)
    assert st["state"] == "pruned" and st["pruned_at_step"] == 250  # the first eval
    assert st["returncode"] == 75  # the trial checkpointed on SIGTERM and stopped
    assert max(tu.logged_steps(sub)) < tu.STEPS and os.listdir(os.path.join(sub, "checkpoints"))


# -- kill -9 and resume (SQLite in the workdir) ---------------------------------------------
@pytest.mark.slow
def test_kill_9_loses_nothing_and_a_rerun_counts_each_trial_once(tmp_path):
    wd, log = str(tmp_path / "study"), str(tmp_path / "tune.log")
    extra = [*tu.LONG, "--pruner", "none"]
    killed = tu.kill_mid_trial(tu.start(wd, 1, *extra, log=log), wd)
    proc = tu.start(wd, 1, *extra, log=log)  # the same command again
    tu.wait(proc, log)
    study = tu.load(f"sqlite:///{wd}/study.db", "study")
    assert tu.states(study) == {"COMPLETE": 1, "FAIL": 1}, tu.tail(log)
    assert tu.trial_dirs(wd) == [killed]  # the retry used the killed trial's folder
    failed, retry = study.trials
    assert failed.state.name == "FAIL" and retry.system_attrs["failed_trial"] == failed.number
    assert retry.state.name == "COMPLETE" and retry.params == failed.params
    with open(os.path.join(killed, "train.log")) as f:
        resumed = [int(s) for s in re.findall(r"resumed from \S+ at step (\d+)", f.read())]
    assert len(resumed) == 1 and 200 <= resumed[0] < tu.STEPS  # from its checkpoint, not 0
    with open(os.path.join(killed, "metrics.jsonl")) as f:
        rows = [json.loads(line) for line in f]
    for kind in ("train/loss", "eval/loss"):  # no step logged twice across the restart
        steps = [r["step"] for r in rows if kind in r]
        assert steps == sorted(set(steps)) and steps[-1] == tu.STEPS
    assert tu.status(killed)["state"] == "done"
    # once more: the study is complete, nothing runs
    out = subprocess.run(tu.tune_cmd(wd, 1, *extra), capture_output=True, text=True, cwd=tu.ROOT)
    assert out.returncode == 0 and "1/1 trials finished" in out.stdout + out.stderr
    assert tu.states(tu.load(f"sqlite:///{wd}/study.db", "study")) == {"COMPLETE": 1, "FAIL": 1}


def test_diverged_trials_are_recognised_from_the_loops_own_messages():
    from seqlab.run import loop

    with open(loop.__file__) as f:
        src = f.read()
    for said in ("non-finite loss or gradient at step", "loss exploded at step"):
        assert said in src and tune.DIVERGED.search(f"seqlab train: error: {said} 7 (...)")
    assert not tune.DIVERGED.search("seqlab train: error: no config file x.py")


def test_a_trial_refused_for_its_input_stops_the_study_in_one_line(tmp_path, capsys):
    from seqlab.tools.cli import main

    argv = ["tune", "--config", tu.CONFIG, "--workdir", str(tmp_path / "w"), "--trials", "3"]
    assert main([*argv, "--config.model.cell=nosuchcell"]) == 2  # each trial would fail alike
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("seqlab tune: error:") and "nosuchcell" in err


def test_a_sampler_seed_makes_one_workers_proposals_repeatable(tmp_path):
    dist = {"lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}

    def proposals(name: str, seed: int | None) -> list[float]:
        os.makedirs(tmp_path / name)
        t = tune.Tune("cfg.py", str(tmp_path / name), 3, {}, "eval/loss", "min", sampler_seed=seed)
        study = tune._open_study(t)
        out = []
        for _ in range(3):
            trial = study.ask(dist)
            study.tell(trial, trial.params["lr"])
            out.append(trial.params["lr"])
        return out

    assert proposals("a", 7) == proposals("b", 7) != proposals("c", 8)
