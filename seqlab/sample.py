"""The old import path of ``seqlab.models.generate`` (kept so existing code keeps working)."""

from seqlab.models.generate import generate, sample_logits

__all__ = ["generate", "sample_logits"]
