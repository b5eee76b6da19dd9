"""Corpora and vocab: encoding, checksummed download cache, stdlib corpus, files, splits."""

from __future__ import annotations

import json
import shutil
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from seqlab.tasks import corpora
from seqlab.tasks.corpora import CorpusUnavailableError, Vocab, load_corpus

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared" / "data"
SHAKESPEARE = SHARED / "tinyshakespeare" / "input.txt"
needs_shakespeare = pytest.mark.skipif(not SHAKESPEARE.is_file(), reason="no shared data copy")


@pytest.fixture
def offline(monkeypatch):
    """Any download attempt fails the test."""

    def no_download(url, dest):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(corpora, "_download", no_download)


# -- vocab ---------------------------------------------------------------------------------
def test_vocab_char_round_trip_and_json():
    text = "hello, world\nÜber ünïcode ☃"
    v = Vocab.build(text)
    assert list(v.symbols) == sorted(set(text)) and v.size == len(set(text))
    ids = v.encode(text)
    assert ids.dtype == np.int32 and ids.min() == 0 and ids.max() == v.size - 1
    assert v.decode(ids) == text
    restored = Vocab.from_dict(json.loads(json.dumps(v.to_dict())))
    assert restored == v and restored.decode(ids) == text


def test_vocab_byte_round_trip():
    data = "naïve ☃".encode()
    v = Vocab.build(data, "byte")
    assert v.unit == "byte" and list(v.symbols) == sorted(set(data))
    ids = v.encode(data)
    assert len(ids) == len(data) and v.decode(ids) == "naïve ☃"
    assert np.array_equal(v.encode("naïve"), ids[:6])  # str is encoded to UTF-8 first
    assert Vocab.from_dict(json.loads(json.dumps(v.to_dict()))) == v
    assert v != Vocab.build("naïve ☃")


def test_vocab_errors():
    v = Vocab.build("abc")
    with pytest.raises(ValueError, match=r"2 char\(s\) not in the vocab.*'x', 'z'"):
        v.encode("abxcz")
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 3\)"):
        v.decode([0, 3])
    with pytest.raises(ValueError, match="sorted and unique"):
        Vocab(["b", "a"])
    with pytest.raises(ValueError, match="unknown unit"):
        Vocab(["a"], "word")
    with pytest.raises(TypeError, match="decode the bytes first"):
        v.encode(b"abc")
    with pytest.raises(ValueError, match="single characters"):
        Vocab(["ab"])
    with pytest.raises(ValueError, match="0x7a"):
        Vocab.build(b"ab", "byte").encode(b"z")


# -- tinyshakespeare: checksummed cache ------------------------------------------------------
@needs_shakespeare
def test_tinyshakespeare_from_verified_cache_offline(monkeypatch, offline):
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(SHARED))
    c = load_corpus("tinyshakespeare")
    assert len(c) == 1_115_394 and c.vocab.size == 65
    assert c.vocab.decode(c.ids[:9]) == "First Cit"


def test_corrupt_cache_is_rejected(tmp_path, monkeypatch, offline):
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(tmp_path))
    path = tmp_path / "tinyshakespeare" / "input.txt"
    path.parent.mkdir()
    path.write_text("First Citizen: truncated")
    with pytest.raises(ValueError, match="sha256") as e:
        load_corpus("tinyshakespeare")
    assert str(path) in str(e.value) and "delete it" in str(e.value)


def test_failed_download_says_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(tmp_path / "data"))

    def fail(url, dest):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(corpora, "_download", fail)
    with pytest.raises(CorpusUnavailableError) as e:
        load_corpus("tinyshakespeare")
    msg = str(e.value)
    assert "\n" not in msg and "no network" in msg
    assert str(tmp_path / "data" / "tinyshakespeare" / "input.txt") in msg
    assert "SEQLAB_DATA_DIR" in msg and "tinyshakespeare/input.txt" in msg
    assert not list((tmp_path / "data").rglob("*.part"))


@needs_shakespeare
def test_download_is_verified_then_cached(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(tmp_path))
    calls = []

    def fake(url, dest):
        calls.append(url)
        shutil.copy(SHAKESPEARE, dest)

    monkeypatch.setattr(corpora, "_download", fake)
    assert corpora.fetch("tinyshakespeare") == tmp_path / "tinyshakespeare" / "input.txt"
    assert corpora.fetch("tinyshakespeare").is_file()
    assert calls == [corpora.REMOTE["tinyshakespeare"].url]  # the second call used the cache


def test_download_with_wrong_content_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("SEQLAB_DATA_DIR", str(tmp_path))
    monkeypatch.setattr(corpora, "_download", lambda url, dest: Path(dest).write_text("<html>"))
    with pytest.raises(CorpusUnavailableError, match="expected 86c4e6aa"):
        corpora.fetch("tinyshakespeare")
    assert not list(tmp_path.rglob("*.txt*"))


def test_default_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("SEQLAB_DATA_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert corpora.data_dir() == tmp_path / ".cache" / "seqlab"


# -- python_stdlib -------------------------------------------------------------------------
def test_python_stdlib_is_deterministic_and_nontrivial():
    a = load_corpus("python_stdlib", max_chars=200_000)
    b = load_corpus("python_stdlib", max_chars=200_000)
    assert len(a) == 200_000 and np.array_equal(a.ids, b.ids) and a.vocab == b.vocab
    text = a.vocab.decode(a.ids)
    assert "def " in text and "import " in text and "class " in text
    assert a.vocab.size > 60
    counts = np.bincount(a.ids, minlength=a.vocab.size)
    assert counts.max() < 0.3 * len(a)  # not one repeated character


def test_python_stdlib_order_and_exclusions(tmp_path, monkeypatch):
    files = {
        "b.py": "B",
        "a/z.py": "AZ",
        "a.py": "A",
        "test/t.py": "T",
        "x/tests/u.py": "U",
        "site-packages/s.py": "S",
        "notes.txt": "N",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    (tmp_path / "c.py").write_bytes(b"caf\xe9")  # latin-1: skipped as chars, kept as bytes
    monkeypatch.setattr(corpora.sysconfig, "get_paths", lambda: {"stdlib": str(tmp_path)})
    assert corpora.python_stdlib() == "AAZB"
    assert corpora.python_stdlib(unit="byte") == b"AAZBcaf\xe9"
    assert corpora.python_stdlib(max_chars=2) == "AA"


# -- file: ---------------------------------------------------------------------------------
def test_file_corpus_chars_and_bytes(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("héllo héllo", encoding="utf-8")
    chars = load_corpus(f"file:{path}")
    assert len(chars) == 11 and chars.vocab.decode(chars.ids) == "héllo héllo"
    raw = load_corpus(f"file:{path}", unit="byte")
    assert len(raw) == 13 and raw.vocab.unit == "byte"
    assert raw.vocab.decode(raw.ids) == "héllo héllo"


def test_file_corpus_max_chars(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("abcdefgh")
    c = load_corpus(f"file:{path}", max_chars=3)
    assert c.vocab.decode(c.ids) == "abc" and c.vocab.size == 3


def test_undecodable_file_names_the_offset(tmp_path):
    path = tmp_path / "bin.dat"
    path.write_bytes(b"abc\xffdef")
    with pytest.raises(ValueError) as e:
        load_corpus(f"file:{path}")
    msg = str(e.value)
    assert str(path) in msg and "byte offset 3" in msg and "data.unit='byte'" in msg
    assert len(load_corpus(f"file:{path}", unit="byte")) == 7


def test_bad_corpora(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(ValueError, match="is empty"):
        load_corpus(f"file:{tmp_path / 'empty.txt'}")
    with pytest.raises(FileNotFoundError, match="no such file"):
        load_corpus(f"file:{tmp_path / 'missing.txt'}")
    with pytest.raises(ValueError, match="unknown corpus 'shakespeare'.*python_stdlib"):
        load_corpus("shakespeare")
    with pytest.raises(ValueError, match="unknown data.unit"):
        load_corpus("python_stdlib", unit="word")


# -- splits --------------------------------------------------------------------------------
def test_split_is_contiguous():
    ids = np.arange(1000)
    s = corpora.split(ids, 0.1, 0.05)
    assert [len(s[k]) for k in ("train", "val", "test")] == [850, 100, 50]
    assert np.array_equal(np.concatenate([s["train"], s["val"], s["test"]]), ids)
    assert len(corpora.split(ids, 0.1, 0.0)["test"]) == 0
    with pytest.raises(ValueError, match="sum to less than 1"):
        corpora.split(ids, 0.6, 0.5)


def test_min_corpus_size_is_tight():
    need = {"train": 801, "val": 801}
    n = corpora.min_corpus_size(need, 0.1, 0.0)
    train, val, _ = corpora.split_sizes(n, 0.1, 0.0)
    assert train >= 801 and val >= 801
    assert corpora.split_sizes(n - 1, 0.1, 0.0)[1] < 801
