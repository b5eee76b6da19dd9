"""Task registry: ``config.task.name`` -> Task class (imported lazily, so a task's
dependencies load only when it is used)."""

from __future__ import annotations

import difflib
import importlib

from ml_collections import ConfigDict

from seqlab.tasks.base import Batch, Metrics, ModelSpec, Task, rng_for

TASKS: dict[str, str] = {
    "charlm": "seqlab.tasks.charlm:CharLMTask",
    "adding": "seqlab.tasks.long_range:AddingTask",
    "recall": "seqlab.tasks.long_range:RecallTask",
    "copy_memory": "seqlab.tasks.copy_memory:CopyMemoryTask",
    "addition": "seqlab.tasks.seq2seq:AdditionTask",
    "reverse": "seqlab.tasks.seq2seq:ReverseTask",
}


def get_task_class(name: str) -> type[Task]:
    if name not in TASKS:
        hint = difflib.get_close_matches(name, list(TASKS), n=1)
        raise ValueError(
            f"unknown task.name {name!r}"
            + (f" (did you mean {hint[0]!r}?)" if hint else "")
            + f"; known: {', '.join(sorted(TASKS))}"
        )
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def make_task(config: ConfigDict, *, process_index: int = 0, process_count: int = 1) -> Task:
    return get_task_class(config.task.name)(
        config, process_index=process_index, process_count=process_count
    )


__all__ = [
    "TASKS",
    "Batch",
    "Metrics",
    "ModelSpec",
    "Task",
    "get_task_class",
    "make_task",
    "rng_for",
]
