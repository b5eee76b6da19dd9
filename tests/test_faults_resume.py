"""Resuming with a changed recipe (issue 22, family 6): the run's record says what actually
happened (config_history.jsonl, one line per start or resume), a changed lr schedule and a
schedule stretched by a longer run are announced in one line, and extending a run whose
schedule has ended (learning rate 0 for every step left) is announced too."""

from __future__ import annotations

import json
import logging
import os
import shutil

import pytest

from seqlab.run.resume import HISTORY, config_changes, recipe, record_history
from seqlab.tasks import complete_config, task_config


def cfg(**optim):
    c = complete_config(task_config("copy_memory"))
    c.train.num_steps = 20
    c.optim.update(**({"schedule": "warmup_cosine", "warmup_steps": 2} | optim))
    return c


def d(c) -> dict:
    return c.to_dict()


def read(path: str, mode: str = "r"):
    with open(path, mode) as f:
        return f.read()


def history(workdir) -> list[dict]:
    return [json.loads(x) for x in read(os.path.join(workdir, HISTORY)).splitlines()]


# -- the rule, on configs alone ----------------------------------------------------------------
@pytest.mark.slow
def test_unchanged_recipe_and_schedules_that_ignore_the_length_say_nothing() -> None:
    assert recipe(d(cfg()), d(cfg()), 10, 20) == []
    const = cfg(schedule="constant")
    longer = cfg(schedule="constant")
    longer.train.num_steps = 40
    assert recipe(d(const), d(longer), 20, 40) == []  # constant: no schedule to stretch
    exp, exp_longer = cfg(schedule="exponential"), cfg(schedule="exponential")
    exp_longer.train.num_steps = 40
    assert recipe(d(exp), d(exp_longer), 20, 40) == []  # decays per step, not per run
    fixed, fixed_longer = cfg(schedule_steps=20, end_lr_factor=0.1), cfg(end_lr_factor=0.1)
    fixed_longer.optim.schedule_steps = 20
    fixed_longer.train.num_steps = 40  # schedule_steps fixes the length: holds its end lr
    assert recipe(d(fixed), d(fixed_longer), 20, 40) == []
    changed = cfg()
    changed.train.log_every = 3  # not the recipe's lr: recorded, not announced
    assert recipe(d(cfg()), d(changed), 10, 20) == []


@pytest.mark.parametrize(
    "key,value",
    [
        ("learning_rate", 1e-4),
        ("schedule", "constant"),
        ("warmup_steps", 5),
        ("end_lr_factor", 0.5),
        ("schedule_steps", 30),
    ],
)
def test_a_changed_schedule_key_is_announced_with_the_lr_it_changes(key, value) -> None:
    new = cfg(**{key: value})
    (line,) = recipe(d(cfg()), d(new), 10, 20)
    assert f"optim.{key} " in line and f"-> {value!r}" in line, line
    assert "resuming at step 10" in line and "lr at step 10 goes from" in line, line
    assert "\n" not in line


def test_a_longer_run_stretching_its_schedule_is_announced() -> None:
    longer = cfg()
    longer.train.num_steps = 40
    (line,) = recipe(d(cfg()), d(longer), 20, 40)
    assert "train.num_steps 20 -> 40 stretches the warmup_cosine schedule" in line, line
    assert "optim.schedule_steps" in line and "set it to 20" in line
    assert "goes from 0 to" in line  # the old schedule had ended at 0; the new one has not


@pytest.mark.parametrize("left", [(20, 40), (20, 21), (5, 40)])
@pytest.mark.slow
def test_extending_a_run_whose_schedule_has_ended_is_announced(left) -> None:
    step, num_steps = left
    ended = cfg(schedule_steps=5)  # cosine to 0 by step 5
    ended.train.num_steps = num_steps
    lines = recipe(d(cfg(schedule_steps=5)), d(ended), step, num_steps)
    (line,) = [x for x in lines if "learning rate 0" in x]
    assert f"steps {step}-{num_steps} all train at learning rate 0" in line, line
    assert "optim.schedule_steps" in line and "optim.end_lr_factor" in line and "\n" not in line
    # a schedule still above 0 at some step left says nothing of lr 0
    lines = recipe(d(cfg(schedule_steps=5)), d(cfg(schedule_steps=25)), 4, 20)
    assert lines and not any("learning rate 0" in x for x in lines)


def test_a_fresh_run_whose_every_step_is_at_lr_0_is_announced() -> None:
    assert recipe(None, d(cfg(warmup_steps=30)), 0, 20) == []  # warming up: lr > 0 after 0
    zero = cfg(schedule="warmup_cosine", warmup_steps=1)
    zero.train.num_steps = 1  # its one step is the warmup's first, at lr 0
    (line,) = recipe(None, d(zero), 0, 1)
    assert "steps 0-1 all train at learning rate 0" in line


def test_changes_name_every_key_that_differs_but_not_the_progress_bar() -> None:
    a, b = cfg(), cfg(learning_rate=1e-4)
    b.train.progress = False
    b.model.hidden_size = 7
    b.wandb.mode = "disabled"
    assert config_changes(d(a), d(b)) == {
        "model.hidden_size": [a.model.hidden_size, 7],
        "optim.learning_rate": [a.optim.learning_rate, 1e-4],
    }


def test_history_keeps_one_line_per_start_and_begins_old_workdirs_with_the_saved_config(
    tmp_path,
) -> None:
    a, b = d(cfg()), d(cfg(learning_rate=1e-4))
    record_history(str(tmp_path), b, 10, a)  # a workdir from before the history existed
    record_history(str(tmp_path), b, 15, b)
    lines = history(tmp_path)
    assert [x["step"] for x in lines] == [None, 10, 15]
    assert lines[0]["config"] == a and lines[1]["config"] == b
    assert lines[1]["changes"] == {"optim.learning_rate": [a["optim"]["learning_rate"], 1e-4]}
    assert lines[2]["changes"] == {}


# -- through a real run: trained, resumed with a changed recipe, refused ----------------------
@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from seqlab.run import train_and_evaluate

    c = runlocal_config()
    w = str(tmp_path_factory.mktemp("resume") / "w")
    train_and_evaluate(c, w)
    return c, w


def runlocal_config():
    c = complete_config(task_config("copy_memory"))
    c.model.update(cell="gru", hidden_size=8)
    c.data.batch_size = 4
    c.train.update(num_steps=4, eval_every=2, checkpoint_every=2, log_every=2, progress=False)
    c.task.eval_batches = 1
    c.optim.update(schedule="warmup_cosine", warmup_steps=1)
    return c


@pytest.mark.slow
def test_a_run_resumed_with_a_changed_recipe_records_and_announces_it(
    trained, tmp_path, caplog
) -> None:
    from seqlab.run import train_and_evaluate

    c, w0 = trained
    w = str(tmp_path / "w")
    shutil.copytree(w0, w)
    (first,) = history(w)
    assert first["step"] == 0 and first["config"]["optim"]["warmup_steps"] == 1

    # extending a run whose explicit schedule has ended: announced, and it trains on
    ended = runlocal_config()
    ended.optim.schedule_steps = 4
    ended.train.num_steps = 6
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        train_and_evaluate(ended, w)
    said = [r.getMessage() for r in caplog.records if "learning rate 0" in r.getMessage()]
    assert len(said) == 1 and "steps 4-6 all train at learning rate 0" in said[0], said
    assert [x["step"] for x in history(w)] == [0, 4]
    caplog.clear()

    # a longer run with a new peak lr: one announcement, one history line, config.json new
    more = runlocal_config()
    more.train.num_steps = 8
    more.optim.learning_rate = 1e-3
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        train_and_evaluate(more, w)
    said = [r.getMessage() for r in caplog.records if "changed lr schedule" in r.getMessage()]
    assert len(said) == 1 and "resuming at step 6" in said[0], said
    assert "optim.learning_rate 0.002 -> 0.001" in said[0] and HISTORY in said[0]
    lines = history(w)
    assert [x["step"] for x in lines] == [0, 4, 6]
    assert lines[2]["changes"]["optim.learning_rate"] == [0.002, 0.001]
    assert lines[2]["changes"]["train.num_steps"] == [6, 8]
    assert lines[2]["changes"]["optim.schedule_steps"] == [4, 0]
    assert json.loads(read(os.path.join(w, "config.json")))["optim"]["learning_rate"] == 1e-3
