"""Fault injection, continued (tests/test_faults_input.py has the first part and the
fixtures): values that were accepted silently (nan/inf, coefficients out of range, a config
file that calls sys.exit), config files and sweeps that broke in the middle, runs and samples
too big for the memory there is, and messages that named the wrong cause. Each is one line on
stderr, exit status 2, nothing in an existing workdir touched and, for sweeps and probes,
no point run before every point was checked."""

from __future__ import annotations

import json
import os
import shutil
import sys
import textwrap

import jax
import pytest

try:
    from tests import faults_util as fu
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    import faults_util as fu

try:
    from tests.test_faults_input import LM, LM_A, LR, _faults_summary, corp, offline, trained
except ImportError:
    from test_faults_input import LM, LM_A, LR, _faults_summary, corp, offline, trained

from seqlab.run import memory
from seqlab.tools.cli import main
from seqlab.tools.report import collect, report

__all__ = ["_faults_summary", "corp", "offline", "trained"]  # fixtures shared with part one
PROBE = fu.config_path("probe.py") + ":runlocal"
FAST = [
    "--config.train.num_steps=4",
    "--config.train.eval_every=4",
    "--config.train.checkpoint_every=4",
    "--config.train.progress=False",
    "--config.wandb.mode=disabled",
]
CONFIG_FILES = {
    "exit0.py": "import sys\n\ndef get_config(arg=None):\n    sys.exit(0)\n",
    "exit_import.py": "import sys\nsys.exit(3)\n",
    "sections.py": """
        from ml_collections import ConfigDict

        def get_config(arg=None):
            c = ConfigDict()
            c.task = ConfigDict({"name": "adding"})
            if arg == "leaf":
                c.model = 5
            return c
        """,
    "typo.py": """
        from seqlab.tasks import task_config

        def get_config(arg=None):
            c = task_config("adding")
            c.model.hiden_size = 8  # a new key, not the one meant: silently unused before
            return c
        """,
    "types.py": """
        from ml_collections import ConfigDict

        def get_config(arg=None):
            return ConfigDict({"task": {"name": "adding"}, "optim": {"learning_rate": "fast"}})
        """,
    "sweeps.py": f"""
        import importlib.util  # by path: configs/ on sys.path would shadow packages (mnist1d)
        import sys
        _spec = importlib.util.spec_from_file_location(
            "_long_range", {os.path.join(fu.CONFIGS, "long_range.py")!r})
        _mod = importlib.util.module_from_spec(_spec)
        _spec.loader.exec_module(_mod)
        _base = _mod.get_config

        def get_config(arg=None):
            c = _base("runlocal")
            c.train.num_steps = 4
            c.train.eval_every = 4
            c.train.checkpoint_every = 4
            c.train.progress = False
            c.wandb.mode = "disabled"
            return c

        def get_sweep(arg=None):
            if arg == "none":
                return None
            return _points(arg)

        def _points(arg):
            yield {{"model.cell": "gru"}}
            if arg == "raise":
                raise RuntimeError("boom midway")
            if arg == "exit":
                sys.exit(0)
            if arg == "nondict":
                yield 5
            if arg == "unknown":
                yield {{"model.hiden_size": 3}}
            if arg == "bad":
                yield {{"model.hidden_size": 0}}
            if arg == "ok":
                yield {{"model.hidden_size": 12}}
        """,
}


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    d = tmp_path_factory.mktemp("cfg")
    for name, text in CONFIG_FILES.items():
        (d / name).write_text(textwrap.dedent(text))
    return d


@pytest.fixture(autouse=True)
def memory_of_a_laptop(monkeypatch):
    """The host's free memory, capped at 32 GiB: a case too big for it is too big for any
    machine that runs these tests (and the cases do not depend on the machine)."""
    real = memory.host_available
    monkeypatch.setattr(memory, "host_available", lambda: min(real() or 2**35, 2**35))


def run_main(capsys, argv):
    import traceback

    try:
        code = main([str(a) for a in argv])
    except BaseException:  # noqa: BLE001 (whatever escapes is the finding)
        code = "raised"
        print(traceback.format_exc(), file=sys.stderr)
    out, err = capsys.readouterr()
    return code, out, err


SWEEPS = "{cfg}/sweeps.py"
NEW = ["--workdir", "{new}", *FAST]  # a fresh workdir: it must not even be created
# (name, argv with {lr} {lm} {corp} {new} {cfg} {fifo} placeholders, needles in the line)
CASES = [
    # -- 8: values accepted silently --------------------------------------------------------
    ("temperature-nan", ["sample", "--workdir", "{lm}", "--temperature=nan"], ["nan", "finite"]),
    ("temperature-inf", ["sample", "--workdir", "{lm}", "--temperature=inf"], ["--temperature"]),
    ("sample-temps-nan", ["train", LM_A, "--config.task.sample_temperatures=0.5,nan"], ["finite"]),
    ("sample-temps-inf", ["train", LM_A, "--config.task.sample_temperatures=inf"], ["sample_t"]),
    ("sample-temps-neg", ["train", LM_A, "--config.task.sample_temperatures=-1"], [">= 0"]),
    ("b2-2", ["train", LR, "--config.optim.b2=2.0"], ["optim.b2=2.0", "[0, 1)"]),
    ("b1-neg", ["train", LR, "--config.optim.b1=-0.5"], ["optim.b1=-0.5", "[0, 1)"]),
    ("momentum-1", ["train", LR, "--config.optim.momentum=1.0"], ["optim.momentum"]),
    ("weight-decay-neg", ["train", LR, "--config.optim.weight_decay=-0.01"], ["weight_decay"]),
    ("time-limit-neg", ["train", LR, "--config.train.time_limit_s=-1"], ["time_limit_s", ">= 0"]),
    ("lr-inf", ["train", LR, "--config.optim.learning_rate=inf"], ["learning_rate=inf", "finite"]),
    ("lr-nan", ["train", LR, "--config.optim.learning_rate=nan"], ["learning_rate=nan", "finite"]),
    ("clip-inf", ["train", LR, "--config.optim.clip_value=inf"], ["optim.clip_value=inf"]),
    ("forget-bias-nan", ["train", LR, "--config.model.forget_bias=nan"], ["model.forget_bias"]),
    ("explode-nan", ["train", LR, "--config.train.explode_factor=nan"], ["explode_factor"]),
    ("val-fraction-nan", ["train", LM_A, "--config.data.val_fraction=nan"], ["data.val_fraction"]),
    ("end-lr-neg", ["train", LR, "--config.optim.end_lr_factor=-1.0"], ["optim.end_lr_factor"]),
    ("seed-neg", ["train", LR, "--config.seed=-1"], ["config.seed=-1", ">= 0"]),
    ("eval-batch-neg", ["train", LR, "--config.task.eval_batch_size=-8"], ["eval_batch_size"]),
    ("probe-every-neg", ["train", LR, "--config.probe.every=-1"], ["probe.every=-1"]),
    ("config-exit-0", ["train", "{cfg}/exit0.py"], ["bad --config", "sys.exit(0)"]),
    ("config-exit-import", ["train", "{cfg}/exit_import.py"], ["sys.exit(3)"]),
    # -- 5: config files and sweeps that break midway ---------------------------------------
    (
        "config-value-as-section",
        ["train", "{cfg}/sections.py:leaf", "--workdir", "{new}"],
        ["config.model=5", "must be a section"],
    ),
    (
        "config-missing-section",
        ["train", "{cfg}/sections.py", "--workdir", "{new}", "--config.train.num_steps=3"],
        ["no key 'train.num_steps'", "task_config"],
    ),
    (
        "config-unknown-key",
        ["train", "{cfg}/typo.py", "--workdir", "{new}"],
        ["config.model.hiden_size", "did you mean config.model.hidden_size"],
    ),
    (
        "config-wrong-type",
        ["train", "{cfg}/types.py", "--workdir", "{new}"],
        ["optim.learning_rate='fast'", "must be a number"],
    ),
    ("data-dir-is-file", ["train", LM, "--workdir", "{new}"], ["SEQLAB_DATA_DIR=", "is a file"]),
    ("data-dir-blocked", ["train", LM, "--workdir", "{new}"], ["tinyshakespeare", "a folder"]),
    (
        "sweep-raises-midway",
        ["sweep", "--config", SWEEPS, "--sweep", "raise", "--workdir", "{new}"],
        ["get_sweep('raise') failed after 1 point(s)", "RuntimeError: boom midway"],
    ),
    (
        "sweep-yields-non-dict",
        ["sweep", "--config", SWEEPS, "--sweep", "nondict", "--workdir", "{new}"],
        ["yielded 5 as point 2", "dicts"],
    ),
    (
        "sweep-exits",
        ["sweep", "--config", SWEEPS, "--sweep", "exit", "--workdir", "{new}"],
        ["get_sweep('exit')", "sys.exit(0)"],
    ),
    (
        "sweep-returns-none",
        ["sweep", "--config", SWEEPS, "--sweep", "none", "--workdir", "{new}"],
        ["get_sweep('none')", "NoneType"],
    ),
    # -- 6: out of memory -------------------------------------------------------------------
    (
        "hidden-60000",
        ["train", LR, *NEW, "--config.model.hidden_size=60000"],
        ["hidden_size=60000"],
    ),
    ("hidden-1e9", ["train", LR, *NEW, "--config.model.hidden_size=1000000000"], ["needs about"]),
    ("hidden-1e12", ["train", LR, "--config.model.hidden_size=1000000000000"], ["too large"]),
    ("seq-len-1e8", ["train", LR, *NEW, "--config.data.seq_len=100000000"], ["data.seq_len"]),
    ("batch-1e8", ["train", LR, "--config.data.batch_size=100000000"], ["data.batch_size"]),
    (
        "seeds-x-width",
        ["train", LR, "--config.num_seeds=10000", "--config.model.hidden_size=4096"],
        ["num_seeds=10000", "model.hidden_size=4096"],
    ),
    ("sample-1e8", ["sample", "--workdir", "{lm}", "--num_samples=100000000"], ["--num_samples"]),
    (
        "probe-length-1e8",
        ["probe", "--config", PROBE, "--sweep", "lengths=100000000", "--workdir", "{new}"],
        ["sweep point cell-rnn_seq_len-100000000", "data.seq_len=100000000"],
    ),
    # -- 9: messages that named the wrong cause ---------------------------------------------
    ("corpus-dir", ["train", LM + ",corpus=file:{corp}"], ["is a directory"]),
    ("corpus-fifo", ["train", LM + ",corpus=file:{fifo}"], ["is a FIFO"]),
    ("corpus-empty-path", ["train", LM + ",corpus=file:"], ["'file:' names no file"]),
    ("corpus-device", ["train", LM + ",corpus=file:/dev/zero"], ["a character device"]),
    (
        "probe-lengths-word",
        ["probe", "--config", PROBE + ",lengths=ten", "--workdir", "{new}"],
        ["lengths='ten'", "'ten' is not a whole number"],
    ),
    (
        "sweep-lengths-word",
        ["sweep", "--config", LR, "--sweep", "lengths=50+abc", "--workdir", "{new}"],
        ["lengths='50+abc'", "'abc' is not a whole number"],
    ),
    (
        "sweep-unknown-key-point",
        ["sweep", "--config", SWEEPS, "--sweep", "unknown", "--workdir", "{new}"],
        ["sweep point hiden_size-3", "'model.hiden_size'"],
    ),
    (
        "sweep-bad-later-point",
        ["sweep", "--config", SWEEPS, "--sweep", "bad", "--workdir", "{new}"],
        ["sweep point hidden_size-0", "model.hidden_size=0"],
    ),
    (
        "probe-bad-passthrough",
        ["probe", "--config", PROBE, "--workdir", "{new}", "--config.optim.b2=2"],
        ["sweep point cell-rnn_seq_len-5", "optim.b2"],
    ),
    (
        "sweep-workdir-is-file",
        ["sweep", "--config", SWEEPS, "--sweep", "ok", "--workdir", "{lr}/config.json"],
        ["is a file, not a directory"],
    ),
]


def expand(argv, subst):
    """Fills placeholders; a train command gets --config and, without --workdir, the lr
    run's workdir and the short-run flags."""
    argv = [a.format(**subst) for a in argv]
    if argv[0] == "train":
        argv = ["train", "--config", argv[1], *argv[2:]]
        if "--workdir" not in argv:
            argv += [*FAST, "--workdir", subst["lr"]]
    return argv


@pytest.mark.parametrize("name, argv, needles", CASES, ids=[c[0] for c in CASES])
@pytest.mark.slow
def test_bad_value_is_one_line(name, argv, needles, trained, cfg, tmp_path, capsys, monkeypatch):
    fu.count("malformed_tried")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # reading it would block forever: it must be refused unread
    new = tmp_path / "new"
    subst = {**trained, "new": str(new), "cfg": str(cfg), "fifo": str(fifo)}
    if name == "data-dir-is-file":
        (tmp_path / "a_file").write_text("x")
        monkeypatch.setenv("SEQLAB_DATA_DIR", str(tmp_path / "a_file"))
    if name == "data-dir-blocked":
        (tmp_path / "data").mkdir(exist_ok=True)
        (tmp_path / "data" / "tinyshakespeare").write_text("x")  # a file where a folder goes
    dirs = [trained[k] for k in ("lr", "lm", "empty", "corp")]
    before = [fu.snapshot(d) for d in dirs]
    code, out, err = run_main(capsys, expand(argv, subst))
    line = fu.assert_one_line_error(code, err, needles)
    assert "re-run" not in line and "Traceback" not in err
    assert out.strip() == "", out
    for d, snap in zip(dirs, before, strict=True):
        assert fu.snapshot(d) == snap, f"{d} changed: {fu.diff_snapshots(snap, fu.snapshot(d))}"
    # sweeps and probes: every point checked before the first one ran; train: refused
    # before its workdir was made
    assert not new.exists(), os.listdir(new)
    fu.count("malformed_rejected")


# -- what still fails to allocate ---------------------------------------------------------------
def test_allocation_failure_while_training_is_one_line(tmp_path, capsys, monkeypatch):
    """An XLA RESOURCE_EXHAUSTED the estimate did not foresee ends the run with one line
    naming the keys to shrink, not XLA's traceback."""
    import seqlab.run.loop as loop

    def exhausted(*args, **kw):
        def step(state, batch, key):  # fails as XLA does when it compiles the step
            raise jax.errors.JaxRuntimeError(
                "RESOURCE_EXHAUSTED: Out of memory while trying to allocate 61847529472 "
                "bytes.\nBufferAssignment OOM Debugging. ..."
            )

        return step

    monkeypatch.setattr(loop, "make_train_step", exhausted)
    fu.count("malformed_tried")
    argv = ["train", "--config", LR, "--workdir", str(tmp_path / "run"), *FAST]
    code, _, err = run_main(capsys, argv)
    fu.assert_error_line(
        code, err, ["out of memory while training (RESOURCE_EXHAUSTED", "model.hidden_size=16"]
    )
    fu.count("malformed_rejected")


# -- a sweep point refused at run time: fix it, do not just re-run ---------------------------
@pytest.mark.slow
def test_point_failing_on_its_input_says_fix_not_retry(cfg, tmp_path, monkeypatch, capsys):
    """A point whose run stops with exit status 2 (an error in its input or workdir that no
    check before the sweep could see) is not one that re-running alone will help."""
    python = tmp_path / "python"
    python.write_text(
        "#!/bin/sh\n"
        'case "$*" in *hidden_size=12*) echo "seqlab train: error: disk quota" >&2; exit 2 ;; '
        "esac\n"
        f'exec "{sys.executable}" "$@"\n'
    )
    python.chmod(0o755)
    for k, v in fu.seqlab_env(str(tmp_path / "jax-cache")).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PYTHON", str(python))
    out_dir = tmp_path / "sweep"
    argv = ["sweep", "--config", f"{cfg}/sweeps.py", "--sweep", "ok", "--workdir", out_dir]
    code, _, err = run_main(capsys, argv)
    line = fu.assert_one_line_error(code, err, ["1 point(s) failed: hidden_size-12"], expected=1)
    assert "fix what its status.json says" in line and "retry them" not in line
    status = fu.read_json(str(out_dir / "hidden_size-12" / "status.json"))
    assert status["returncode"] == 2 and "disk quota" in status["error"]
    assert fu.read_json(str(out_dir / "cell-gru" / "status.json"))["state"] == "done"


# -- report: a run whose files cannot be read is not "done" -------------------------------------
def test_report_marks_unreadable_runs(trained, tmp_path, capsys):
    root = tmp_path / "runs"
    for name in ("good", "empty", "binary", "torn", "config"):
        shutil.copytree(trained["lr"], root / name)
        (root / name / "status.json").write_text(json.dumps({"state": "done", "overrides": {}}))
    (root / "empty" / "metrics.jsonl").write_text("")
    (root / "binary" / "metrics.jsonl").write_bytes(b"\xff\xfe\x00\x01garbage")
    (root / "torn" / "metrics.jsonl").write_text('{"step": 4, "train/lo')
    (root / "config" / "config.json").write_text("{not json")
    rows = {r["run"]: r for r in collect(str(root))}
    assert rows["good"]["state"] == "done" and rows["good"]["steps"] == 4
    for name, why in (
        ("empty", "metrics.jsonl is empty"),
        ("binary", "metrics.jsonl is not text"),
        ("torn", "no readable rows"),
        ("config", "config.json is not readable JSON"),
    ):
        assert rows[name]["state"] == "unreadable", rows[name]
        assert why in rows[name]["error"], rows[name]
    md = report(str(root))  # and the report is still written, with the reason shown
    assert "| empty | adding | lstm | 20 | 0 | unreadable | 0 |" in md
    assert (root / "report.csv").exists()
    code, _, err = run_main(capsys, ["report", str(tmp_path / "nothing")])
    fu.assert_one_line_error(code, err, ["no runs under"])
    (root / "report.csv").unlink()
    (root / "report.csv").mkdir()  # cannot be written: one line, not a traceback
    code, _, err = run_main(capsys, ["report", str(root)])
    fu.assert_one_line_error(code, err, ["cannot write the report into", "report.csv"])
