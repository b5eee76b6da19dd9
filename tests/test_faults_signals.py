"""Ctrl-C (SIGINT) and SIGTERM in every command: one line on stderr, the shell's status for
the signal (130, 143; `seqlab train` checkpoints first and exits 75, tests/test_faults_kill.py),
no traceback, and no file left half-written (seqlab writes a temporary and renames it)."""

from __future__ import annotations

import json
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor

import faults_util as fu
import pytest

from seqlab.run.writers import atomic_open, save_figure, write_json
from seqlab.tools import cli
from seqlab.tools.stop import Stop, Stopped

LM = fu.config_path("charlm.py") + ":runlocal"


# -- in process: every command's signal answer ----------------------------------------------
@pytest.mark.parametrize("name", sorted(cli.COMMANDS))
@pytest.mark.parametrize(
    "signum,code,word", [(signal.SIGINT, 130, "Ctrl-C"), (signal.SIGTERM, 143, "SIGTERM")]
)
def test_every_command_answers_a_signal_in_one_line(monkeypatch, capsys, name, signum, code, word):
    def busy(argv):
        os.kill(os.getpid(), signum)  # delivered here, mid-command
        time.sleep(5)
        raise AssertionError("the signal did not stop the command")

    old = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    monkeypatch.setitem(cli.COMMANDS, name, busy)
    try:
        got = cli.main([name])
    finally:
        signal.signal(signal.SIGINT, old)
    _, err = capsys.readouterr()
    line = fu.assert_one_line_error(got, err, [f"seqlab {name}: stopped by {word}"], code)
    assert "no file was left half-written" in line
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # put back as it was
    fu.count("signals")


def _signal_here() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    for _ in range(10000):  # the handler runs here, inside the caller
        pass


class _Doomed:
    def __del__(self):
        _signal_here()


def _in_gc_callback():
    import gc

    def callback(phase, info):
        if phase == "start":
            gc.callbacks.remove(callback)
            _signal_here()

    gc.callbacks.append(callback)
    gc.collect()


def _in_weakref_callback():
    import weakref

    class Thing:
        pass

    thing = Thing()
    weakref.finalize(thing, _signal_here)
    del thing


def _in_del():
    _Doomed()


@pytest.mark.parametrize("where", [_in_gc_callback, _in_weakref_callback, _in_del])
def test_a_signal_where_python_drops_exceptions_is_delivered_again(capsys, where):
    """Python drops an exception raised in a garbage-collector callback (JAX has one), a
    weakref callback or a ``__del__``: the signal that arrives there comes again once the
    main thread is out of it, and nothing says "Exception ignored"."""
    stop = Stop.install()
    try:
        with pytest.raises(Stopped):
            where()
            time.sleep(5)  # the signal comes back within REDELIVER_S
    finally:
        stop.uninstall()
    assert "Exception ignored" not in capsys.readouterr().err


def test_an_ignored_sigterm_stays_ignored(monkeypatch, capsys):
    """`nohup`-style: a parent that ignores SIGTERM keeps it ignored in seqlab."""
    seen = []
    monkeypatch.setitem(
        cli.COMMANDS, "report", lambda argv: seen.append(signal.getsignal(signal.SIGTERM)) or 0
    )
    old = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        assert cli.main(["report"]) == 0
    finally:
        signal.signal(signal.SIGTERM, old)
    assert seen == [signal.SIG_IGN]


# -- nothing half-written ---------------------------------------------------------------------
def test_atomic_writes_leave_the_old_file_or_the_new_one(tmp_path):
    path = str(tmp_path / "report.md")
    with open(path, "w") as f:
        f.write("old report\n")
    for stop in (KeyboardInterrupt, SystemExit, OSError):
        with pytest.raises(stop), atomic_open(path) as f:
            f.write("half a new rep")
            raise stop()
        assert _read(path) == "old report\n" and os.listdir(tmp_path) == ["report.md"]
    with atomic_open(path) as f:
        f.write("new report\n")
    assert _read(path) == "new report\n" and os.listdir(tmp_path) == ["report.md"]
    write_json(str(tmp_path / "r.json"), {"a": 1})
    assert json.loads((tmp_path / "r.json").read_text()) == {"a": 1}


def _read(path: str) -> str:
    with open(path) as f:
        return f.read()


def test_a_figure_interrupted_mid_save_leaves_no_png(tmp_path):
    from seqlab.tools.figures import plt

    fig, ax = plt.subplots()
    ax.plot([1, 2], [3, 4])

    class Stop(Exception):
        pass

    def interrupted(*a, **k):
        raise Stop

    save = fig.savefig
    fig.savefig = interrupted
    with pytest.raises(Stop):
        save_figure(fig, str(tmp_path / "loss.png"))
    assert os.listdir(tmp_path) == []
    fig.savefig = save
    save_figure(fig, str(tmp_path / "loss.png"), dpi=50)
    assert (tmp_path / "loss.png").read_bytes()[:4] == b"\x89PNG"
    plt.close(fig)


# -- real processes -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    """A trained char LM (a few steps) and a report of it."""
    wd = tmp_path_factory.mktemp("signals") / "lm"
    env = fu.seqlab_env()
    argv = [
        "train",
        "--config",
        LM + fu.charlm_corpus_arg(),
        "--workdir",
        str(wd),
        "--config.train.num_steps=4",
        "--config.train.eval_every=4",
        "--config.train.progress=False",
        "--config.wandb.mode=disabled",
    ]
    r = fu.run(fu.seqlab_cmd(*argv), env, str(wd) + ".train")
    assert r.rc == 0, r.err[-3000:]
    return str(wd)


def _interrupt(args, signum, tmp, env, ready):
    """Starts `seqlab ARGS`, sends ``signum`` once its command runs (``seqlab.tools.cli.main``
    has taken SIGTERM: before that the process is still importing JAX) and ``ready(stdout
    path)`` (to the process group for SIGINT, as a terminal's Ctrl-C); returns (status or
    None if it had ended before the signal, stderr)."""
    proc, out, err = fu.launch(fu.seqlab_cmd(*args), env, tmp)
    deadline = time.time() + 120
    while proc.poll() is None and not _in_main(proc.pid) and time.time() < deadline:
        time.sleep(0.05)
    t0 = time.time()
    while proc.poll() is None and not ready(out, time.time() - t0) and time.time() < deadline:
        time.sleep(0.05)
    if proc.poll() is not None:
        return None, fu.read(err)
    if signum == signal.SIGINT:
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    proc.wait(timeout=120)
    return proc.returncode, fu.read(err)


def _in_main(pid: int) -> bool:
    """Whether the process catches SIGTERM (Linux: SigCgt in /proc/PID/status)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            caught = next(ln for ln in f if ln.startswith("SigCgt:"))
    except (OSError, StopIteration):
        return False
    return bool(int(caught.split()[1], 16) >> (signal.SIGTERM - 1) & 1)


def _after(seconds):
    return lambda out, waited: waited > seconds


def _printed(out, waited):
    return os.path.exists(out) and os.path.getsize(out) > 0


@pytest.mark.slow
def test_real_commands_stop_on_a_signal_with_one_line(lm_run, tmp_path):
    env = fu.seqlab_env()
    inspect_out = tmp_path / "inspect"
    cases = {
        "sample-int": (
            ["sample", "--workdir", lm_run, "--length", "300000"],
            signal.SIGINT,
            _printed,
        ),
        "sample-term": (
            ["sample", "--workdir", lm_run, "--length", "300000", "--num_samples", "2"],
            signal.SIGTERM,
            _after(3),
        ),
        "inspect-int": (
            ["inspect", "--workdir", lm_run, "--out", str(inspect_out), "--max_chars", "20000"],
            signal.SIGINT,
            _after(0.5),  # on an idle machine the whole page takes under 3 s
        ),
        "eval-term": (["eval", "--workdir", lm_run], signal.SIGTERM, _after(0.5)),
        "report-int": (["report", lm_run], signal.SIGINT, _after(0.2)),
    }
    with ThreadPoolExecutor(len(cases)) as pool:
        futures = {
            n: pool.submit(_interrupt, args, s, str(tmp_path / n), env, ready)
            for n, (args, s, ready) in cases.items()
        }
        results = {n: f.result() for n, f in futures.items()}
    stopped = []
    for name, (code, err) in results.items():
        if code is None:  # it finished before the signal came: nothing to see
            assert "Traceback" not in err, err[-3000:]
            continue
        stopped.append(name)
        signum = cases[name][1]
        word = "Ctrl-C" if signum == signal.SIGINT else "SIGTERM"
        cmd = cases[name][0][0]
        assert code == 128 + signum and "Traceback" not in err, (name, code, err[-3000:])
        lines = [ln for ln in err.replace("\r", "\n").splitlines() if ln.strip()]
        assert lines[-1].startswith(f"seqlab {cmd}: stopped by {word}"), (name, lines[-5:])
        assert sum("stopped by" in ln for ln in lines) == 1, (name, lines[-5:])
    assert {"sample-int", "sample-term", "inspect-int"} <= set(stopped), results
    # Nothing half-written: no temporaries, and what exists is whole.
    for d in (lm_run, str(inspect_out)):
        for root, _, files in os.walk(d):
            assert not [f for f in files if ".tmp" in f], (root, files)
    if (inspect_out / "index.html").exists():
        assert (inspect_out / "index.html").read_text().rstrip().endswith("</html>")
    fu.count("signals", len(stopped))
