"""The vocabulary of a character (or byte) corpus: sorted symbols <-> ids 0..V-1, saved with
every checkpoint of a language model (``to_dict`` / ``from_dict``)."""

from __future__ import annotations

import numpy as np

from seqlab.errors import DataError

UNITS = ("char", "byte")


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
