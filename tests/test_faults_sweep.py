"""Sweeps own their directory and never mistake an unfinished point for a finished one: a
second sweep on a directory stops at once with one line; a point left `running` by a killed
process, one stopped by a signal or a time limit, one that failed, and one whose command
changed are run again (resumed), never skipped; a signal to the sweep stops every point at a
checkpoint; `seqlab report` tells done, running, stopped (at which step) and failed apart.

Most points here are run by a stand-in for `python` (``PYTHON``, as the sweep allows) that
acts out one ending of `seqlab train` in milliseconds; the last test runs and kills a real
one."""

from __future__ import annotations

import json
import os
import signal
import sys
import textwrap
import time

import faults_util as fu
import pytest

from seqlab.run.workdir import LOCK, WorkdirLock, lock_holder
from seqlab.tools.cli import main
from seqlab.tools.report import collect
from seqlab.tools.sweep import _command, is_finished, point_name, run_sweep, say_failed

POINTS = [{"model.hidden_size": h} for h in (8, 9, 10, 11, 12, 13)]

#: `python -m seqlab train --config C --workdir W ...` acted out: records W in $CALLS, then
#: per $FAKE_MODE: finishes (done), stops early with exit 0 (time_limit), or runs until
#: SIGTERM and exits 75 as a preempted train does (wait)
FAKE = """#!/bin/sh
wd="$7"
echo "$wd" >> "$CALLS"
mkdir -p "$wd"
echo '{"train": {"num_steps": 4}}' > "$wd/config.json"
case "${FAKE_MODE:-done}" in
  done) echo '{"step": 4}' > "$wd/results.json"; exit 0 ;;
  time_limit) echo '{"step": 2}' > "$wd/results.json"; exit 0 ;;
  wait)
    trap 'echo "seqlab train: stopped by a signal at step 2; checkpoint saved"; exit 75' TERM
    touch "$wd/started"
    while :; do sleep 0.05; done ;;
esac
"""


def write_config(tmp_path, points=POINTS) -> str:
    path = tmp_path / "sweepcfg.py"
    path.write_text(
        textwrap.dedent(f"""
        import importlib.util
        _spec = importlib.util.spec_from_file_location(
            "_long_range", {fu.config_path("long_range.py")!r})
        _mod = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_mod)

        def get_config(arg=None):
            c = _mod.get_config("runlocal")
            c.train.num_steps = 4
            c.train.eval_every = 2
            c.train.checkpoint_every = 2
            c.train.progress = False
            c.wandb.mode = "disabled"
            return c

        def get_sweep(arg=None):
            yield from {points!r}
        """)
    )
    return str(path)


@pytest.fixture
def fake(tmp_path, monkeypatch):
    python = tmp_path / "fake-python"
    python.write_text(FAKE)
    python.chmod(0o755)
    calls = tmp_path / "calls"
    monkeypatch.setenv("PYTHON", str(python))
    monkeypatch.setenv("CALLS", str(calls))

    def ran() -> list[str]:
        if not calls.exists():
            return []
        names = [os.path.basename(ln) for ln in calls.read_text().split()]
        calls.unlink()
        return sorted(names)

    return ran


def status(sub) -> dict:
    with open(os.path.join(sub, "status.json")) as f:
        return json.load(f)


def set_status(sub, state: str, command=None, **more) -> None:
    os.makedirs(sub, exist_ok=True)
    st = {"state": state, "overrides": {}, **more}
    if command is not None:
        st["command"] = command
    with open(os.path.join(sub, "status.json"), "w") as f:
        json.dump(st, f)


def test_unfinished_points_are_rerun_never_skipped(tmp_path, fake, capsys):
    """The planted bug this catches: a point left `running` (its process killed) taken for
    finished, so that every re-run skips it. Its siblings: stopped, failed, a done point whose
    command changed, and a damaged status; a point still running elsewhere is not started
    twice."""
    config, out = write_config(tmp_path), str(tmp_path / "sweep")
    sub = {p["model.hidden_size"]: os.path.join(out, point_name(p)) for p in POINTS}
    cmd = {h: _command(config, sub[h], {"model.hidden_size": h}, []) for h in sub}
    set_status(sub[8], "running", cmd[8])  # its sweep and train were killed: no lock held
    set_status(sub[9], "done", cmd[9])  # finished: skipped
    set_status(sub[10], "stopped", cmd[10], returncode=75)
    set_status(sub[11], "failed", cmd[11], returncode=1)
    set_status(sub[12], "done", [*cmd[12], "--config.train.num_steps=8"])  # other flags
    os.makedirs(sub[13])
    with open(os.path.join(sub[13], "status.json"), "wb") as f:
        f.write(b'{"state": "do\xff')  # damaged: not trusted
    logs: list[str] = []
    st = run_sweep(config, out, log=logs.append)
    assert fake() == sorted(os.path.basename(sub[h]) for h in (8, 10, 11, 12, 13)), logs
    assert all(s["state"] == "done" for s in st.values()), st
    assert "1 done, 5 to run" in logs[0], logs
    assert not os.path.exists(os.path.join(out, LOCK))  # the sweep let go of its directory
    # A point whose train still runs (an earlier sweep's, killed, left it) is not started
    # twice: the re-run says so, and says it again until that train ends.
    set_status(sub[8], "running", cmd[8])
    with WorkdirLock(sub[8]):
        st = run_sweep(config, out, log=logs.append)
        assert fake() == [] and st[os.path.basename(sub[8])]["state"] == "running"
        assert "still running from an earlier sweep" in logs[-1]
        unfinished = {n: s for n, s in st.items() if s["state"] != "done"}
        assert say_failed("sweep", unfinished) == 1
        line = capsys.readouterr().err
        assert "still running" in line and "failed" not in line, line
    st = run_sweep(config, out, log=logs.append)
    assert fake() == [os.path.basename(sub[8])] and st[os.path.basename(sub[8])]["state"] == "done"


def test_is_finished_only_for_done_with_the_same_command():
    cmd = ["python", "-m", "seqlab", "train", "--workdir", "w"]
    assert is_finished({"state": "done", "command": cmd}, cmd)
    assert is_finished({"state": "done", "command": ["/other/python", *cmd[1:]]}, cmd)
    assert is_finished({"state": "done"}, cmd)  # a status from before commands were kept
    for state in ("running", "stopped", "failed", "", None):
        assert not is_finished({"state": state, "command": cmd}, cmd), state
    assert not is_finished({}, cmd)
    assert not is_finished({"state": "done", "command": [*cmd, "--config.seed=1"]}, cmd)


def test_time_limited_point_is_stopped_then_resumed(tmp_path, fake, monkeypatch):
    """A train that exits 0 short of train.num_steps (train.time_limit_s) is `stopped`, not
    done: the next sweep runs it on."""
    config, out = write_config(tmp_path, POINTS[:1]), str(tmp_path / "sweep")
    monkeypatch.setenv("FAKE_MODE", "time_limit")
    (st,) = run_sweep(config, out, log=lambda s: None).values()
    assert st["state"] == "stopped" and "step 2 of 4" in st["error"], st
    monkeypatch.setenv("FAKE_MODE", "done")
    (st,) = run_sweep(config, out, log=lambda s: None).values()
    assert st["state"] == "done" and len(fake()) == 2


def test_second_sweep_on_a_directory_refuses_in_one_line(tmp_path, fake, capsys):
    """Two sweeps on one directory: the second stops before it starts any point or writes
    anything, naming the first; a train pointed at the sweep's directory stops the same way."""
    config, out = write_config(tmp_path, POINTS[:2]), tmp_path / "sweep"
    out.mkdir()
    with WorkdirLock(str(out), "seqlab sweep"):
        before = fu.snapshot(str(out))
        code = main(["sweep", "--config", config, "--workdir", str(out)])
        _, err = capsys.readouterr()
        line = fu.assert_one_line_error(code, err, ["in use by another seqlab sweep"])
        assert f"pid {os.getpid()}" in line
        assert fu.diff_snapshots(before, fu.snapshot(str(out))) == [] and fake() == []
        code = main(["train", "--config", config, "--workdir", str(out)])
        _, err = capsys.readouterr()
        fu.assert_one_line_error(code, err, ["in use by another seqlab sweep"])
        assert lock_holder(str(out))["command"] == "seqlab sweep"
    assert lock_holder(str(out)) is None
    fu.count("malformed_tried", 2)
    fu.count("malformed_rejected", 2)


def test_report_tells_done_running_stopped_failed(tmp_path):
    """A run killed part-way is never `done`: done is results.json at train.num_steps."""
    root = tmp_path / "runs"
    rows = [{"step": 2, "train/loss": 1.0}, {"step": 2, "eval/mse": 0.5}]

    def run(name, status=None, results=None, checkpoints=()):
        d = root / name
        d.mkdir(parents=True)
        (d / "config.json").write_text(
            json.dumps({"task": {"name": "adding"}, "train": {"num_steps": 4}})
        )
        (d / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        if status:
            (d / "status.json").write_text(json.dumps({"state": status, "overrides": {}}))
        if results is not None:
            (d / "results.json").write_text(json.dumps({"step": results}))
        for s in checkpoints:
            (d / "checkpoints" / str(s)).mkdir(parents=True)
        return str(d)

    run("done", "done", results=4, checkpoints=(2, 4))
    run("killed-sweep-point", "running", checkpoints=(2,))
    run("killed-said-done", "done", checkpoints=(2,))  # a status that claims too much
    run("killed-plain", checkpoints=())
    run("time-limited", "done", results=2, checkpoints=(2,))
    run("failed", "failed")
    live = run("live", "running", checkpoints=(2,))
    with WorkdirLock(live):
        states = {r["run"]: r["state"] for r in collect(str(root))}
    assert states == {
        "done": "done",
        "killed-sweep-point": "stopped at step 2 of 4",
        "killed-said-done": "stopped at step 2 of 4",
        "killed-plain": "stopped at step 0 (no checkpoint yet) of 4",
        "time-limited": "stopped at step 2 of 4",
        "failed": "failed",
        "live": "running",
    }, states
    # The lock file a killed train left behind is not a live holder.
    (root / "live" / LOCK).write_text(json.dumps({"pid": 2**22 + 7, "host": "elsewhere"}))
    assert lock_holder(str(root / "live")) is None
    assert collect(str(root))[-1]["state"] != "running"


def _sweep_process(tmp_path, config, name, env):
    out = tmp_path / name
    cmd = fu.seqlab_cmd("sweep", "--config", config, "--workdir", str(out), "--parallel", "2")
    proc, o, e = fu.launch(cmd, env, str(tmp_path / name))
    return proc, out, o, e


@pytest.mark.slow
def test_signal_to_a_sweep_stops_its_points_at_a_checkpoint(tmp_path, fake):
    """SIGTERM to the sweep, and Ctrl-C to its process group: each running point gets one
    SIGTERM (a train then checkpoints and exits 75), is recorded `stopped`, and the sweep
    ends with one line, exit 143 / 130, its lock released."""
    config = write_config(tmp_path, POINTS[:2])
    env = {**fu.seqlab_env(), "FAKE_MODE": "wait"}
    runs = {
        "term": (signal.SIGTERM, 143, "SIGTERM", lambda p: p.send_signal(signal.SIGTERM)),
        "int": (signal.SIGINT, 130, "Ctrl-C", lambda p: os.killpg(p.pid, signal.SIGINT)),
    }
    started = {n: _sweep_process(tmp_path, config, n, env) for n in runs}
    for name, (_, code, word, send) in runs.items():
        proc, out, o, e = started[name]
        subs = [out / point_name(p) for p in POINTS[:2]]
        deadline = time.time() + 120
        while not all((s / "started").exists() for s in subs) and proc.poll() is None:
            assert time.time() < deadline, fu.read(e)
            time.sleep(0.1)
        send(proc)
        proc.wait(timeout=60)
        err = fu.read(e)
        assert proc.returncode == code and "Traceback" not in err, err[-3000:]
        assert fu.error_lines(err)[-1].startswith(f"seqlab sweep: stopped by {word}"), err
        for s in subs:
            st = status(str(s))
            assert st["state"] == "stopped" and st["returncode"] == 75, st
            assert "stopped by a signal at step 2" in st["error"], st
        assert not (out / LOCK).exists() and lock_holder(str(out)) is None
        assert not [f for f in os.listdir(subs[0]) if ".tmp" in f]
    fu.count("signals", 2)


@pytest.mark.slow
def test_real_point_killed_mid_run_resumes_on_rerun(tmp_path, capsys):
    """A real sweep whose point is killed (SIGKILL: no status written, its lock file left)
    part-way: report says stopped, and the next sweep resumes it from its checkpoint."""
    config = write_config(tmp_path, [{"model.cell": "gru"}])
    out = tmp_path / "sweep"
    sub = out / "cell-gru"
    env = {**fu.seqlab_env(), "PYTHON": sys.executable}
    extra = [
        "--config.train.num_steps=60",
        "--config.train.checkpoint_every=10",
        "--config.train.eval_every=30",
    ]
    cmd = fu.seqlab_cmd("sweep", "--config", config, "--workdir", str(out), *extra)
    proc, _, e = fu.launch(cmd, env, str(tmp_path / "first"))
    deadline = time.time() + 240
    while not any(n.isdigit() for n in _listdir(sub / "checkpoints")):
        assert proc.poll() is None and time.time() < deadline, fu.read(e)[-3000:]
        time.sleep(0.2)
    holder = lock_holder(str(sub))
    os.kill(int(holder["pid"]), signal.SIGKILL)  # the point's train, then its sweep
    proc.kill()
    proc.wait()
    time.sleep(0.5)
    assert status(str(sub))["state"] in ("running", "failed")
    (row,) = collect(str(out))
    assert row["state"].startswith("stopped at step "), row
    code = main(["sweep", "--config", config, "--workdir", str(out), *extra])
    _, err = capsys.readouterr()
    assert code == 0, err[-3000:]
    assert status(str(sub))["state"] == "done"
    log = (sub / "train.log").read_text(errors="replace")
    assert log.count("=== seqlab sweep") == 2 and "resumed from" in log  # both attempts kept
    (row,) = collect(str(out))
    assert row["state"] == "done" and row["steps"] == 60, row


def _listdir(path) -> list[str]:
    try:
        return os.listdir(path)
    except OSError:
        return []
