"""The three model families; each ``__call__`` returns ``(outputs, aux)``."""

from seqlab.models.attention import AdditiveAttention
from seqlab.models.classifier import SequenceClassifier
from seqlab.models.inputs import InputEncoder
from seqlab.models.language_model import LanguageModel
from seqlab.models.seq2seq import Seq2Seq

__all__ = ["AdditiveAttention", "InputEncoder", "LanguageModel", "Seq2Seq", "SequenceClassifier"]
