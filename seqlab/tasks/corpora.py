"""Text corpora for character/byte language models, and the vocabulary that encodes them.

``load_corpus(name)`` knows three kinds of corpus:

- ``tinyshakespeare``: char-rnn's 1.1M-character corpus, downloaded once from its canonical
  URL into ``$SEQLAB_DATA_DIR`` (default ``~/.cache/seqlab``), sha256-verified, then offline.
- ``python_stdlib``: the running Python's own standard-library sources, concatenated in path
  order (no download; the stand-in for char-rnn's Linux-source experiment).
- ``file:PATH``: any text file, as UTF-8 characters or (``unit='byte'``) raw bytes.

Splits are contiguous (train, then val, then test), as in char-rnn.
"""

from __future__ import annotations

import hashlib
import math
import os
import sysconfig
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from seqlab.errors import DataError

UNITS = ("char", "byte")
ENV_DATA_DIR = "SEQLAB_DATA_DIR"


@dataclass(frozen=True)
class RemoteFile:
    url: str
    sha256: str
    relpath: str  # where it lives under the data dir


REMOTE = {
    "tinyshakespeare": RemoteFile(
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/"
        "tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        relpath="tinyshakespeare/input.txt",
    )
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


# -- vocabulary ----------------------------------------------------------------------------
class Vocab:
    """Sorted characters (``unit='char'``) or byte values (``unit='byte'``) <-> ids 0..V-1."""

    def __init__(self, symbols: list[str] | list[int], unit: str = "char"):
        if unit not in UNITS:
            raise DataError(f"unknown unit {unit!r}; choose one of {UNITS}")
        if unit == "char" and any(not isinstance(s, str) or len(s) != 1 for s in symbols):
            raise DataError("a char vocab holds single characters")
        if unit == "byte" and any(not isinstance(s, int) or not 0 <= s < 256 for s in symbols):
            raise DataError("a byte vocab holds integers in [0, 256)")
        if list(symbols) != sorted(set(symbols)) or not symbols:
            raise DataError("vocab symbols must be non-empty, sorted and unique")
        self.unit = unit
        self.symbols = tuple(symbols)
        codes = [ord(s) for s in symbols] if unit == "char" else list(symbols)
        self._codes = np.asarray(codes, np.int64)

    @classmethod
    def build(cls, data: str | bytes, unit: str = "char") -> Vocab:
        """The vocab of every distinct symbol in ``data``."""
        codes = np.unique(_codes(data))
        if unit == "char":
            return cls([chr(c) for c in codes], "char")
        return cls([int(c) for c in codes], "byte")

    def __len__(self) -> int:
        return len(self.symbols)

    @property
    def size(self) -> int:
        return len(self.symbols)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and (self.unit, self.symbols) == (other.unit, other.symbols)

    def __hash__(self) -> int:
        return hash((self.unit, self.symbols))

    def __repr__(self) -> str:
        return f"Vocab(unit={self.unit!r}, size={self.size})"

    def encode(self, data: str | bytes) -> np.ndarray:
        """Text (or bytes, for a byte vocab) -> int32 ids; unknown symbols are a ValueError."""
        if self.unit == "byte" and isinstance(data, str):
            data = data.encode("utf-8")
        if self.unit == "char" and not isinstance(data, str):
            raise TypeError("a char vocab encodes str; decode the bytes first")
        codes = _codes(data)
        ids = np.searchsorted(self._codes, codes)
        ok = self._codes[np.minimum(ids, len(self._codes) - 1)] == codes
        if not ok.all():
            unknown = sorted(set(codes[~ok].tolist()))
            shown = [repr(chr(c)) if self.unit == "char" else f"0x{c:02x}" for c in unknown]
            raise DataError(
                f"{len(unknown)} {self.unit}(s) not in the vocab "
                f"(size {self.size}): {', '.join(shown[:20])}" + (" ..." if len(shown) > 20 else "")
            )
        return ids.astype(np.int32)

    def decode(self, ids) -> str:
        """ids -> text (byte vocabs decode UTF-8, replacing invalid sequences)."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.size):
            raise DataError(f"ids must lie in [0, {self.size}), got {ids.min()}..{ids.max()}")
        codes = self._codes[ids]
        if self.unit == "byte":
            return bytes(codes.astype(np.uint8).tolist()).decode("utf-8", errors="replace")
        return "".join(map(chr, codes.tolist()))

    def prime(self, text: str = "") -> str:
        """The text sampling starts from: ``text``, or when empty a newline if the vocab has
        one, else its first symbol (the one rule for text samples and ``seqlab sample``)."""
        if text:
            return text
        return "\n" if ord("\n") in self._codes else self.decode([0])

    def to_dict(self) -> dict:
        """JSON-able; ``Vocab.from_dict`` rebuilds it (saved with checkpoints)."""
        return {"unit": self.unit, "symbols": list(self.symbols)}

    @classmethod
    def from_dict(cls, d: dict) -> Vocab:
        return cls(list(d["symbols"]), d.get("unit", "char"))


def _codes(data: str | bytes) -> np.ndarray:
    """Unicode code points of a str, or byte values of bytes, as int64."""
    if isinstance(data, str):
        return np.frombuffer(data.encode("utf-32-le"), np.uint32).astype(np.int64)
    return np.frombuffer(bytes(data), np.uint8).astype(np.int64)


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


def load_corpus(name: str, *, unit: str = "char", max_chars: int = 0) -> Corpus:
    """Loads a corpus by name (see the module docstring); ``max_chars > 0`` keeps a prefix."""
    if unit not in UNITS:
        raise DataError(f"unknown data.unit {unit!r}; choose one of {UNITS}")
    if name in REMOTE:
        path = fetch(name)
        data, source = _read(path, unit), str(path)
    elif name == "python_stdlib":
        data, source = python_stdlib(max_chars, unit), sysconfig.get_paths()["stdlib"]
    elif name.startswith("file:"):
        path = Path(name[len("file:") :]).expanduser()
        if not path.is_file():
            raise CorpusFileError(f"corpus {name!r}: no such file {path.resolve()}")
        data, source = _read(path, unit), str(path)
    else:
        raise DataError(f"unknown corpus {name!r}; known: {', '.join(CORPORA)}")
    if max_chars > 0:
        data = data[:max_chars]
    if not data:
        raise DataError(f"corpus {name!r} ({source}) is empty")
    vocab = Vocab.build(data, unit)
    return Corpus(name, vocab.encode(data), vocab, source)


def _read(path: Path, unit: str) -> str | bytes:
    raw = path.read_bytes()
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
    """The verified local copy of a remote corpus, downloading it once if it is missing."""
    spec = REMOTE[name]
    path = data_dir() / spec.relpath
    if path.exists():
        got = sha256_of(path)
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
