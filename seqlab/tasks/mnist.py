"""Digits read one step at a time: MNIST-1D and sequential (optionally permuted) MNIST.

Both are many-to-one over a fixed train / test split of labelled arrays (chance 1/10):

- ``mnist1d`` (Greydanus 2020, "Scaling down deep learning"): 40 steps of 1 feature, made by
  the ``mnist1d`` package's own generator from its built-in digit templates with its default
  arguments (``task.data_seed`` 42 is the standard set: 4000 train, 1000 test). Built in a
  second, then kept in memory; the package's download path is never used.
- ``smnist`` (Le, Jaitly & Hinton 2015): MNIST's 28x28 images as 784 steps of one pixel in
  [0, 1] (``task.pixels_per_step`` groups them: 28 is row by row); ``task.permute`` reads
  the pixels in one fixed random order (pMNIST, Arjovsky et al. 2016), a function of
  ``task.permute_seed``. The four idx files come through ``corpora.fetch`` (sha256-checked,
  cached in the data dir, downloaded once).

Validation is carved from the end of the train split (``task.val_size`` rows: MNIST's
customary 55k/5k; 400 of MNIST-1D's 4000, i.e. 10%) and is what every eval during training
scores, so the best checkpoint (and any tuning on top of it) is chosen without the test
split; the test split is scored once at the end (``test_batches``, ``seqlab train`` writes
it to results.json as ``test/...``). ``task.val_size=0`` restores the old behaviour (eval on
test) for comparisons with numbers measured before the split.

Training batches visit the (remaining) train rows once per epoch in an order shuffled per
(seed, epoch), so batch ``step`` is a pure function of (seed, step). Eval batches are read
in order; the last one is padded with rows of weight 0.
"""

from __future__ import annotations

import functools
import gzip
import math
import random
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import numpy as np
from ml_collections import ConfigDict

from seqlab.errors import DataError
from seqlab.tasks import corpora
from seqlab.tasks.base import Arrays, Batch, Key, LossOut, ModelSpec, Task, cross_entropy, rng_for
from seqlab.tasks.synthetic import TRAIN_STREAM, total

NUM_CLASSES = 10
#: idx type codes -> NumPy dtypes (big-endian, as the format stores them)
IDX_DTYPES = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
MNIST_FILES = {  # split -> (images, labels) under the data dir
    "train": ("mnist/train-images-idx3-ubyte.gz", "mnist/train-labels-idx1-ubyte.gz"),
    "test": ("mnist/t10k-images-idx3-ubyte.gz", "mnist/t10k-labels-idx1-ubyte.gz"),
}


class DigitsTask(Task):
    """A classifier over fixed (train, test) arrays; subclasses say what the arrays are."""

    best_metric = "eval/accuracy"
    best_mode = "max"
    #: ``seqlab train`` scores the test split once at the end (the evals use validation)
    test_at_end = True
    KEYS = {
        "task.eval_batches": (0, "batches scored at each eval (0 = the whole validation split)"),
        "task.eval_batch_size": (0, "rows per eval batch (0 = data.batch_size)"),
    }

    def __init__(self, config: ConfigDict, *, process_index: int = 0, process_count: int = 1):
        super().__init__(config, process_index=process_index, process_count=process_count)
        self.steps, self.features = self.shape()
        seq_len = int(config.data.seq_len)
        if seq_len != self.steps:
            raise DataError(
                f"{self.name} reads {self.steps} steps of {self.features} feature(s); set "
                f"data.seq_len={self.steps} (it is {seq_len})"
            )
        self.max_eval_batches = int(config.task.eval_batches)
        self.eval_batch_size = int(config.task.eval_batch_size or self.global_batch_size)
        if self.eval_batch_size % process_count:
            raise DataError(
                f"eval batch size {self.eval_batch_size} is not divisible by the "
                f"{process_count} processes"
            )
        x_train, y_train, self.x_test, self.y_test = self.arrays()
        self.val_size = val_rows(int(config.task.val_size), len(y_train), self.name)
        cut = len(y_train) - self.val_size
        self.x_train, self.y_train = x_train[:cut], y_train[:cut]
        self.x_val, self.y_val = x_train[cut:], y_train[cut:]
        self._eval: list[Batch] | None = None

    def shape(self) -> tuple[int, int]:
        """(steps, features per step) of one example."""
        raise NotImplementedError

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(x_train, y_train, x_test, y_test): examples in rows, int labels in [0, 10)."""
        raise NotImplementedError

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """Rows of ``x`` as float32 model inputs (B, steps, features)."""
        return np.asarray(x, np.float32).reshape(len(x), self.steps, self.features)

    @property
    def spec(self) -> ModelSpec:
        return ModelSpec(
            family="classifier",
            input_kind="features",
            num_features=self.features,
            num_outputs=NUM_CLASSES,
        )

    # -- data ------------------------------------------------------------------------------
    def train_batch(self, step: int) -> Batch:
        rows = epoch_rows(self.seed, step, self.global_batch_size, len(self.y_train))
        lo = self.process_index * self.batch_size
        rows = rows[lo : lo + self.batch_size]
        return self._batch(self.x_train[rows], self.y_train[rows], np.ones(len(rows), np.float32))

    def eval_batches(self) -> Sequence[Batch]:
        """The validation split (the test split when ``task.val_size`` is 0)."""
        if self._eval is None:
            if self.val_size:
                self._eval = self._ordered(self.x_val, self.y_val, self.max_eval_batches)
            else:
                self._eval = self.test_batches(self.max_eval_batches)
        return self._eval

    def test_batches(self, max_batches: int = 0) -> list[Batch]:
        """The test split in order, ``eval_batch_size`` rows a batch (the last one padded)."""
        return self._ordered(self.x_test, self.y_test, max_batches)

    def _ordered(self, x: np.ndarray, y: np.ndarray, max_batches: int) -> list[Batch]:
        n, size = len(y), self.eval_batch_size
        count = math.ceil(n / size)
        count = min(count, max_batches) if max_batches > 0 else count
        local = size // self.process_count
        out = []
        for b in range(count):
            idx = b * size + self.process_index * local + np.arange(local)
            weight = (idx < n).astype(np.float32)
            idx = np.where(idx < n, idx, 0)
            out.append(self._batch(x[idx], y[idx], weight))
        return out

    def _batch(self, x: np.ndarray, y: np.ndarray, weight: np.ndarray) -> Batch:
        return {"inputs": self.inputs(x), "labels": y.astype(np.int32), "weight": weight}

    # -- loss and metrics (inside jit) ----------------------------------------------------
    def loss(self, model: Any, batch: Arrays, *, carry: Any = None, rng: Key = None) -> LossOut:
        logits, _ = model(batch["inputs"], train=rng is not None, rng=rng)
        logits = logits.astype(jnp.float32)
        w = batch["weight"].astype(jnp.float32)
        ce = cross_entropy(logits, batch["labels"]) * w
        correct = (jnp.argmax(logits, -1) == batch["labels"]) * w
        n = total(w)
        metrics = {"loss": (total(ce), n), "accuracy": (total(correct), n)}
        return total(ce) / jnp.maximum(n, 1.0), (metrics, carry)

    def baselines(self) -> dict[str, float]:
        return {"accuracy": 1.0 / NUM_CLASSES, "loss": math.log(NUM_CLASSES)}


class MNIST1DTask(DigitsTask):
    """MNIST-1D (Greydanus 2020): 40 steps x 1 feature, 4000 train / 1000 test."""

    name = "mnist1d"
    KEYS = {
        "task.val_size": (
            400,
            "train rows held out for validation (10%; 0 = eval on test)",
        ),
        "task.data_seed": (42, "mnist1d's generator seed (42 = the standard MNIST-1D set)"),
    }

    def shape(self) -> tuple[int, int]:
        return 40, 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return mnist1d_arrays(int(self.config.task.data_seed))


class SequentialMNISTTask(DigitsTask):
    """Pixel-by-pixel MNIST (Le et al. 2015), permuted with ``task.permute`` (pMNIST)."""

    name = "smnist"
    KEYS = {
        "task.val_size": (5000, "train rows held out for validation (55k/5k; 0 = eval on test)"),
        "task.permute": (False, "read the pixels in a fixed random order (permuted MNIST)"),
        "task.permute_seed": (0, "the permutation's seed (saved with the run's config)"),
        "task.pixels_per_step": (1, "pixels read per step: 1 = 784 steps, 28 = row by row"),
    }

    def __init__(self, config: ConfigDict, **kw: Any):
        t = config.task
        self.order = permutation(int(t.permute_seed)) if bool(t.permute) else None
        super().__init__(config, **kw)

    def shape(self) -> tuple[int, int]:
        p = int(self.config.task.pixels_per_step)
        if p < 1 or 784 % p:
            divisors = [d for d in range(1, 785) if 784 % d == 0]
            raise DataError(
                f"task.pixels_per_step={p} does not divide MNIST's 784 pixels; choose one of "
                f"{divisors} (1 = pixel by pixel, 28 = row by row)"
            )
        return 784 // p, p

    def arrays(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        return mnist_arrays()

    def inputs(self, x: np.ndarray) -> np.ndarray:
        """uint8 images (B, 784) -> pixels in [0, 1], permuted when asked, (B, T, p)."""
        if self.order is not None:
            x = x[:, self.order]
        return super().inputs(x.astype(np.float32) / 255.0)


# -- data ----------------------------------------------------------------------------------
def val_rows(val_size: int, n_train: int, name: str) -> int:
    """``task.val_size`` checked against the ``n_train`` rows it is carved from."""
    if not 0 <= val_size < n_train:
        raise DataError(
            f"task.val_size={val_size} must be in [0, {n_train}) for {name}'s {n_train} train "
            "rows (0 = no validation split: evals score the test split)"
        )
    return val_size


@functools.lru_cache(maxsize=4)
def _epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    order = rng_for(seed, epoch, 0, stream=TRAIN_STREAM).permutation(n)
    order.setflags(write=False)
    return order


def epoch_rows(seed: int, step: int, batch: int, n: int) -> np.ndarray:
    """Rows of global batch ``step``: every epoch visits the ``n`` examples once, in an order
    shuffled per (seed, epoch); a pure function, so resuming needs no saved iterator."""
    pos = np.arange(step * batch, (step + 1) * batch, dtype=np.int64)
    out = np.empty(batch, np.int64)
    for epoch in np.unique(pos // n):
        mine = pos // n == epoch
        out[mine] = _epoch_order(seed, int(epoch), n)[pos[mine] % n]
    return out


def permutation(seed: int) -> np.ndarray:
    """pMNIST's pixel order: a fixed function of ``seed``."""
    return np.random.default_rng(int(seed)).permutation(784)


@functools.lru_cache(maxsize=2)
def mnist1d_arrays(seed: int = 42) -> tuple[np.ndarray, ...]:
    """MNIST-1D from the ``mnist1d`` package's generator (default arguments, ``seed``)."""
    try:
        from mnist1d.data import get_dataset_args, make_dataset
    except ImportError:
        import sys

        found = getattr(sys.modules.get("mnist1d"), "__file__", None)
        if found and not found.endswith("__init__.py"):  # e.g. configs/ put on sys.path
            raise DataError(
                f"'import mnist1d' finds {found}, not the mnist1d package: take its folder "
                "off sys.path (load config files by path instead)"
            ) from None
        raise DataError("task mnist1d needs the mnist1d package: pip install mnist1d") from None
    args = get_dataset_args()
    args.seed = seed
    np_state, py_state = np.random.get_state(), random.getstate()
    try:  # it seeds NumPy's and Python's global generators; theirs are restored after
        d = make_dataset(args)
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)
    out = tuple(
        np.asarray(d[k], np.float32 if k.startswith("x") else np.int32)
        for k in ("x", "y", "x_test", "y_test")
    )
    for a in out:
        a.setflags(write=False)
    return out


#: the last MNIST read, by the identity of its four files
_MNIST: dict[tuple, tuple[np.ndarray, ...]] = {}


def mnist_arrays() -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test): uint8 images as rows of 784 pixels, uint8 labels."""
    paths = [_fetch(name) for split in ("train", "test") for name in MNIST_FILES[split]]
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    if key not in _MNIST:
        arrays = []
        for images, labels in (paths[:2], paths[2:]):
            x, y = read_idx(images), read_idx(labels)
            _check_mnist(images, x, labels, y)
            arrays += [x.reshape(len(x), 784), y]
        _MNIST.clear()
        _MNIST[key] = tuple(arrays)
    return _MNIST[key]


def _fetch(name: str) -> Path:
    """``corpora.fetch``, with one line naming all four files when one cannot be had."""
    try:
        return corpora.fetch(name)
    except corpora.CorpusUnavailableError as e:
        folder = corpora.data_dir() / "mnist"
        files = ", ".join(Path(n).name for pair in MNIST_FILES.values() for n in pair)
        raise corpora.CorpusUnavailableError(
            f"MNIST is not in {folder} and could not be downloaded ({e}); put {files} there, or "
            f"set {corpora.ENV_DATA_DIR} to a folder whose mnist/ subfolder holds them"
        ) from None


def _check_mnist(images: Path, x: np.ndarray, labels: Path, y: np.ndarray) -> None:
    if x.dtype != np.uint8 or x.ndim != 3 or x.shape[1:] != (28, 28):
        raise DataError(f"{images} holds {x.dtype} {x.shape}, not uint8 (N, 28, 28) MNIST images")
    if y.dtype != np.uint8 or y.shape != (len(x),) or (y.size and y.max() >= NUM_CLASSES):
        raise DataError(
            f"{labels} holds {y.dtype} {y.shape}, not {len(x)} uint8 labels in 0..9 for {images}"
        )


def read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's MNIST format; gzip-compressed when the name ends in .gz) as an
    array of its stored shape, in native byte order."""
    try:
        with (gzip.open if str(path).endswith(".gz") else open)(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise DataError(f"cannot read {path} ({reason}); delete it to download it again") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in IDX_DTYPES:
        raise DataError(f"{path} is not an idx file (magic {raw[:4].hex()}); delete it")
    ndim, header = raw[3], 4 + 4 * raw[3]
    if len(raw) < header:
        raise DataError(f"{path}: its idx header is cut short; delete it")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(IDX_DTYPES[raw[2]])
    count = math.prod(dims)
    if len(raw) - header != count * dtype.itemsize:
        raise DataError(
            f"{path} holds {len(raw) - header} data bytes where its header {dims} x "
            f"{dtype.itemsize} says {count * dtype.itemsize}: truncated or corrupt; delete it"
        )
    data = np.frombuffer(raw, dtype, count=count, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="), copy=False)


__all__ = ["MNIST1DTask", "SequentialMNISTTask", "epoch_rows", "permutation", "read_idx"]
