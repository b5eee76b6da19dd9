"""Fault injection on what goes in: malformed configs, flags, corpora and workdirs (exit 2, one
line on stderr naming what is wrong, no traceback, nothing in an existing workdir touched),
poisoned batches (non-finite losses and gradients never reach a checkpoint), and a sweep point
that crashes. Most cases call `seqlab.tools.cli.main` in-process; a few run the real command to show
that no traceback reaches a terminal. Counts go to the summary line (tests/faults_util.py).
"""

from __future__ import annotations

import json
import math
import os
import random
import sys
import urllib.error
from concurrent.futures import ThreadPoolExecutor

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

try:
    from tests import faults_util as fu
except ImportError:  # tests/ is not a package: pytest puts it on sys.path
    import faults_util as fu

from seqlab.config import base_config
from seqlab.run.checkpoint import Checkpointer
from seqlab.run.loop import train_and_evaluate
from seqlab.tasks import corpora
from seqlab.tools.cli import main

LR = fu.config_path("long_range.py") + ":runlocal"
LM = fu.config_path("charlm.py") + ":runlocal"
FAST = [
    "--config.train.num_steps=4",
    "--config.train.log_every=2",
    "--config.train.eval_every=4",
    "--config.train.checkpoint_every=2",
    "--config.train.progress=False",
    "--config.wandb.mode=disabled",
]
LM_FAST = [*FAST, "--config.data.max_chars=0", "--config.task.sample_length=8"]
LM_A = LM + ",corpus=file:{corp}/A.txt"  # a char LM that needs no download


@pytest.fixture(autouse=True, scope="session")
def _faults_summary(request):
    fu.register_summary(request.config)


@pytest.fixture(scope="module")
def corp(tmp_path_factory):
    """Corpora: A and B have vocabularies of the same size but other characters; C a bigger
    one; then an empty file, a too-small one and one that is not UTF-8."""
    d = tmp_path_factory.mktemp("corpora")
    rng = random.Random(0)
    for name, alphabet in (("A", "abcdefghij \n"), ("B", "klmnopqrst \n"), ("C", "abcdefXYZ \n")):
        (d / f"{name}.txt").write_text("".join(rng.choice(alphabet) for _ in range(20000)))
    (d / "empty.txt").write_text("")
    (d / "small.txt").write_text("hello world\n")
    (d / "bad.txt").write_bytes(b"abc\xff\xfe def\n" * 1000)
    return d


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path):
    """No test here may download anything: an empty data dir and a download that fails."""
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(tmp_path / "data"))

    def no_network(url, dest):
        raise urllib.error.URLError("network is unreachable")

    monkeypatch.setattr(corpora, "_download", no_network)


def run_main(capsys, argv):
    """`seqlab.tools.cli.main(argv)` -> (exit status, stdout, stderr); an exception escaping main
    becomes status 'raised' with its traceback as stderr, so the assertions show it."""
    import traceback

    try:
        code = main([str(a) for a in argv])
    except BaseException:  # noqa: BLE001 (whatever escapes is the finding)
        code = "raised"
        print(traceback.format_exc(), file=sys.stderr)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corp):
    """Two finished workdirs every case must leave untouched: an adding-problem run (lr) and
    a char LM on corpus A (lm)."""
    lr = tmp_path_factory.mktemp("lr") / "run"
    lm = tmp_path_factory.mktemp("lm") / "run"
    assert main(["train", "--config", LR, "--workdir", str(lr), *FAST]) == 0
    corpus = f",corpus=file:{corp / 'A.txt'}"
    assert main(["train", "--config", LM + corpus, "--workdir", str(lm), *LM_FAST]) == 0
    empty = tmp_path_factory.mktemp("empty")
    (empty / "checkpoints").mkdir()
    return {"lr": str(lr), "lm": str(lm), "empty": str(empty), "corp": str(corp)}


def bug(reason):
    """Was a strict xfail while the bug (``reason``) was open; fixed, so no mark."""
    return ()


# (argv with {lr} {lm} {corp} {new} {empty} placeholders, needles in the one stderr line)
CASES = [
    # -- config keys ------------------------------------------------------------------------
    ("unknown-top-key", ["train", LR, "--config.sed=1"], ["'sed'", "--config.seed?"]),
    (
        "unknown-nested-key",
        ["train", LR, "--config.optim.learning_rat=0.1"],
        ["optim.learning_rat", "--config.optim.learning_rate?"],
    ),
    (
        "unknown-section",
        ["train", LR, "--config.modle.cell=gru"],
        ["modle.cell", "--config.model.cell?"],
    ),
    pytest.param(
        "key-below-a-leaf",
        ["train", LR, "--config.model.cell.size=3"],
        ["model.cell.size"],
        marks=bug(
            "seqlab/cli.py _parse: an override that descends into a non-dict leaf makes "
            "ml_collections raise TypeError, which _parse does not catch: traceback, exit 1"
        ),
    ),
    # -- wrong types ------------------------------------------------------------------------
    ("int-not-int", ["train", LR, "--config.train.num_steps=ten"], ["train.num_steps", "ten"]),
    ("float-for-int", ["train", LR, "--config.model.hidden_size=1.5"], ["hidden_size", "1.5"]),
    ("bad-bool", ["train", LR, "--config.model.bidirectional=maybe"], ["bidirectional", "maybe"]),
    ("bad-float", ["train", LR, "--config.optim.learning_rate=abc"], ["learning_rate", "abc"]),
    # -- out of range -----------------------------------------------------------------------
    ("hidden-0", ["train", LR, "--config.model.hidden_size=0"], ["model.hidden_size=0", ">= 1"]),
    ("layers-neg", ["train", LR, "--config.model.num_layers=-1"], ["model.num_layers", ">= 1"]),
    ("batch-0", ["train", LR, "--config.data.batch_size=0"], ["data.batch_size", ">= 1"]),
    ("seq-len-neg", ["train", LR, "--config.data.seq_len=-3"], ["data.seq_len", ">= 1"]),
    ("steps-0", ["train", LR, "--config.train.num_steps=0"], ["train.num_steps", ">= 1"]),
    ("ckpt-every-0", ["train", LR, "--config.train.checkpoint_every=0"], ["checkpoint_every"]),
    ("keep-0", ["train", LR, "--config.train.keep_checkpoints=0"], ["keep_checkpoints"]),
    ("seeds-0", ["train", LR, "--config.num_seeds=0"], ["num_seeds", ">= 1"]),
    ("dropout-neg", ["train", LR, "--config.model.dropout=-0.1"], ["model.dropout", "[0, 1)"]),
    ("dropout-1", ["train", LR, "--config.model.dropout=1.0"], ["model.dropout", "[0, 1)"]),
    ("lr-0", ["train", LR, "--config.optim.learning_rate=0"], ["optim.learning_rate", "> 0"]),
    ("clip-0", ["train", LR, "--config.optim.clip_value=0"], ["optim.clip_value", "> 0"]),
    ("decay-rate", ["train", LR, "--config.optim.decay_rate=1.5"], ["decay_rate", "(0, 1]"]),
    ("warmup-neg", ["train", LR, "--config.optim.warmup_steps=-5"], ["warmup_steps", ">= 0"]),
    ("explode-neg", ["train", LR, "--config.train.explode_factor=-1"], ["explode_factor"]),
    ("embed-dim-0", ["train", LR, "--config.model.input_kind=embed"], ["embed_dim", ">= 1"]),
    # -- bad enum values --------------------------------------------------------------------
    ("cell", ["train", LR, "--config.model.cell=transformer"], ["model.cell", "choose one of"]),
    ("optimizer", ["train", LR, "--config.optim.name=lamb"], ["optim.name", "choose one of"]),
    ("schedule", ["train", LR, "--config.optim.schedule=cosine"], ["'warmup_cosine'?"]),
    ("clip", ["train", LR, "--config.optim.clip=norm"], ["optim.clip", "choose one of"]),
    ("init", ["train", LR, "--config.model.init=xavier"], ["model.init", "choose one of"]),
    ("embed-init", ["train", LR, "--config.model.embed_init=xavier"], ["model.embed_init"]),
    ("wandb-mode", ["train", LR, "--config.wandb.mode=cloud"], ["wandb.mode", "choose one of"]),
    ("nonfinite", ["train", LR, "--config.train.on_nonfinite=ignore"], ["on_nonfinite"]),
    ("readout", ["train", LR, "--config.model.readout=first"], ["model.readout"]),
    ("activation", ["train", LR, "--config.model.activation=gelu"], ["model.activation"]),
    ("dtype", ["train", LR, "--config.model.param_dtype=float16"], ["param_dtype"]),
    ("task", ["train", LR, "--config.task.name=addng"], ["'adding'?"]),
    # -- config variants and files ----------------------------------------------------------
    (
        "variant-task",
        ["train", fu.config_path("long_range.py") + ":task=multiply"],
        ["bad --config", "'multiply'"],
    ),
    pytest.param(
        "variant-type",
        ["train", LR + ",T=abc"],
        ["T", "abc"],
        marks=bug(
            "seqlab/config.py parse_arg: type(default)(value) raises a bare ValueError "
            "(\"invalid literal for int() with base 10: 'abc'\") that does not name the variant T"
        ),
    ),
    pytest.param(
        "variant-typo",
        ["train", fu.config_path("long_range.py") + ":runlocl"],
        ["runlocal"],
        marks=bug(
            "seqlab/config.py parse_arg: an unknown bare word becomes the cell, so a misspelled "
            "variant is reported as config.model.cell='runlocl' with no did-you-mean 'runlocal'"
        ),
    ),
    ("config-missing", ["train", "/nonexistent/dir/c.py"], ["--config", "c.py", "no such file"]),
    ("config-is-dir", ["train", "{corp}"], ["--config", "is a directory"]),
    ("config-no-value", ["train", LR, "--config"], ["--config"]),
    ("override-no-value", ["train", LR, "--config.train.num_steps"], ["train.num_steps"]),
    # -- the workdir ------------------------------------------------------------------------
    ("other-cell", ["train", LR, "--config.model.cell=gru"], ["different model shape", "cell"]),
    ("other-depth", ["train", LR, "--config.model.num_layers=2"], ["num_layers: checkpoint 1"]),
    (
        "other-task",
        ["train", fu.config_path("copy_memory.py") + ":runlocal"],
        ["different spec", "new --workdir"],
    ),
    (
        "other-vocab",
        ["train", LM + ",corpus=file:{corp}/B.txt", *LM_FAST, "--workdir", "{lm}"],
        ["different vocab", "new --workdir"],
    ),
    (
        "other-vocab-size",
        ["train", LM + ",corpus=file:{corp}/C.txt", *LM_FAST, "--workdir", "{lm}"],
        ["vocab_size: checkpoint 12 vs config 11"],
    ),
    ("workdir-is-file", ["train", LR, "--workdir", "{lr}/config.json"], ["not writable"]),
    ("workdir-under-file", ["train", LR, "--workdir", "{lr}/config.json/run"], ["not writable"]),
    ("disk-full", ["train", LR], ["less than 50 MiB free"]),
    pytest.param(
        "no-eval-batches",
        ["train", LR, "--config.task.eval_batches=0", "--workdir", "{new}"],
        ["task.eval_batches"],
        marks=bug(
            "seqlab/config.py validate does not check task.eval_batches >= 1: the run trains "
            "train.eval_every steps, then stops with 'the task produced no eval batches'"
        ),
    ),
    # -- corpora ----------------------------------------------------------------------------
    ("corpus-empty", ["train", LM + ",corpus=file:{corp}/empty.txt"], ["is empty"]),
    ("corpus-small", ["train", LM + ",corpus=file:{corp}/small.txt"], ["too small", "at least"]),
    (
        "corpus-not-utf8",
        ["train", LM + ",corpus=file:{corp}/bad.txt"],
        ["not valid UTF-8 at byte offset 3", "data.unit='byte'"],
    ),
    ("corpus-missing", ["train", LM + ",corpus=file:{corp}/nope.txt"], ["no such file"]),
    ("corpus-unknown", ["train", LM + ",corpus=shakespeare"], ["unknown corpus"]),
    ("corpus-unit", ["train", LM_A, "--config.data.unit=word"], ["data.unit"]),
    ("batching", ["train", LM_A + ",batching=chunks"], ["data.batching"]),
    ("no-val-split", ["train", LM_A, "--config.data.val_fraction=0.0"], ["data.val_fraction > 0"]),
    pytest.param(
        "val-fraction-big",
        ["train", LM_A, "--config.data.val_fraction=1.5"],
        ["val_fraction"],
        marks=bug(
            "seqlab/tasks/charlm.py _check_size: min_corpus_size runs before the fractions are "
            "checked and says 'a split with fraction 0 cannot hold tokens: {...}', naming no key"
        ),
    ),
    ("sample-prime", ["train", LM_A, "--config.task.sample_prime=\u20ac"], ["sample_prime", "'€'"]),
    pytest.param(
        "sample-temps",
        ["train", LM_A, "--config.task.sample_temperatures=hot"],
        ["sample_temperatures"],
        marks=bug(
            "seqlab/tasks/charlm.py: float() of task.sample_temperatures raises "
            "\"could not convert string to float: 'hot'\", naming no key"
        ),
    ),
    ("tinyshakespeare-offline", ["train", LM], ["could not download", "put the file at"]),
    ("tinyshakespeare-corrupt", ["train", LM], ["sha256", "delete it"]),
    # -- seqlab sample / eval / unknown commands ------------------------------------------
    ("prime-oov", ["sample", "--workdir", "{lm}", "--prime", "XYZ"], ["not in the vocab", "'X'"]),
    ("top-k-big", ["sample", "--workdir", "{lm}", "--top_k=100"], ["--top_k=100", "size 12"]),
    ("top-k-neg", ["sample", "--workdir", "{lm}", "--top_k=-1"], ["--top_k"]),
    ("length-0", ["sample", "--workdir", "{lm}", "--length=0"], ["--length"]),
    ("temperature-neg", ["sample", "--workdir", "{lm}", "--temperature=-1"], ["--temperature"]),
    ("prime-empty", ["sample", "--workdir", "{lm}", "--prime="], ["--prime must not be empty"]),
    ("sample-not-lm", ["sample", "--workdir", "{lr}"], ["character language model"]),
    ("flag-typo", ["sample", "--workdir", "{lm}", "--tempreature=0.5"], ["--temperature?"]),
    ("eval-empty-dir", ["eval", "--workdir", "{corp}"], ["no checkpoints", "train first"]),
    ("eval-no-ckpt", ["eval", "--workdir", "{empty}"], ["no checkpoint in"]),
    ("eval-bad-flag", ["eval", "--workdir", "{lr}", "--bogus"], ["unknown flag --bogus"]),
    ("eval-no-workdir", ["eval"], ["--workdir is required"]),
    ("command", ["evaluate", "--workdir", "{lr}"], ["'eval'?"]),
]


def _params():
    for c in CASES:
        if type(c) is tuple:  # a pytest.param is a tuple subclass
            yield pytest.param(*c, id=c[0])
        else:
            yield pytest.param(*c.values, id=c.values[0], marks=c.marks)


def expand(argv, trained, new):
    """Fills placeholders; a train command gets --config/--workdir defaults (the lr run)."""
    subst = {**trained, "new": new}
    argv = [a.format(**subst) for a in argv]
    if argv[0] == "train":
        config = [] if argv[1].startswith("--") else ["--config", argv.pop(1)]
        rest = argv[1:]
        if "--workdir" not in rest:
            rest = [*FAST, "--workdir", subst["lr"], *rest]
        argv = ["train", *config, *rest]
    return argv


@pytest.mark.parametrize("name, argv, needles", list(_params()))
@pytest.mark.slow
def test_malformed_input_is_one_line(name, argv, needles, trained, tmp_path, capsys, monkeypatch):
    fu.count("malformed_tried")
    argv = expand(argv, trained, str(tmp_path / "new"))
    if name == "disk-full":
        real = os.statvfs

        def statvfs(path):
            st = real(path)
            return os.statvfs_result((*st[:4], 1000, *st[5:]))  # f_bavail: 1000 blocks

        monkeypatch.setattr(os, "statvfs", statvfs)
    if name == "tinyshakespeare-corrupt":  # (the `offline` fixture: no download either)
        cached = tmp_path / "data" / "tinyshakespeare" / "input.txt"
        cached.parent.mkdir(parents=True)
        cached.write_text("<html>not the corpus</html>")
    dirs = [trained["lr"], trained["lm"], trained["empty"], trained["corp"]]
    before = [fu.snapshot(d) for d in dirs]
    code, out, err = run_main(capsys, argv)
    line = fu.assert_one_line_error(code, err, needles)
    assert line.startswith("seqlab"), line
    assert out.strip() == "", out
    for d, snap in zip(dirs, before, strict=True):
        assert fu.snapshot(d) == snap, f"{d} changed: {fu.diff_snapshots(snap, fu.snapshot(d))}"
    fu.count("malformed_rejected")


# -- the real command: no traceback reaches the terminal ----------------------------------------
CONFIG_FILES = {
    "raises": 'def get_config(arg=None):\n    raise RuntimeError("boom: broken config")\n',
    "syntax": "def get_config(arg=None)\n    return None\n",
    "no_get_config": "SEED = 0\n",
    "returns_dict": 'def get_config(arg=None):\n    return {"seed": 0}\n',
    "returns_none": "def get_config(arg=None):\n    pass\n",
}
PROCESS_CASES = [
    pytest.param(
        f"config-{n}",
        ["train", "--config", f"{{cfg}}/{n}.py", "--workdir", "{lr}"],
        [needle],
        {},
        marks=bug(
            "seqlab/cli.py _parse: a config file that raises, does not parse, lacks get_config "
            "or returns no ConfigDict escapes as a traceback (exit 1) or, for None, as a "
            "misleading '--config is required' after an absl WARNING line"
        ),
        id=f"config-{n}",
    )
    for n, needle in (
        ("raises", "boom"),
        ("syntax", "syntax.py"),
        ("no_get_config", "get_config"),
        ("returns_dict", "get_config"),
        ("returns_none", "get_config"),
    )
] + [
    pytest.param(
        "unknown-key",
        ["train", "--config", LR, "--workdir", "{lr}", "--config.model.hiden=1"],
        ["did you mean --config.model.hidden_size"],
        {},
        id="unknown-key",
    ),
    pytest.param(
        "shape-mismatch",
        ["train", "--config", LR, "--workdir", "{lr}", *FAST, "--config.model.hidden_size=8"],
        ["different model shape"],
        {},
        id="shape-mismatch",
    ),
    pytest.param(
        "no-download",  # a real network failure: every proxy points at a closed port
        ["train", "--config", LM, "--workdir", "{new}"],
        ["could not download tinyshakespeare", "put the file at"],
        {"SEQLAB_DATA_DIR": "{data}", "https_proxy": "{proxy}", "HTTPS_PROXY": "{proxy}"},
        id="no-download",
    ),
    pytest.param(
        "key-below-a-leaf",
        ["train", "--config", LR, "--workdir", "{lr}", "--config.optim.name.kind=adam"],
        ["optim.name.kind"],
        {},
        marks=bug("seqlab/cli.py _parse: TypeError from ml_collections is not caught"),
        id="key-below-a-leaf",
    ),
    pytest.param(
        "4-devices-batch",
        ["train", "--config", LR, "--workdir", "{lr}", *FAST, "--config.data.batch_size=10"],
        ["data.batch_size=10", "divisible by the 4 devices"],
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
        id="4-devices-batch",
    ),
    pytest.param(
        "4-devices-eval-batch",
        ["train", "--config", LR, "--workdir", "{new}", "--config.task.eval_batch_size=6"],
        ["task.eval_batch_size"],
        {"XLA_FLAGS": "--xla_force_host_platform_device_count=4"},
        marks=bug(
            "seqlab/train.py: only data.batch_size is checked against the device count; an "
            "eval batch that does not split over the devices trains train.eval_every steps, "
            "then fails with JAX's sharding message, which names no config key"
        ),
        id="4-devices-eval-batch",
    ),
]


@pytest.fixture(scope="module")
def processes(trained, tmp_path_factory):
    """Runs every PROCESS_CASES command at once (each is mostly interpreter start-up)."""
    root = tmp_path_factory.mktemp("processes")
    cfg = root / "cfg"
    cfg.mkdir()
    for n, text in CONFIG_FILES.items():
        (cfg / f"{n}.py").write_text(text)
    (root / "data").mkdir()
    proxy = f"http://127.0.0.1:{fu.closed_port()}"
    snaps = {k: fu.snapshot(trained[k]) for k in ("lr", "lm")}
    jobs = {}
    with ThreadPoolExecutor(len(PROCESS_CASES)) as pool:
        for p in PROCESS_CASES:
            name, argv, _, env = p.values
            new = root / f"new-{name}"
            subst = {**trained, "cfg": str(cfg), "new": str(new), "data": str(root / "data")}
            subst["proxy"] = proxy
            argv = [a.format(**subst) for a in argv]
            env = fu.seqlab_env(
                str(root / "jax-cache"),
                NO_PROXY="",
                no_proxy="",
                **{k: v.format(**subst) for k, v in env.items()},
            )
            cmd = fu.seqlab_module_cmd(*argv)
            jobs[name] = (pool.submit(fu.run, cmd, env, str(root / name)), new)
        results = {name: (f.result(), new) for name, (f, new) in jobs.items()}
    return results, snaps


@pytest.mark.parametrize("name, argv, needles, env", PROCESS_CASES)
@pytest.mark.slow
def test_malformed_input_real_process(name, argv, needles, env, processes, trained):
    fu.count("malformed_tried")
    results, snaps = processes
    r, new = results[name]
    fu.assert_one_line_error(r.rc, r.err, needles)
    assert r.out.strip() == "", r.out
    for k, snap in snaps.items():
        assert fu.snapshot(trained[k]) == snap, k
    if name == "4-devices-eval-batch":  # checked before any training, like data.batch_size
        assert not fu.read_rows(str(new / "metrics.jsonl"))
    fu.count("malformed_rejected")


# -- follow-ups the one-line errors promise --------------------------------------------------
@pytest.mark.slow
def test_resume_does_not_duplicate_samples(trained, tmp_path, capsys):
    """A run killed after logging step 4's samples but before checkpoint 4 completed (here:
    checkpoint 4 deleted, as in tests/test_train.py) logs step 4 again on resume."""
    import shutil

    wd = tmp_path / "run"
    shutil.copytree(trained["lm"], wd)
    ck = Checkpointer(str(wd / "checkpoints"), async_save=False)
    assert ck.all_steps() == [2, 4]
    ck.manager.delete(4)
    ck.close()
    corpus = f",corpus=file:{trained['corp']}/A.txt"
    assert main(["train", "--config", LM + corpus, "--workdir", str(wd), *LM_FAST]) == 0
    capsys.readouterr()
    metric_steps = [r["step"] for r in fu.read_rows(str(wd / "metrics.jsonl"))]
    assert metric_steps == [2, 4, 4]  # train rows 2 and 4, the eval row at 4: no duplicate
    with open(wd / "samples.jsonl") as f:
        sample_steps = [json.loads(line)["step"] for line in f]
    assert sample_steps == [4], sample_steps


# -- a sweep point that crashes --------------------------------------------------------------
@pytest.mark.slow
def test_crashing_sweep_point_is_recorded_and_others_finish(tmp_path, monkeypatch, capsys):
    import textwrap

    cfg = tmp_path / "sweepcfg.py"
    cfg.write_text(
        textwrap.dedent(f"""
        import importlib.util  # by path: configs/ on sys.path would shadow packages (mnist1d)
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
            return c

        def get_sweep(arg=None):
            yield {{"model.cell": "gru"}}
            yield {{"model.hidden_size": 12}}
        """)
    )
    # The crashing point dies of SIGSEGV before it prints anything, like a native crash.
    python = tmp_path / "python"
    python.write_text(
        "#!/bin/sh\n"
        'case "$*" in *hidden_size=12*) kill -SEGV $$ ;; esac\n'
        f'exec "{sys.executable}" "$@"\n'
    )
    python.chmod(0o755)
    for k, v in fu.seqlab_env(str(tmp_path / "jax-cache")).items():
        monkeypatch.setenv(k, v)
    monkeypatch.setenv("PYTHON", str(python))
    out_dir = tmp_path / "sweep"
    argv = ["sweep", "--config", str(cfg), "--workdir", str(out_dir), "--parallel", "2"]
    code, _, err = run_main(capsys, argv)
    line = fu.assert_one_line_error(code, err, ["1 point(s) failed: hidden_size-12"], expected=1)
    assert "re-run the same command" in line
    status = lambda n: fu.read_json(str(out_dir / n / "status.json"))
    crashed = status("hidden_size-12")
    assert crashed["state"] == "failed" and crashed["returncode"] == -11, crashed
    assert status("cell-gru")["state"] == "done", status("cell-gru")
    assert "eval/loss" in fu.read_json(str(out_dir / "cell-gru" / "results.json"))
    # Once the crash is gone, re-running the sweep runs only the failed point.
    monkeypatch.delenv("PYTHON")
    code, out, err = run_main(capsys, argv)
    assert code == 0, err[-2000:]
    assert "1 done, 1 to run" in out
    assert status("hidden_size-12")["state"] == "done"
    fu.count("sweep_crashes")


# -- non-finite losses and gradients ----------------------------------------------------------
def nan_config(**overrides):
    c = base_config()
    c.task.name = "adding"
    c.model.hidden_size = 8
    c.model.dropout = 0.1
    c.data.seq_len = 8
    c.data.batch_size = 8
    c.task.eval_batches = 2
    c.task.eval_batch_size = 8
    c.train.num_steps = 14
    c.train.log_every = 1
    c.train.eval_every = 7
    c.train.checkpoint_every = 1
    c.train.keep_checkpoints = 100
    c.train.progress = False
    c.wandb.mode = "disabled"
    for k, v in overrides.items():
        section, key = k.split(".")
        c[section][key] = v
    return c


@pytest.fixture
def poison(monkeypatch):
    """{step: kind} poisons the batch of that step: ``loss`` puts a NaN in the inputs (NaN
    loss and gradients); ``grad`` keeps the loss finite but makes the gradient NaN (the
    batch's ``poison`` flag routes a sqrt(0) into the parameters' gradient)."""
    from seqlab.tasks.long_range import AddingTask

    steps: dict[int, str] = {}
    train_batch, loss = AddingTask.train_batch, AddingTask.loss

    def poisoned_batch(self, step):
        batch = dict(train_batch(self, step))
        n = len(batch["inputs"])
        batch["poison"] = np.full((n,), float(steps.get(step) == "grad"), np.float32)
        if steps.get(step) == "loss":
            batch["inputs"] = batch["inputs"].copy()
            batch["inputs"][0, 0, 0] = np.nan
        return batch

    def poisoned_loss(self, model, batch, **kw):
        flag = batch.get("poison")
        value, aux = loss(self, model, {k: v for k, v in batch.items() if k != "poison"}, **kw)
        if flag is None:  # eval batches
            return value, aux
        p = jnp.mean(flag)
        w = jax.tree.leaves(nnx.state(model, nnx.Param))[0]
        x = jnp.abs(jnp.sum(w) * 0.0) + (1.0 - p)  # 0 when poisoned, else 1
        return value + (jnp.sqrt(x) - (1.0 - p)), aux  # + exactly 0; d/dw = NaN iff poisoned

    monkeypatch.setattr(AddingTask, "train_batch", poisoned_batch)
    monkeypatch.setattr(AddingTask, "loss", poisoned_loss)
    return steps


@pytest.mark.slow
def test_nonfinite_skip_counts_and_no_checkpoint_holds_nonfinite(tmp_path, poison):
    poison.update({3: "grad", 4: "loss", 11: "grad"})
    config = nan_config(**{"train.on_nonfinite": "skip"})
    metrics = train_and_evaluate(config, str(tmp_path))
    assert math.isfinite(metrics["eval/loss"])
    rows = [r for r in fu.read_rows(str(tmp_path / "metrics.jsonl")) if "train/loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 15))
    for r in rows:  # the batch of step s is consumed by the update that ends at step s + 1
        assert r["train/skipped_steps"] == sum(p < r["step"] for p in poison), r
    loss_of = {r["step"]: r["train/loss"] for r in rows}
    assert math.isfinite(loss_of[4]) and math.isfinite(loss_of[12])  # grad-only: finite loss
    assert loss_of[5] == "nan"  # the NaN-input batch: its loss is logged as NaN, not applied
    steps = Checkpointer(str(tmp_path / "checkpoints"), async_save=False)
    saved = steps.all_steps()
    steps.close()
    assert saved == list(range(1, 15))
    states = {s: fu.restore_raw(str(tmp_path), s)[0] for s in saved}
    for s, state in states.items():
        assert not fu.nonfinite_leaves(state), (s, fu.nonfinite_leaves(state))
    for s in range(1, 14):
        same = not fu.tree_differences(
            {k: states[s][k] for k in ("params", "opt_state")},
            {k: states[s + 1][k] for k in ("params", "opt_state")},
        )
        assert same == (s in poison), f"update of step {s} {'not ' if same else ''}skipped"
    fu.count("nonfinite_steps", len(poison))
    fu.count("nonfinite_checkpoints", len(saved))


def test_nonfinite_stop_names_step_and_checkpoint_then_skip_resumes(tmp_path, poison, capsys):
    poison[12] = "grad"  # a finite loss: only the gradient says something is wrong
    wd = tmp_path / "run"
    argv = [
        "train",
        "--config",
        LR,
        "--workdir",
        str(wd),
        "--config.train.num_steps=20",
        "--config.train.log_every=1",
        "--config.train.eval_every=10",
        "--config.train.checkpoint_every=5",
        "--config.train.progress=False",
        "--config.wandb.mode=disabled",
    ]
    code, _, err = run_main(capsys, argv)
    fu.assert_error_line(
        code,
        err,
        [
            "non-finite loss or gradient at step 12",
            f"last good checkpoint: step 10 in {wd}/checkpoints",
            "train.on_nonfinite=skip",
        ],
    )
    view = fu.ckpt_view(str(wd))
    assert view.finalized == (5, 10) and not view.partial
    for s in view.finalized:
        assert not fu.nonfinite_leaves(fu.restore_raw(str(wd), s)[0])
    # The fix the message suggests works, from that checkpoint.
    code, _, err = run_main(capsys, [*argv, "--config.train.on_nonfinite=skip"])
    assert code == 0, err[-2000:]
    assert f"resumed from {wd} at step 10" in err
    rows = [r for r in fu.read_rows(str(wd / "metrics.jsonl")) if "train/loss" in r]
    assert [r["step"] for r in rows] == list(range(1, 21))
    assert rows[-1]["train/skipped_steps"] == 1
    assert not fu.nonfinite_leaves(fu.restore_raw(str(wd), 20)[0])
    fu.count("nonfinite_steps")


def test_nonfinite_first_step_has_no_checkpoint_to_name(tmp_path, poison, capsys):
    poison[0] = "loss"
    wd = tmp_path / "run"
    argv = ["train", "--config", LR, "--workdir", str(wd), *FAST, "--config.train.log_every=1"]
    code, _, err = run_main(capsys, argv)
    fu.assert_error_line(
        code, err, ["non-finite loss or gradient at step 0", "last good checkpoint: none saved"]
    )
    assert fu.ckpt_view(str(wd)) == fu.CkptView((), ())
    fu.count("nonfinite_steps")
