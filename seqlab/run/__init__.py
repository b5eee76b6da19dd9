"""One run: the training loop and what it is made of (state, evaluation, seeds, device mesh,
checkpoints, writers, optimizer, probe), and ``load_run`` to get a finished run back."""

from seqlab.run.load import Run, load_run
from seqlab.run.loop import PREEMPTED_EXIT_CODE, Preempted, train_and_evaluate

__all__ = ["PREEMPTED_EXIT_CODE", "Preempted", "Run", "load_run", "train_and_evaluate"]
