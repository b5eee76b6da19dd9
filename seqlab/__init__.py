"""seqlab: recurrent sequence-model experiments on JAX / Flax NNX.

The library (cells, recurrent layers, the three model families, generation) is imported
eagerly, with the errors it raises (``seqlab.errors``: each a ValueError or RuntimeError too);
``load_run`` and ``train_and_evaluate`` (the run layer: orbax, optax, writers) load
on first use, so ``import seqlab`` stays light.
"""

from typing import Any

from seqlab.cells import CELLS, Cell, GRUCell, LSTMCell, MGUCell, RNNCell, make_cell
from seqlab.errors import ConfigError, DataError, RunError, SeqlabError, TrainingError, UsageError
from seqlab.models import LanguageModel, Seq2Seq, SequenceClassifier
from seqlab.models.generate import generate
from seqlab.recurrence import Bidirectional, Recurrent, RNNStack, run_cell

__version__ = "0.1.0"
_RUN = ("Run", "load_run", "train_and_evaluate")


def __getattr__(name: str) -> Any:
    if name in _RUN:
        import seqlab.run

        return getattr(seqlab.run, name)
    raise AttributeError(f"module 'seqlab' has no attribute {name!r}")


__all__ = [
    "CELLS",
    "Bidirectional",
    "Cell",
    "ConfigError",
    "DataError",
    "GRUCell",
    "LSTMCell",
    "LanguageModel",
    "MGUCell",
    "RNNCell",
    "RNNStack",
    "Recurrent",
    "Run",
    "RunError",
    "Seq2Seq",
    "SeqlabError",
    "SequenceClassifier",
    "TrainingError",
    "UsageError",
    "generate",
    "load_run",
    "make_cell",
    "run_cell",
    "train_and_evaluate",
]
