"""enwik8 and text8: zip archives fetched through corpora.py's checksummed cache, unzipped
once, split by the published rule; the offline message; the config end to end."""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import urllib.error
import zipfile

import numpy as np
import pytest

from seqlab.errors import DataError
from seqlab.run.writers import read_metrics
from seqlab.tasks import corpora, make_task, task_config
from seqlab.tasks.corpora import CorpusUnavailableError, load_corpus
from seqlab.tools.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _no_download(url, dest):
    raise urllib.error.URLError("no network")


def enwik8_bytes(n: int = 20_000) -> bytes:
    rng = np.random.default_rng(0)
    words = ["<page>", "[[Link]]", "the ", "Zürich ", "&amp;", "\n", "1999 "]
    text = "".join(rng.choice(words, size=n // 3))
    return text.encode("utf-8")[:n]


def text8_bytes(n: int = 20_000) -> bytes:
    rng = np.random.default_rng(1)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz     "))
    return "".join(rng.choice(letters, size=n)).encode()


@pytest.fixture
def archives(tmp_path, monkeypatch):
    """enwik8.zip and text8.zip fixtures (their real member names) in a fresh data dir, with
    their checksums registered in place of the real ones; downloads fail."""
    root = tmp_path / "data"
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(root))
    monkeypatch.setattr(corpora, "_download", _no_download)
    content = {"enwik8": enwik8_bytes(), "text8": text8_bytes()}
    for name, data in content.items():
        spec = corpora.REMOTE[name]
        path = root / spec.relpath
        path.parent.mkdir(parents=True)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
            z.writestr(spec.member, data)
        fixture = dataclasses.replace(spec, sha256=corpora.sha256_of(path))
        monkeypatch.setitem(corpora.REMOTE, name, fixture)
    return root, content


def test_real_registry_entries():
    for name, member in (("enwik8", "enwik8"), ("text8", "text8")):
        spec = corpora.REMOTE[name]
        assert spec.member == member and spec.relpath == f"{name}/{name}.zip"
        assert len(spec.sha256) == 64 and spec.url.endswith(f"/{name}.zip")
        assert sum(corpora.STANDARD_SPLITS[name]) == 100_000_000
    assert corpora.STANDARD_SPLITS["enwik8"] == (90_000_000, 5_000_000, 5_000_000)
    assert {"enwik8", "text8"} <= set(corpora.CORPORA)
    assert not any(n.startswith("mnist") for n in corpora.CORPORA)  # datasets, not corpora


def test_zip_corpora_load_as_bytes_and_chars_and_unzip_once(archives):
    root, content = archives
    c = load_corpus("enwik8", unit="byte")
    assert len(c) == len(content["enwik8"]) and c.vocab.unit == "byte"
    assert bytes(np.asarray(c.vocab.symbols)[c.ids].astype(np.uint8)) == content["enwik8"]
    unzipped = root / "enwik8" / "enwik8"
    assert unzipped.read_bytes() == content["enwik8"] and c.source == str(unzipped)
    t = load_corpus("text8")
    assert t.vocab.size <= 27 and t.vocab.decode(t.ids[:50]) == content["text8"][:50].decode()
    first = unzipped.stat().st_mtime_ns
    corpora._LAST.clear()
    load_corpus("enwik8", unit="byte")
    assert unzipped.stat().st_mtime_ns == first  # reused, not unzipped again
    unzipped.write_bytes(b"x" * len(content["enwik8"]))  # same size, wrong content
    corpora._LAST.clear()
    assert len(load_corpus("enwik8", unit="byte")) == len(content["enwik8"])
    assert unzipped.read_bytes() == content["enwik8"]  # the CRC differed: unzipped again
    assert not list(root.rglob("*.part"))


def test_missing_archive_offline_is_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(corpora, "_download", _no_download)
    for name in ("enwik8", "text8"):
        with pytest.raises(CorpusUnavailableError) as e:
            load_corpus(name)
        msg = str(e.value)
        assert "\n" not in msg and "no network" in msg and corpora.REMOTE[name].url in msg
        assert str(tmp_path / "data" / name / f"{name}.zip") in msg and "SEQLAB_DATA_DIR" in msg


def test_wrong_archive_is_one_line(archives, monkeypatch):
    root, _ = archives
    real = dataclasses.replace(corpora.REMOTE["text8"], sha256="0" * 64)
    monkeypatch.setitem(corpora.REMOTE, "text8", real)
    with pytest.raises(DataError, match="sha256 .* delete it") as e:
        load_corpus("text8")
    assert "\n" not in str(e.value)
    path = root / "enwik8" / "enwik8.zip"
    with zipfile.ZipFile(path, "w") as z:  # a zip without the expected member
        z.writestr("README", "hello")
    spec = dataclasses.replace(corpora.REMOTE["enwik8"], sha256=corpora.sha256_of(path))
    monkeypatch.setitem(corpora.REMOTE, "enwik8", spec)
    with pytest.raises(DataError, match=r"has no member 'enwik8' \(it holds 'README'\)"):
        load_corpus("enwik8", unit="byte")


def charlm_config(corpus: str, **data):
    c = task_config("charlm")
    c.data.corpus, c.data.unit = corpus, "byte" if corpus == "enwik8" else "char"
    c.data.batch_size, c.data.seq_len = 4, 16
    for k, v in data.items():
        c.data[k] = v
    return c


def test_standard_split_when_read_whole(archives, monkeypatch, caplog):
    _, content = archives
    n = len(content["enwik8"])
    monkeypatch.setitem(corpora.STANDARD_SPLITS, "enwik8", (n - 3000, 1000, 2000))
    task = make_task(charlm_config("enwik8"))
    sizes = [len(task.splits[k]) for k in ("train", "val", "test")]
    assert sizes == [n - 3000, 1000, 2000]
    ids = task.corpus.ids
    np.testing.assert_array_equal(np.concatenate([task.splits[k] for k in task.splits]), ids)
    with caplog.at_level(logging.WARNING, logger="seqlab"):
        other = make_task(charlm_config("enwik8", val_fraction=0.2))
    assert [len(other.splits[k]) for k in ("train", "val", "test")] == sizes
    assert "published split" in caplog.text and "val_fraction=0.2" in caplog.text
    prefix = make_task(charlm_config("enwik8", max_chars=10_000))  # not the benchmark
    assert [len(prefix.splits[k]) for k in ("train", "val", "test")] == [9000, 500, 500]
    ts = corpora.Corpus("tinyshakespeare", ids, task.vocab, "x")
    assert corpora.standard_split(ts) is None  # other corpora keep their fractions


@pytest.mark.slow
def test_enwik8_config_runlocal_end_to_end(archives, tmp_path):
    wd = str(tmp_path / "run")
    cfg = os.path.join(ROOT, "configs", "enwik8.py:runlocal")
    short = ["--config.train.num_steps=4", "--config.train.eval_every=4"]
    assert main(["train", "--config", cfg, "--workdir", wd, *short]) == 0
    evals = [r for r in read_metrics(os.path.join(wd, "metrics.jsonl")) if "eval/loss" in r]
    assert evals and math.isfinite(evals[-1]["eval/bpc"]) and "baseline/bpc" in evals[-1]
    with open(os.path.join(wd, "samples.jsonl")) as f:
        sample = json.loads(f.readline())
    assert any(k.startswith("sample/") and len(v) >= 20 for k, v in sample.items())
    with open(os.path.join(wd, "config.json")) as f:
        assert json.load(f)["data"]["unit"] == "byte"
