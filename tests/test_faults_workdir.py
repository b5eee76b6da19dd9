"""Fault injection on the workdir: damaged or stray checkpoints (skipped and set aside, never
deleted; train, eval and sample go on from the newest readable one), results that a fresh
start would overwrite, two processes on one workdir, a step budget below the checkpoint's
step, and a disk that fills up during a save or a metrics write (one line, exit 2, the last
complete checkpoint intact). The refusals (one line, exit 2, workdir untouched) count as
malformed inputs in the summary line (tests/faults_util.py).
"""

from __future__ import annotations

import errno
import glob
import json
import logging
import os
import random
import shutil
import socket
import subprocess
import sys
import traceback

import orbax.checkpoint as ocp
import pytest

try:
    from tests import faults_util as fu
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    import faults_util as fu

from seqlab import load_run
from seqlab.run.checkpoint import Checkpointer
from seqlab.run.workdir import LOCK, WorkdirLock
from seqlab.run.writers import JsonlWriter
from seqlab.tools.cli import main

LR = fu.config_path("long_range.py") + ":runlocal"
LM = fu.config_path("charlm.py") + ":runlocal"
FAST = [
    "--config.train.log_every=2",
    "--config.train.eval_every=4",
    "--config.train.checkpoint_every=2",
    "--config.train.progress=False",
    "--config.wandb.mode=disabled",
]
LM_FAST = [*FAST, "--config.data.max_chars=0", "--config.task.sample_length=8"]
UNTOUCHED = "nothing was changed"


@pytest.fixture(autouse=True, scope="session")
def _faults_summary(request):
    fu.register_summary(request.config)


def run_main(capsys, argv):
    """`seqlab.tools.cli.main(argv)` -> (exit status, stdout, stderr); an exception escaping
    main becomes status 'raised' with its traceback as stderr."""
    try:
        code = main([str(a) for a in argv])
    except BaseException:  # noqa: BLE001 (whatever escapes is the finding)
        code = "raised"
        print(traceback.format_exc(), file=sys.stderr)
    out, err = capsys.readouterr()
    return code, out, err


def train(workdir, steps=4, *extra, config=LR):
    return [
        "train",
        "--config",
        config,
        "--workdir",
        workdir,
        f"--config.train.num_steps={steps}",
        *FAST,
        *extra,
    ]


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    """A finished adding-problem run: checkpoints 2 and 4 (4 with eval metrics)."""
    wd = tmp_path_factory.mktemp("lr") / "run"
    assert main(train(str(wd))) == 0
    return str(wd)


@pytest.fixture
def wd(done, tmp_path):
    """A copy of the finished run to damage."""
    dst = tmp_path / "run"
    shutil.copytree(done, dst)
    return str(dst)


def warnings(caplog) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "seqlab" and r.levelno >= logging.WARNING
    ]


def truncate(paths) -> None:
    for p in paths:
        if os.path.isfile(p):
            open(p, "w").close()


def files_under(directory: str) -> dict[str, bytes]:
    out = {}
    for p in glob.glob(os.path.join(directory, "**"), recursive=True):
        if os.path.isfile(p):
            with open(p, "rb") as f:
                out[os.path.relpath(p, directory)] = f.read()
    return out


# -- 1. a damaged or stray latest checkpoint --------------------------------------------------
DAMAGE = {
    # name: (what to do to WORKDIR/checkpoints, the unreadable step, the step used instead)
    "truncated": (lambda ck: truncate(glob.glob(f"{ck}/4/**", recursive=True)), 4, 2),
    "state-data-truncated": (
        lambda ck: truncate(glob.glob(f"{ck}/4/state/**/d/*", recursive=True)),
        4,
        2,
    ),
    "meta-fine-state-gone": (lambda ck: shutil.rmtree(f"{ck}/4/state"), 4, 2),
    "empty-step-99": (lambda ck: os.mkdir(f"{ck}/99"), 99, 4),
    "stray-step-99": (
        lambda ck: (os.mkdir(f"{ck}/99"), open(f"{ck}/99/notes.txt", "w").close()),
        99,
        4,
    ),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
@pytest.mark.slow
def test_eval_skips_an_unreadable_checkpoint_and_moves_nothing(damage, wd, capsys, caplog):
    hurt, bad, good = DAMAGE[damage]
    hurt(os.path.join(wd, "checkpoints"))
    before = fu.snapshot(os.path.join(wd, "checkpoints"))
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        code, out, err = run_main(capsys, ["eval", "--workdir", wd])
    assert code == 0, err[-3000:]
    assert json.loads(out)["step"] == good
    said = warnings(caplog)
    assert len(said) == 1 and f"step {bad} " in said[0] and "unreadable" in said[0], said
    assert f"using step {good}" in said[0], said
    assert fu.snapshot(os.path.join(wd, "checkpoints")) == before  # eval only reads


@pytest.mark.parametrize("damage", ["truncated", "state-data-truncated", "empty-step-99"])
@pytest.mark.slow
def test_train_sets_an_unreadable_checkpoint_aside_and_resumes(damage, wd, done, capsys, caplog):
    hurt, bad, good = DAMAGE[damage]
    ck = os.path.join(wd, "checkpoints")
    hurt(ck)
    damaged = files_under(os.path.join(ck, str(bad)))
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        code, _, err = run_main(capsys, train(wd, 6))
    assert code == 0, err[-3000:]
    assert f"resumed from {wd} at step {good}" in err
    said = warnings(caplog)
    assert len(said) == 1 and f"step {bad} " in said[0] and "moved to" in said[0], said
    # never deleted: the damaged step is beside the checkpoints, byte for byte
    assert files_under(os.path.join(wd, "checkpoints.unreadable", str(bad))) == damaged
    view = fu.ckpt_view(wd)
    assert view.latest == 6 and 99 not in view.finalized, view
    # the resumed run is the run that was never damaged: same rows, same step-4 state
    rows = fu.strip_perf(fu.read_rows(os.path.join(wd, "metrics.jsonl")))
    ref = fu.strip_perf(fu.read_rows(os.path.join(done, "metrics.jsonl")))
    assert rows[: len(ref)] == ref
    assert not fu.tree_differences(fu.restore_raw(wd, 4)[0], fu.restore_raw(done, 4)[0])


def test_stray_folders_in_checkpoints_are_ignored(wd, capsys, caplog):
    ck = os.path.join(wd, "checkpoints")
    os.mkdir(os.path.join(ck, "notes"))
    os.mkdir(os.path.join(ck, "4.bak"))
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        code, out, err = run_main(capsys, ["eval", "--workdir", wd])
    assert code == 0 and json.loads(out)["step"] == 4, err[-3000:]
    assert warnings(caplog) == []


def save_steps(workdir, config, metrics_by_step) -> None:
    """Checkpoints of the initial state at chosen steps with chosen eval metrics (no
    training: only what load_run reads)."""
    from seqlab.run.state import checkpoint_meta, init_train_state
    from seqlab.tasks import make_task

    task = make_task(config)
    _, state, _ = init_train_state(config, task)
    ckpt = Checkpointer(os.path.join(workdir, "checkpoints"), keep=10, async_save=False)
    for step, metrics in metrics_by_step.items():
        ckpt.save(step, state, checkpoint_meta(config, task), metrics=metrics)
    ckpt.close()


def tiny(task: str):
    from seqlab.tasks import task_config

    c = task_config(task)
    c.model.hidden_size, c.data.seq_len, c.data.batch_size, c.task.eval_batches = 6, 8, 4, 1
    return c


def test_best_skips_an_unreadable_best_checkpoint(tmp_path, caplog):
    """--best falls back to the next best readable step, in the task's direction."""
    save_steps(
        tmp_path, tiny("adding"), {1: {"eval/mse": 0.3}, 2: {"eval/mse": 0.1}, 3: {"eval/mse": 0.2}}
    )
    shutil.rmtree(tmp_path / "checkpoints" / "2" / "state")  # the best one
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        assert load_run(str(tmp_path), best=True).step == 3  # the next best (0.2 < 0.3)
    assert len(warnings(caplog)) == 1 and "step 2 " in warnings(caplog)[0]
    shutil.rmtree(tmp_path / "checkpoints" / "3" / "meta")
    assert load_run(str(tmp_path)).step == 1  # the latest readable one
    assert load_run(str(tmp_path), best=True).step == 1


def test_sample_skips_an_unreadable_checkpoint(tmp_path, capsys, caplog):
    rng = random.Random(0)
    (tmp_path / "A.txt").write_text("".join(rng.choice("abcdefghij \n") for _ in range(20000)))
    config = tiny("charlm")
    config.data.corpus = f"file:{tmp_path / 'A.txt'}"
    wd = tmp_path / "lm"
    save_steps(wd, config, {2: {}, 4: {}})
    truncate(glob.glob(f"{wd}/checkpoints/4/**", recursive=True))
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        code, out, err = run_main(capsys, ["sample", "--workdir", wd, "--length=5", "--prime=a"])
    assert code == 0, err[-3000:]
    assert out.startswith("a") and len(out.strip()) == 6, out
    said = warnings(caplog)
    assert len(said) == 1 and "step 4 " in said[0] and "using step 2" in said[0], said


@pytest.mark.slow
def test_real_process_damaged_checkpoint_is_one_warning_line(wd, tmp_path):
    """No traceback, no "Event loop is closed" storm from tensorstore: one line on stderr."""
    truncate(glob.glob(f"{wd}/checkpoints/4/state/**/d/*", recursive=True))
    env = fu.seqlab_env(str(tmp_path / "jax-cache"))
    r = fu.run(fu.seqlab_module_cmd("eval", "--workdir", wd), env, str(tmp_path / "eval"))
    assert r.rc == 0, r.err[-3000:]
    lines = fu.error_lines(r.err)
    assert len(lines) == 1 and "step 4 " in lines[0] and "unreadable" in lines[0], r.err[-3000:]
    assert json.loads(r.out)["step"] == 2


# -- 2. results a fresh start would overwrite ------------------------------------------------
def refused(capsys, argv, workdir, needles):
    """One line, exit 2, and nothing in ``workdir`` changed."""
    fu.count("malformed_tried")
    before = fu.snapshot(workdir)
    code, out, err = run_main(capsys, argv)
    line = fu.assert_one_line_error(code, err, needles)
    assert out.strip() == "", out
    assert fu.snapshot(workdir) == before, fu.diff_snapshots(before, fu.snapshot(workdir))
    fu.count("malformed_rejected")
    return line


def test_missing_checkpoints_with_results_is_refused(wd, capsys):
    shutil.rmtree(os.path.join(wd, "checkpoints"))
    refused(
        capsys,
        train(wd),
        wd,
        ["metrics from a previous run (3 rows)", "config.json", "checkpoints/ is missing"]
        + [UNTOUCHED, "use a new --workdir", f"move {wd} aside"],
    )


def test_every_checkpoint_unreadable_with_results_is_refused(wd, capsys):
    truncate(glob.glob(f"{wd}/checkpoints/*/**", recursive=True))
    refused(capsys, train(wd), wd, ["metrics from a previous run", "steps 4, 2", "unreadable"])
    refused(capsys, ["eval", "--workdir", wd], wd, ["no readable checkpoint", "steps 4, 2"])


def test_finished_run_with_its_checkpoints_removed_is_refused(wd, capsys):
    for step in (2, 4):
        shutil.rmtree(os.path.join(wd, "checkpoints", str(step)))
    refused(capsys, train(wd, 6), wd, ["results.json", "holds no checkpoint", UNTOUCHED])


@pytest.mark.parametrize("command", ["train", "eval", "sample"])
def test_checkpoints_that_is_a_file_is_refused(command, wd, capsys):
    shutil.rmtree(os.path.join(wd, "checkpoints"))
    open(os.path.join(wd, "checkpoints"), "w").close()
    argv = train(wd) if command == "train" else [command, "--workdir", wd]
    refused(capsys, argv, wd, ["checkpoints is a file, not a checkpoint directory"])


@pytest.mark.parametrize("command", ["train", "eval", "sample"])
def test_workdir_that_is_a_file_is_refused(command, wd, capsys):
    path = os.path.join(wd, "config.json")
    for workdir, needle in ((path, f"{path} is a file"), (path + "/run", f"under a file ({path})")):
        argv = train(workdir) if command == "train" else [command, "--workdir", workdir]
        refused(capsys, argv, wd, [needle, "not a"])


def test_run_stopped_before_its_first_checkpoint_starts_over(wd, capsys):
    """What a kill during the first save leaves (rows, config.json, no complete checkpoint)
    is not 'results': the rows are logged again, so the run starts over."""
    for step in (2, 4):
        shutil.rmtree(os.path.join(wd, "checkpoints", str(step)))
    os.remove(os.path.join(wd, "results.json"))
    code, _, err = run_main(capsys, train(wd))
    assert code == 0, err[-3000:]
    assert "resumed from" not in err
    assert [r["step"] for r in fu.read_rows(os.path.join(wd, "metrics.jsonl"))] == [2, 4, 4]


# -- 3. one process per workdir -----------------------------------------------------------------
def test_second_process_on_a_workdir_stops_at_once(wd, capsys):
    held = WorkdirLock(wd)
    held.acquire()  # as another `seqlab train` would: its own open file, its own flock
    try:
        line = refused(capsys, train(wd, 6), wd, ["in use by another seqlab train"])
        assert f"pid {os.getpid()} on host {socket.gethostname()}" in line
    finally:
        held.release()
    assert not os.path.exists(os.path.join(wd, LOCK))


@pytest.mark.slow
def test_stale_lock_of_a_killed_run_is_taken_over(wd, capsys, caplog):
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"from seqlab.run.workdir import WorkdirLock as L; L({wd!r}).acquire(); "
            "print(1, flush=True); input()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "1"  # it holds the lock
    holder.kill()  # kill -9: no release
    holder.wait()
    assert fu.read_json(os.path.join(wd, LOCK))["pid"] == holder.pid
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        code, _, err = run_main(capsys, train(wd, 4))  # (finished: nothing to train)
    assert code == 0, err[-3000:]
    said = warnings(caplog)
    assert len(said) == 1 and f"pid {holder.pid}" in said[0] and "taking over" in said[0], said
    assert not os.path.exists(os.path.join(wd, LOCK))  # released at the end


# -- 4. a step budget below the checkpoint's step -------------------------------------------------
def test_num_steps_below_the_checkpoint_changes_nothing(wd, capsys):
    line = refused(capsys, train(wd, 2), wd, ["already at step 4", "train.num_steps=2", UNTOUCHED])
    assert "train.num_steps above 4" in line
    assert not os.path.exists(os.path.join(wd, LOCK))


def test_finished_run_run_again_rewrites_nothing(wd, capsys):
    from ml_collections import ConfigDict

    from seqlab.run.loop import train_and_evaluate

    before = fu.snapshot(wd)
    code, _, err = run_main(capsys, train(wd, 4))
    assert code == 0, err[-3000:]
    assert fu.snapshot(wd) == before, fu.diff_snapshots(before, fu.snapshot(wd))
    # ... and it still reports the run's final metrics, those of results.json
    metrics = train_and_evaluate(ConfigDict(fu.read_json(os.path.join(wd, "config.json"))), wd)
    results = fu.read_json(os.path.join(wd, "results.json"))
    assert metrics == {k: v for k, v in results.items() if k not in ("step", "wall_time_s")}
    assert fu.snapshot(wd) == before


def test_train_state_of_another_optimizer_is_one_line(wd, capsys):
    """Siblings: a checkpoint whose state has another structure is a mismatch, not damage
    (never set aside)."""
    refused(
        capsys,
        train(wd, 6, "--config.optim.name=sgd"),
        wd,
        ["optim.name: checkpoint 'adam' vs config 'sgd'"],
    )


@pytest.mark.slow
def test_num_seeds_run_resumes(tmp_path, capsys):
    """Sibling: resuming a num_seeds > 1 run crashed (int() of the per-seed step array)."""
    wd, seeds = str(tmp_path / "run"), "--config.num_seeds=2"
    assert main(train(wd, 2, seeds)) == 0
    code, _, err = run_main(capsys, train(wd, 4, seeds))
    assert code == 0 and f"resumed from {wd} at step 2" in err, err[-3000:]
    steps, _ = fu.restore_raw(wd, 4)
    assert steps["step"].tolist() == [4, 4]


# -- 5. the disk fills up during a save or a metrics write --------------------------------------
ENOSPC_TS = (  # what tensorstore raises (seen on a full tmpfs)
    'RESOURCE_EXHAUSTED: Error writing local file "{path}/manifest.ocdbt": Failed to write 114 '
    "bytes to file 8: No space left on device [os_error_code='28']"
)


def fail_at(monkeypatch, cls, name, step_of, error):
    real = getattr(cls, name)

    def failing(*args, **kw):
        if step_of(*args, **kw):
            raise error
        return real(*args, **kw)

    monkeypatch.setattr(cls, name, failing)


def full_disk(capsys, wd, failed, last=4):
    code, out, err = run_main(capsys, train(wd, 8))
    line = fu.assert_error_line(code, err, [f"could not write {failed}", "No space left on device"])
    assert f"the last complete checkpoint, step {last}, is intact" in line and "MiB free" in line
    assert "Event loop is closed" not in err
    assert fu.ckpt_view(wd).latest == last
    assert not os.path.exists(os.path.join(wd, LOCK))
    return line


@pytest.mark.parametrize("where", ["save", "background", "metrics"])
@pytest.mark.slow
def test_disk_full_is_one_line_and_the_run_resumes(where, wd, capsys, monkeypatch):
    ck = os.path.join(wd, "checkpoints")
    if where == "save":  # the save itself raises
        err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fail_at(monkeypatch, ocp.CheckpointManager, "save", lambda self, step, **kw: step == 6, err)
        failed = f"checkpoint step 6 in {ck}"
    elif where == "background":  # the async commit fails; the next save or close says so
        err = ValueError(ENOSPC_TS.format(path=ck))
        fail_at(
            monkeypatch,
            ocp.StandardCheckpointHandler,
            "finalize",
            lambda self, d: "/checkpoints/6." in str(d),
            err,
        )
        failed = f"checkpoint step 6 in {ck}"
    else:  # metrics.jsonl
        err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fail_at(monkeypatch, JsonlWriter, "write_scalars", lambda self, step, s: step == 6, err)
        failed = f"the run's files in {wd}"
    full_disk(capsys, wd, failed)
    if where != "background":
        return
    monkeypatch.undo()  # space freed: the same command resumes from the last complete step
    code, _, err = run_main(capsys, train(wd, 8))
    assert code == 0 and f"resumed from {wd} at step 4" in err, err[-3000:]
    steps = [
        r["step"] for r in fu.read_rows(os.path.join(wd, "metrics.jsonl")) if "train/loss" in r
    ]
    assert steps == [2, 4, 6, 8]
