"""seqlab: recurrent sequence-model experiments on JAX / Flax NNX."""

from seqlab.cells import CELLS, Cell, GRUCell, LSTMCell, MGUCell, RNNCell, make_cell
from seqlab.models import LanguageModel, Seq2Seq, SequenceClassifier
from seqlab.recurrence import Bidirectional, Recurrent, RNNStack, run_cell

__version__ = "0.1.0"
__all__ = [
    "CELLS",
    "Bidirectional",
    "Cell",
    "GRUCell",
    "LSTMCell",
    "LanguageModel",
    "MGUCell",
    "RNNCell",
    "RNNStack",
    "Recurrent",
    "Seq2Seq",
    "SequenceClassifier",
    "make_cell",
    "run_cell",
]
