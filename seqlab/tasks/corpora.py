"""Text corpora for character/byte language models (their vocabulary: ``vocab.py``).

``load_corpus(name)`` knows three kinds of corpus:

- ``tinyshakespeare``: char-rnn's 1.1M-character corpus, downloaded once from its canonical
  URL into ``$SEQLAB_DATA_DIR`` (default ``~/.cache/seqlab``), sha256-verified, then offline;
  ``enwik8`` (10^8 bytes of Wikipedia XML, the Hutter prize file) and ``text8`` (the same
  text reduced to 27 characters, a-z and space) likewise, as zip archives unzipped once.
- ``python_stdlib``: the running Python's own standard-library sources, concatenated in path
  order (no download; the stand-in for char-rnn's Linux-source experiment).
- ``file:PATH``: any text file, as UTF-8 characters or (``unit='byte'``) raw bytes.

Splits are contiguous (train, then val, then test), as in char-rnn; enwik8 and text8 read whole
use their published split (``STANDARD_SPLITS``). ``DATASETS`` are other tasks' files (MNIST)
fetched by the same ``fetch``.
"""

from __future__ import annotations

import hashlib
import math
import os
import stat
import sysconfig
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqlab.errors import DataError
from seqlab.tasks.archives import unzip_member
from seqlab.tasks.vocab import UNITS, Vocab  # noqa: F401 (Vocab: re-exported)

ENV_DATA_DIR = "SEQLAB_DATA_DIR"


@dataclass(frozen=True)
class RemoteFile:
    url: str
    sha256: str
    relpath: str  # where it lives under the data dir
    member: str = ""  # a zip archive's member that holds the corpus, unzipped beside it


REMOTE = {
    "tinyshakespeare": RemoteFile(
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
        "tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        relpath="tinyshakespeare/input.txt",
    ),
    # sha256 of the zips as pinned by several public download scripts; members: 10^8 bytes
    "enwik8": RemoteFile(
        url="http://mattmahoney.net/dc/enwik8.zip",
        sha256="547994d9980ebed1288380d652999f38a14fe291a6247c157c3d33d4932534bc",
        relpath="enwik8/enwik8.zip",
        member="enwik8",
    ),
    "text8": RemoteFile(
        url="http://mattmahoney.net/dc/text8.zip",
        sha256="a6640522afe85d1963ad56c05b0ede0a0c000dddc9671758a6cc09b7a38e5232",
        relpath="text8/text8.zip",
        member="text8",
    ),
}
#: other tasks' files: MNIST's four gzipped idx files (seqlab.tasks.mnist), from TensorFlow's
#: mirror, with the sha256 sums that torchvision, TensorFlow's scripts and others pin
MNIST_SHA256 = {
    "train-images-idx3-ubyte": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
DATASETS = {  # "mnist/train-images-idx3-ubyte.gz", ...
    f"mnist/{n}.gz": RemoteFile(f"{MNIST_URL}{n}.gz", h, f"mnist/{n}.gz")
    for n, h in MNIST_SHA256.items()
}
CORPORA = (*REMOTE, "python_stdlib", "file:PATH")
#: directory names never read into ``python_stdlib``
STDLIB_EXCLUDE = frozenset(
    {"test", "tests", "idle_test", "site-packages", "dist-packages", "__pycache__"}
)


class CorpusFileError(DataError, FileNotFoundError):
    """A ``file:`` corpus path that names no readable file."""


class CorpusUnavailableError(DataError, FileNotFoundError):
    """A corpus that is neither cached nor downloadable; the message says where to put it."""


# -- corpora -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Corpus:
    """A whole corpus as ids, with its vocab and where it came from."""

    name: str
    ids: np.ndarray
    vocab: Vocab
    source: str

    def __len__(self) -> int:
        return len(self.ids)


#: the last corpus loaded, by what it was read from: a run's seed replicas, its memory check
#: and a sweep's check of every point read a corpus once (its ids are read-only)
_LAST: dict[tuple, Corpus] = {}


def load_corpus(name: str, *, unit: str = "char", max_chars: int = 0) -> Corpus:
    """Loads a corpus by name (see the module docstring); ``max_chars > 0`` keeps a prefix."""
    if unit not in UNITS:
        raise DataError(f"unknown data.unit {unit!r}; choose one of {UNITS}")
    key = _source_key(name, unit, max_chars)
    if key is not None and key in _LAST:
        return _LAST[key]
    if name in REMOTE:
        path = local_file(name)
        data, source = _read(path, unit), str(path)
    elif name == "python_stdlib":
        data, source = python_stdlib(max_chars, unit), sysconfig.get_paths()["stdlib"]
    elif name.startswith("file:"):
        path = corpus_file(name)
        data, source = _read(path, unit), str(path)
    else:
        raise DataError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    if max_chars > 0:
        data = data[:max_chars]
    if not data:
        raise DataError(f"corpus {name!r} ({source}) is empty")
    vocab = Vocab.build(data, unit)
    ids = vocab.encode(data)
    ids.setflags(write=False)
    corpus = Corpus(name, ids, vocab, source)
    if key is not None:
        _LAST.clear()
        _LAST[key] = corpus
    return corpus


def _source_key(name: str, unit: str, max_chars: int) -> tuple | None:
    """What identifies a corpus's content: the file's identity and modification time (none
    for a file that cannot be read, whose error the loader gives)."""
    if name == "python_stdlib":
        return (name, unit, max_chars)
    if name in REMOTE:
        path = data_dir() / REMOTE[name].relpath
    elif name.startswith("file:") and name[len("file:") :]:
        path = Path(name[len("file:") :]).expanduser()
    else:
        return None
    try:
        st = path.stat()
    except (OSError, ValueError):
        return None
    return (str(path.resolve()), unit, max_chars, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def corpus_file(name: str) -> Path:
    """The path of a ``file:PATH`` corpus, if it names a regular file this process can read;
    else one CorpusFileError saying what is there instead."""
    raw = name[len("file:") :]
    if not raw.strip():
        raise CorpusFileError(f"corpus {name!r} names no file: use file:/path/to/text.txt")
    path = Path(raw).expanduser()
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise CorpusFileError(f"corpus {name!r}: no such file {path.resolve()}") from None
    except OSError as e:  # a parent that is a file, a loop of links, no permission
        raise CorpusFileError(f"corpus {name!r}: cannot open {path} ({e.strerror})") from None
    kind = _file_kind(mode)
    if kind:
        raise CorpusFileError(f"corpus {name!r}: {path} is {kind}, not a regular text file")
    if not os.access(path, os.R_OK):
        raise CorpusFileError(f"corpus {name!r}: {path} is not readable (permission denied)")
    return path


def _file_kind(mode: int) -> str:
    """ "" for a regular file, else what it is instead (a directory, a FIFO, ...)."""
    for test, kind in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return kind
    return "" if stat.S_ISREG(mode) else "not a regular file"


def _read(path: Path, unit: str) -> str | bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise CorpusFileError(f"cannot read corpus {path} ({e.strerror})") from None
    if unit == "byte":
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataError(
            f"{path} is not valid UTF-8 at byte offset {e.start} ({e.reason}); "
            "use data.unit='byte' to model its raw bytes"
        ) from None


def data_dir() -> Path:
    """Where downloaded corpora are cached: ``$SEQLAB_DATA_DIR`` or ``~/.cache/seqlab``."""
    return Path(os.environ.get(ENV_DATA_DIR) or Path.home() / ".cache" / "seqlab").expanduser()


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _download(url: str, dest: Path) -> None:
    """Fetches ``url`` into ``dest`` (tests replace this to stay offline)."""
    with urllib.request.urlopen(url, timeout=60) as r, open(dest, "wb") as f:
        while block := r.read(1 << 20):
            f.write(block)


def fetch(name: str) -> Path:
    """The verified local copy of a remote file (``REMOTE`` or ``DATASETS``), downloading it
    once if it is missing."""
    spec = REMOTE[name] if name in REMOTE else DATASETS[name]
    path = data_dir() / spec.relpath
    _check_data_path(path)
    if path.exists():
        try:
            got = sha256_of(path)
        except OSError as e:
            raise DataError(f"cannot read {path} ({e.strerror})") from None
        if got != spec.sha256:
            raise DataError(
                f"{path} has sha256 {got}, expected {spec.sha256}: the file is "
                f"corrupt or not {name}; delete it to download it again from "
                f"{spec.url}"
            )
        return path
    tmp = path.with_name(f"{path.name}.{os.getpid()}.part")  # processes may race; rename wins
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _download(spec.url, tmp)
        got = sha256_of(tmp)
        if got != spec.sha256:
            raise DataError(f"downloaded sha256 {got}, expected {spec.sha256}")
        os.replace(tmp, path)
    except Exception as e:  # any failure: say where the file should go
        reason = " ".join(str(e).split()) or type(e).__name__
        raise CorpusUnavailableError(
            f"could not download {name} from {spec.url} ({reason}); put the file at {path} "
            f"(or set {ENV_DATA_DIR} to a folder containing {spec.relpath})"
        ) from e
    finally:
        tmp.unlink(missing_ok=True)
    return path


def local_file(name: str) -> Path:
    """The verified file of remote corpus ``name``: ``fetch(name)``, or the archive's member
    (``RemoteFile.member``) unzipped beside it once."""
    path = fetch(name)
    return unzip_member(path, REMOTE[name].member) if REMOTE[name].member else path


def _check_data_path(path: Path) -> None:
    """One DataError when a file stands where the data dir (or a folder under it) should be,
    or something other than a file where the corpus should be."""
    root = data_dir()
    named = f"{ENV_DATA_DIR}={root}" if os.environ.get(ENV_DATA_DIR) else f"the data dir {root}"
    if os.path.lexists(root) and not root.is_dir():
        raise DataError(
            f"{named} is a file, not a directory: point {ENV_DATA_DIR} at a folder "
            "(default ~/.cache/seqlab)"
        )
    for parent in [p for p in reversed(path.parents) if p.is_relative_to(root) and p != root]:
        if os.path.lexists(parent) and not parent.is_dir():
            raise DataError(
                f"{parent} in {named} is a file where a folder should be; move it aside"
            )
    if os.path.lexists(path) and not path.is_file():
        kind = _file_kind(os.stat(path).st_mode) if path.exists() else "a broken link"
        raise DataError(f"{path} is {kind}, not the corpus file; move it aside")


def python_stdlib(max_chars: int = 0, unit: str = "char") -> str | bytes:
    """This Python's standard-library ``.py`` sources (no tests, no site-packages), in sorted
    path order, concatenated; reading stops once ``max_chars`` (> 0) are collected."""
    root = Path(sysconfig.get_paths()["stdlib"])
    files = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if d not in STDLIB_EXCLUDE]  # prune while walking
        rel = Path(folder).relative_to(root)
        files += [((rel / n).as_posix(), Path(folder) / n) for n in names if n.endswith(".py")]
    files.sort()
    parts: list = []
    total = 0
    for _, path in files:
        raw = path.read_bytes()
        if unit == "char":
            try:
                raw = raw.decode("utf-8")
            except UnicodeDecodeError:
                continue  # a legacy-encoded source: skipped, deterministically
        parts.append(raw)
        total += len(raw)
        if 0 < max_chars <= total:
            break
    data = ("" if unit == "char" else b"").join(parts)
    return data[:max_chars] if max_chars > 0 else data


# -- splits --------------------------------------------------------------------------------
def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """(train, val, test) lengths of the contiguous split of ``n`` tokens."""
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise DataError(
            f"data.val_fraction={val_fraction} and data.test_fraction={test_fraction} "
            "must be in [0, 1) and sum to less than 1"
        )
    n_val, n_test = int(n * val_fraction), int(n * test_fraction)
    return n - n_val - n_test, n_val, n_test


def split(ids: np.ndarray, val_fraction: float, test_fraction: float) -> dict[str, np.ndarray]:
    """Contiguous train / val / test slices (views) of ``ids``, in that order."""
    n_train, n_val, _ = split_sizes(len(ids), val_fraction, test_fraction)
    return {
        "train": ids[:n_train],
        "val": ids[n_train : n_train + n_val],
        "test": ids[n_train + n_val :],
    }


#: corpora with a published split: (train, val, test) lengths of the whole corpus
STANDARD_SPLITS = {
    "enwik8": (90_000_000, 5_000_000, 5_000_000),  # bytes
    "text8": (90_000_000, 5_000_000, 5_000_000),
}


def standard_split(corpus: Corpus) -> dict[str, np.ndarray] | None:
    """The published split of a corpus read whole (``STANDARD_SPLITS``), else None (a prefix,
    or enwik8 read as UTF-8 characters, is not the benchmark: split it by fractions)."""
    sizes = STANDARD_SPLITS.get(corpus.name)
    if sizes is None or sum(sizes) != len(corpus):
        return None
    a, b = sizes[0], sizes[0] + sizes[1]
    return {"train": corpus.ids[:a], "val": corpus.ids[a:b], "test": corpus.ids[b:]}


def min_corpus_size(need: dict[str, int], val_fraction: float, test_fraction: float) -> int:
    """The smallest corpus whose splits hold at least ``need[split]`` tokens each."""
    fracs = {"train": 1 - val_fraction - test_fraction, "val": val_fraction, "test": test_fraction}
    if any(k > 0 and fracs[s] <= 0 for s, k in need.items()):
        raise DataError(f"a split with fraction 0 cannot hold tokens: {need}")
    n = max([math.ceil(k / fracs[s]) for s, k in need.items() if k > 0] + [1])
    while True:
        sizes = dict(
            zip(("train", "val", "test"), split_sizes(n, val_fraction, test_fraction), strict=True)
        )
        if all(sizes[s] >= k for s, k in need.items()):
            return n
        n += 1
