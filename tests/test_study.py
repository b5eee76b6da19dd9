"""``seqlab study``: arms, the report and its figure; then the command end to end on the
smallest real runs (two arms, one trial each, two seeds)."""

from __future__ import annotations

import csv
import json
import os
import re

import optuna
import pytest

try:
    from tests import tune_util as tu
except ImportError:  # pytest run from inside tests/
    import tune_util as tu

from seqlab.errors import UsageError
from seqlab.tools import study as st


def test_metric_directions():
    assert [st.direction(m) for m in ("accuracy", "final_accuracy", "loss", "mse", "bpc")] == [
        "max",
        "max",
        "min",
        "min",
        "min",
    ]
    assert st.direction("tokens_per_s") is None


def test_arms_parse_or_say_how_in_one_line():
    assert st.parse_arms("model.cell=rnn+lstm+gru") == ("model.cell", ["rnn", "lstm", "gru"])
    for bad in ("model.cell", "model.cell=rnn", "model.cell=rnn+rnn", "=rnn+gru"):
        with pytest.raises(UsageError, match="two or more distinct values") as e:
            st.parse_arms(bad)
        assert "\n" not in str(e.value)


def test_matched_width_gives_each_cell_the_same_capacity():
    """--match_params: each arm's hidden size has the parameter count nearest the target, and
    one size more or less is farther from it."""
    from seqlab.models.build import num_params
    from seqlab.tasks import complete_config, make_task
    from seqlab.tools.sweep import _parse_train

    sizes = {}
    for cell in ("rnn", "lstm", "gru"):
        over = [f"--config.model.cell={cell}"]
        h, n = st.matched_width(tu.CONFIG, over, 3000)
        config = complete_config(_parse_train(["--config", tu.CONFIG, *over]))
        spec = make_task(config).spec
        for other in (h - 1, h + 1):
            config.model.hidden_size = other
            assert abs(num_params(config.model, spec) - 3000) >= abs(n - 3000)
        sizes[cell] = h
    assert sizes["rnn"] > sizes["gru"] > sizes["lstm"]  # 1, 3 and 4 weight blocks per step


def test_match_params_refuses_a_fixed_or_varied_width_in_one_line(tmp_path, capsys):
    from seqlab.tools.cli import main

    wd = str(tmp_path / "s")
    base = ["study", "--config", tu.CONFIG, "--workdir", wd, "--trials", "1"]
    for extra in (
        ["--arms", "model.cell=rnn+gru", "--config.model.hidden_size=8"],
        ["--arms", "model.hidden_size=8+16"],
    ):
        assert main([*base, *extra, "--match_params", "3000"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "--match_params sets model.hidden_size per arm" in err[0]


def _study(values: list[tuple[float, float | None, dict[int, float]]]) -> optuna.Study:
    s = optuna.create_study(direction="maximize")
    lr = optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)
    for x, value, inter in values:
        done = value is not None
        state = optuna.trial.TrialState.COMPLETE if done else optuna.trial.TrialState.PRUNED
        s.add_trial(
            optuna.trial.create_trial(
                params={"optim.learning_rate": x},
                distributions={"optim.learning_rate": lr},
                value=value,
                state=state,
                intermediate_values=inter,
            )
        )
    return s


def test_report_tables_csv_json_and_figure(tmp_path):
    studies = {
        "rnn": _study([(1e-3, 0.3, {100: 0.3}), (1e-2, None, {100: 0.1})]),
        "gru": _study([(3e-3, 0.9, {100: 0.9}), (3e-2, 0.8, {100: 0.8})]),
    }
    pts = st.trial_points(studies["rnn"], "optim.learning_rate")
    assert pts == [(1e-3, 0.3, "COMPLETE"), (1e-2, 0.1, "PRUNED")]  # pruned: its last value
    st.figure(studies, str(tmp_path / "lr_sensitivity.png"), "accuracy", "max")
    assert (tmp_path / "lr_sensitivity.png").stat().st_size > 10_000
    scores = {"rnn": [0.30, 0.32, 0.28], "gru": [0.90, 0.91, 0.89]}
    record = {
        "config": "configs/mnist1d.py",
        "arm_key": "model.cell",
        "budget": {"trials": 2, "steps_per_trial": 500, "pruner": "median"},
        "steps_trained": {"rnn": 600, "gru": 1000},
        "seeds": 3,
        "metric": "accuracy",
        "mode": "max",
        "split": "the test split",
        "best": {
            "rnn": {"number": 0, "value": 0.3, "params": {"optim.learning_rate": 1e-3}},
            "gru": {"number": 0, "value": 0.9, "params": {"optim.learning_rate": 3e-3}},
        },
    }
    record["other_scores"] = {"loss": {"rnn": [2.0, 2.1, 1.9], "gru": [0.3, 0.31, 0.29]}}
    md = st.report(str(tmp_path), record, scores)
    assert "**gru > rnn**" in md and "2 trials of up to 500 steps" in md
    assert "Ordering by test loss: **gru > rnn**" in md and "| test/loss mean |" in md
    assert "rnn 600, gru 1000" in md and "| rnn vs gru |" in md
    with open(tmp_path / "study.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["arm"] for r in rows] == ["rnn", "gru"] and float(rows[1]["ci95_low"]) < 0.9
    with open(tmp_path / "study.json") as f:
        assert json.load(f)["ordering"] == "gru > rnn"
    assert os.path.exists(tmp_path / "study.md")
    _check_wandb_report(tmp_path, record, scores)


def _check_wandb_report(tmp_path, record, scores):
    """The same report as a W&B run (offline here): the arms and pairs tables, the figure."""
    import glob

    from ml_collections import ConfigDict

    from seqlab.tools.study_wandb import ARM_COLUMNS, PAIR_COLUMNS, log_report

    record = {**record, "arms": list(scores)}
    wandb = ConfigDict({"project": "seqlab-test", "entity": ""})
    assert log_report(str(tmp_path), record, scores, wandb, "s", "disabled") is None
    run_dir = log_report(str(tmp_path), record, scores, wandb, "s", "offline")
    tables = {}
    for name in ("arms", "pairs"):
        (path,) = glob.glob(os.path.join(run_dir, "files", "media", "table", "study", f"{name}_*"))
        with open(path) as f:
            tables[name] = json.load(f)
    assert tables["arms"]["columns"] == ARM_COLUMNS
    assert [r[0] for r in tables["arms"]["data"]] == ["rnn", "gru"]
    assert tables["arms"]["data"][1][2] == pytest.approx(0.90)  # gru's mean over 3 seeds
    assert tables["pairs"]["columns"] == PAIR_COLUMNS
    assert tables["pairs"]["data"][0][:2] == ["rnn", "gru"] and tables["pairs"]["data"][0][-1]
    assert glob.glob(os.path.join(run_dir, "files", "media", "images", "study", "*.png"))


@pytest.mark.slow
def test_study_end_to_end_on_a_generated_task(tmp_path, capsys):
    from seqlab.tools.cli import main

    wd = str(tmp_path / "s")
    argv = ["study", "--config", tu.CONFIG, "--workdir", wd, "--arms", "model.cell=rnn+gru"]
    argv += ["--trials", "1", "--seeds", "2", "--config.train.num_steps=10"]
    argv += ["--match_params", "3000"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "capacity matched: rnn H=53" in out and "Capacity matched" in out
    assert "1 trials of up to 10 steps" in out and "a fresh eval set (task.eval_seed=1000)" in out
    with open(os.path.join(wd, "study.json")) as f:
        record = json.load(f)
    assert set(record["scores"]) == {"rnn", "gru"} and len(record["scores"]["rnn"]) == 2
    assert sorted(re.split(r" [>~] ", record["ordering"])) == ["gru", "rnn"]
    for arm in ("rnn", "gru"):
        final = os.path.join(wd, "arms", arm, "final")
        with open(os.path.join(final, "config.json")) as f:
            config = json.load(f)
        assert config["model"]["cell"] == arm and config["num_seeds"] == 2
        capacity = record["capacity"][arm]
        assert config["model"]["hidden_size"] == capacity["hidden_size"]  # matched, retrained
        assert abs(capacity["params"] - 3000) < 150
        best = record["best"][arm]["params"]["optim.learning_rate"]
        assert config["optim"]["learning_rate"] == pytest.approx(best)  # the best, retrained
    assert os.path.getsize(os.path.join(wd, "lr_sensitivity.png")) > 10_000
    # runlocal configs turn W&B off: no report run (test_report_tables... logs one offline)
    assert "W&B" not in out and not os.path.exists(os.path.join(wd, "wandb"))


def test_tuned_links_lists_each_written_up_study_with_its_verdict(tmp_path):
    assert st.tuned_links(str(tmp_path)) == ""
    for name, title in (("tuned_b", "B at T = 9"), ("tuned_a", "A"), ("other", "not a study")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "README.md").write_text(
            f"# {title}\n\n**Verdict:** {title} holds,\nwrapped over\ntwo lines.\n\nmore\n"
        )
    text = st.tuned_links(str(tmp_path))
    assert text.startswith("\n## Tuned with equal budgets")
    lines = [ln for ln in text.splitlines() if ln.startswith("- ")]
    assert lines == [
        "- [A](tuned_a/README.md). **Verdict:** A holds, wrapped over two lines.",
        "- [B at T = 9](tuned_b/README.md). **Verdict:** B at T = 9 holds, wrapped over two lines.",
    ]
