"""MNIST-1D and sequential MNIST: the data (generated / read from idx files), pure batches,
permutations, weighted eval, one-line errors, and each config end to end."""

from __future__ import annotations

import dataclasses
import gzip
import json
import math
import os
import random
import shutil
import struct
import urllib.error

import numpy as np
import pytest

from seqlab.errors import DataError
from seqlab.run.writers import read_metrics
from seqlab.tasks import corpora, make_task, task_config
from seqlab.tasks.mnist import epoch_rows, mnist1d_arrays, permutation, read_idx
from seqlab.tools.cli import main

try:
    from tests.task_util import evaluate, load_config_module
except ImportError:  # tests/ is not a package: pytest puts tests/ itself on sys.path
    from task_util import evaluate, load_config_module

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CODES = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D}
CODES[np.float64] = 0x0E


def write_idx(path, array) -> None:
    """The idx format written from its description (not with seqlab's reader's tables)."""
    a = np.asarray(array)
    header = bytes([0, 0, CODES[a.dtype.type], a.ndim]) + struct.pack(f">{a.ndim}I", *a.shape)
    raw = header + a.astype(a.dtype.newbyteorder(">")).tobytes()
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(raw)
    else:
        path.write_bytes(raw)


@pytest.fixture
def mnist_dir(tmp_path, monkeypatch):
    """A data dir holding a tiny MNIST (40 train, 24 test) with its checksums registered."""
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "mnist"
    folder.mkdir(parents=True)
    data = {}
    for split, n in (("train", 40), ("t10k", 24)):
        data[split] = (rng.integers(0, 256, (n, 28, 28), np.uint8), rng.integers(0, 10, n))
        write_idx(folder / f"{split}-images-idx3-ubyte.gz", data[split][0])
        write_idx(folder / f"{split}-labels-idx1-ubyte.gz", data[split][1].astype(np.uint8))
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(corpora, "_download", _no_download)
    for name, spec in corpora.DATASETS.items():
        sha = corpora.sha256_of(folder / name.split("/")[1])
        monkeypatch.setitem(corpora.DATASETS, name, dataclasses.replace(spec, sha256=sha))
    return folder, data


def _no_download(url, dest):
    raise urllib.error.URLError("no network")


def smnist_config(**task):
    c = task_config("smnist")
    c.data.batch_size = 8
    c.task.eval_batch_size = 16
    c.task.val_size = 8  # of the fixture's 40 train rows
    for k, v in task.items():
        c.task[k] = v
    c.data.seq_len = 784 // c.task.pixels_per_step
    return c


# -- mnist1d -------------------------------------------------------------------------------
@pytest.mark.slow
def test_mnist1d_is_the_standard_split_and_deterministic():
    c = task_config("mnist1d")
    c.data.seq_len, c.data.batch_size = 40, 32
    task = make_task(c)
    assert task.x_train.shape == (3600, 40) and task.x_val.shape == (400, 40)
    assert task.x_test.shape == (1000, 40)
    assert sorted(set(task.y_train.tolist())) == list(range(10))
    assert np.bincount(task.y_test).min() > 70  # every class, roughly balanced
    b = task.train_batch(5)
    assert b["inputs"].shape == (32, 40, 1) and b["inputs"].dtype == np.float32
    assert b["labels"].dtype == np.int32 and (b["weight"] == 1).all()
    again = make_task(c).train_batch(5)
    for k in b:
        np.testing.assert_array_equal(b[k], again[k])
    assert not np.array_equal(task.train_batch(6)["inputs"], b["inputs"])
    assert task.spec.num_features == 1 and task.spec.num_outputs == 10
    assert task.baselines()["accuracy"] == 0.1
    fresh = mnist1d_arrays.__wrapped__(42)  # generated again, not the in-memory copy
    train = (np.concatenate([task.x_train, task.x_val]), np.concatenate([task.y_train, task.y_val]))
    for got, want in zip(fresh, (*train, task.x_test, task.y_test), strict=True):
        np.testing.assert_array_equal(got, want)


def test_mnist1d_seed_reaches_the_generator_and_global_rngs_are_restored(monkeypatch):
    import mnist1d.data

    seen = []

    def fake(args):  # the package's generator seeds NumPy's and Python's global generators
        seen.append(vars(args).copy())
        np.random.seed(args.seed)
        random.seed(args.seed)
        z = np.zeros((5, 40))
        return {"x": z, "y": np.arange(5), "x_test": z[:2], "y_test": np.arange(2)}

    monkeypatch.setattr(mnist1d.data, "make_dataset", fake)
    np.random.seed(3)
    random.seed(3)
    np_state, py_state = np.random.get_state()[1].copy(), random.getstate()
    x, y, _, y_test = mnist1d_arrays.__wrapped__(7)
    assert np.array_equal(np.random.get_state()[1], np_state) and random.getstate() == py_state
    assert seen[0]["seed"] == 7 and seen[0]["num_samples"] == 5000  # the default arguments
    assert seen[0]["train_split"] == 0.8 and seen[0]["final_seq_length"] == 40
    assert x.dtype == np.float32 and y.dtype == np.int32 and len(y_test) == 2


def test_batches_split_by_process_and_eval_is_weighted():
    c = task_config("mnist1d")
    c.data.seq_len, c.data.batch_size, c.task.eval_batch_size = 40, 8, 300
    one = make_task(c)
    halves = [make_task(c, process_index=p, process_count=2) for p in (0, 1)]
    for get in (lambda t: t.train_batch(9), lambda t: t.eval_batches()[-1]):
        whole, parts = get(one), [get(h) for h in halves]
        for k in whole:
            np.testing.assert_array_equal(np.concatenate([p[k] for p in parts]), whole[k])
    ev = one.eval_batches()  # validation: the last 400 train rows
    assert len(ev) == 2 and sum(b["weight"].sum() for b in ev) == 400  # 200 padded rows
    test = one.test_batches()
    assert len(test) == 4 and sum(b["weight"].sum() for b in test) == 1000  # 100 padded rows
    bias = np.zeros(10, np.float32)
    bias[3] = 5.0
    m = evaluate(one, lambda x, **kw: (np.broadcast_to(bias, (x.shape[0], 10)), {}))
    assert m["accuracy"] == pytest.approx(np.mean(one.y_val == 3), abs=1e-6)


def test_validation_is_carved_from_train_and_never_trained_on():
    c = task_config("mnist1d")
    c.data.seq_len, c.data.batch_size = 40, 100
    task = make_task(c)
    x, y, x_test, _ = mnist1d_arrays(42)
    np.testing.assert_array_equal(task.eval_batches()[0]["inputs"][:, :, 0], x[3600:3700])
    seen = np.concatenate([epoch_rows(0, s, 100, 3600) for s in range(36)])  # one epoch
    assert seen.max() < 3600 and len(np.unique(seen)) == 3600  # train rows only
    np.testing.assert_array_equal(task.test_batches()[0]["inputs"][:, :100, 0], x_test[:100])
    c.task.val_size = 0  # the old behaviour: evals score the test split
    np.testing.assert_array_equal(make_task(c).eval_batches()[0]["inputs"][:, :, 0], x_test[:100])
    c.task.val_size = 4000
    with pytest.raises(DataError, match=r"task.val_size=4000 must be in \[0, 4000\)"):
        make_task(c)


def test_epoch_rows_visit_every_example_once_per_epoch():
    n, batch = 10, 4
    seen = np.concatenate([epoch_rows(0, s, batch, n) for s in range(5)])  # two epochs
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert not np.array_equal(seen[:10], seen[10:])  # each epoch has its own order
    np.testing.assert_array_equal(epoch_rows(0, 3, batch, n), seen[12:16])  # pure
    assert not np.array_equal(epoch_rows(1, 0, 10, n), epoch_rows(0, 0, 10, n))


# -- the idx reader ------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_idx_round_trip(tmp_path, suffix):
    rng = np.random.default_rng(1)
    arrays = [
        rng.integers(0, 256, (3, 28, 28)).astype(np.uint8),
        rng.integers(-(2**31), 2**31 - 1, (5, 2)).astype(np.int32),
        rng.standard_normal((2, 3, 4)).astype(np.float32),
        rng.standard_normal(7),
        rng.integers(-128, 127, 9).astype(np.int8),
    ]
    for i, a in enumerate(arrays):
        path = tmp_path / f"a{i}.idx{suffix}"
        write_idx(path, a)
        got = read_idx(path)
        assert got.dtype == a.dtype and got.dtype.isnative and got.shape == a.shape
        np.testing.assert_array_equal(got, a)
    # MNIST's own label header: magic 0x00000801, 2 items
    raw = tmp_path / "labels"
    raw.write_bytes(bytes.fromhex("00000801 00000002 0709".replace(" ", "")))
    np.testing.assert_array_equal(read_idx(raw), [7, 9])


def test_bad_idx_files_are_one_line(tmp_path):
    good = tmp_path / "x.idx"
    write_idx(good, np.zeros((4, 4), np.uint8))
    cases = {
        "cut.idx": (good.read_bytes()[:-3], "truncated or corrupt"),
        "magic.idx": (b"\x01\x02\x08\x01" + bytes(8), "not an idx file"),
        "short.idx": (b"\0\0\x08\x03\0\0", "cut short"),
        "bad.gz": (b"not gzip at all", "cannot read"),
    }
    for name, (content, needle) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(DataError) as e:
            read_idx(tmp_path / name)
        assert needle in str(e.value) and "\n" not in str(e.value)


# -- smnist --------------------------------------------------------------------------------
def test_smnist_reads_pixels_in_order_rows_or_permuted(mnist_dir):
    _, data = mnist_dir
    images, labels = data["t10k"]
    flat = images.reshape(len(images), 784).astype(np.float32) / 255.0
    task = make_task(smnist_config())
    assert len(task.y_train) == 32 and len(task.y_val) == 8 and len(task.y_test) == 24
    ev = task.test_batches()
    assert ev[0]["inputs"].shape == (16, 784, 1) and ev[0]["inputs"].min() >= 0
    np.testing.assert_allclose(ev[0]["inputs"][:, :, 0], flat[:16])
    np.testing.assert_array_equal(ev[0]["labels"], labels[:16])
    assert ev[1]["weight"].sum() == 8  # 24 = 16 + 8 real rows
    rows = make_task(smnist_config(pixels_per_step=28)).test_batches()[0]["inputs"]
    np.testing.assert_allclose(rows, images[:16].astype(np.float32) / 255.0)
    perm = make_task(smnist_config(permute=True, permute_seed=3)).test_batches()[0]["inputs"]
    np.testing.assert_allclose(perm[:, :, 0], flat[:16][:, permutation(3)])
    tb = task.train_batch(2)
    assert tb["inputs"].shape == (8, 784, 1) and tb["inputs"].max() <= 1.0


def test_permutation_is_fixed_per_seed():
    p0 = permutation(0)
    assert sorted(p0) == list(range(784)) and not np.array_equal(p0, np.arange(784))
    np.testing.assert_array_equal(p0, permutation(0))
    assert not np.array_equal(p0, permutation(1))


def test_smnist_bad_options_are_one_line(mnist_dir):
    c = smnist_config()
    c.task.pixels_per_step = 5
    with pytest.raises(DataError, match=r"does not divide MNIST's 784 pixels.*28"):
        make_task(c)
    c = smnist_config(pixels_per_step=28)
    c.data.seq_len = 784
    with pytest.raises(DataError, match=r"set data.seq_len=28"):
        make_task(c)


def test_missing_mnist_says_where_to_put_the_files(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(corpora, "_download", _no_download)
    with pytest.raises(corpora.CorpusUnavailableError) as e:
        make_task(smnist_config())
    msg = str(e.value)
    assert "\n" not in msg and "no network" in msg and str(tmp_path / "data" / "mnist") in msg
    assert "t10k-labels-idx1-ubyte.gz" in msg and "SEQLAB_DATA_DIR" in msg


def test_mnist_download_is_verified_then_cached(mnist_dir, tmp_path, monkeypatch):
    folder, _ = mnist_dir
    stash = tmp_path / "stash"
    shutil.copytree(folder, stash)
    shutil.rmtree(folder)
    calls = []

    def fake(url, dest):
        calls.append(url)
        shutil.copy(stash / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(corpora, "_download", fake)
    assert len(make_task(smnist_config()).y_test) == 24
    make_task(smnist_config())
    assert len(calls) == 4 and all(u.endswith("ubyte.gz") for u in calls)  # once each
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(b"tampered")
    with pytest.raises(DataError, match="sha256.*delete it"):
        make_task(smnist_config())


# -- end to end ----------------------------------------------------------------------------
def _train(wd: str, config: str, *extra: str) -> dict:
    """Trains ``config`` for 4 steps; its saved config."""
    argv = ["train", "--config", os.path.join(ROOT, "configs", config), "--workdir", wd, *extra]
    assert main([*argv, "--config.train.num_steps=4", "--config.train.eval_every=4"]) == 0
    evals = [r for r in read_metrics(os.path.join(wd, "metrics.jsonl")) if "eval/loss" in r]
    assert evals and all(math.isfinite(r["eval/loss"]) for r in evals)
    assert evals[-1]["baseline/accuracy"] == 0.1 and 0 <= evals[-1]["eval/accuracy"] <= 1
    with open(os.path.join(wd, "config.json")) as f:
        return json.load(f)


@pytest.mark.slow
def test_mnist1d_runlocal_end_to_end(tmp_path):
    wd = str(tmp_path / "run")
    assert _train(wd, "mnist1d.py:runlocal")["task"]["data_seed"] == 42
    with open(os.path.join(wd, "results.json")) as f:  # test scored once, at the end
        results = json.load(f)
    assert 0 <= results["test/accuracy"] <= 1 and results["test/step"] == 4
    assert os.path.exists(os.path.join(wd, "eval_test.json"))


@pytest.mark.slow
def test_smnist_permuted_runlocal_end_to_end(tmp_path, capsys, mnist_dir):
    wd = str(tmp_path / "run")
    saved = _train(wd, "smnist.py:runlocal,permuted", "--config.task.val_size=8")
    assert saved["task"]["permute"] is True and saved["task"]["permute_seed"] == 0
    capsys.readouterr()
    assert main(["eval", "--workdir", wd, "--split", "test"]) == 0  # the whole test split
    with open(os.path.join(wd, "eval_test.json")) as f:
        result = json.load(f)
    assert result["step"] == 4 and 0 <= result["test/accuracy"] <= 1


def test_mnist1d_linear_cells_get_their_papers_recipe_in_runs_and_sweeps():
    m = load_config_module("mnist1d")  # by path: configs/ on sys.path would shadow mnist1d
    lru, gru = m.get_config("lru"), m.get_config("gru")
    assert (lru.model.num_layers, lru.model.block_mlp, lru.model.readout) == (2, True, "mean")
    assert (gru.model.num_layers, gru.model.block_mlp, gru.model.readout) == (1, False, "last")
    plain = m.get_config("lru,recipe=config")
    assert (plain.model.num_layers, plain.model.readout) == (1, "last")
    points = {p["model.cell"]: p for p in m.get_sweep("cells=gru+mingru")}
    assert points["gru"] == {"model.cell": "gru"}
    assert points["mingru"]["model.readout"] == "mean" and points["mingru"]["model.num_layers"] == 2
    assert list(m.get_sweep("cells=mingru,recipe=config")) == [{"model.cell": "mingru"}]
    with pytest.raises(ValueError, match="unknown recipe"):
        m.get_config("lru,recipe=deep")


def test_mnist1d_attention_gets_the_linear_cells_recipe_with_a_whole_sequence_window():
    from seqlab.run.validate import validate

    m = load_config_module("mnist1d")
    att = m.get_config("attention")
    validate(att)
    assert (att.model.num_layers, att.model.readout, att.model.window) == (2, "mean", 40)
    (point,) = m.get_sweep("cells=attention")
    assert point == {"model.cell": "attention", **m.LINEAR_RECIPE, "model.window": 40}
    assert list(m.get_sweep("cells=attention,recipe=config")) == [{"model.cell": "attention"}]
