"""Task registry: ``config.task.name`` -> Task class (imported lazily, so a task's
dependencies load only when it is used)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

from ml_collections import ConfigDict

from seqlab.config import base_config
from seqlab.errors import DataError, unknown
from seqlab.tasks.base import Batch, Metrics, ModelSpec, Task, rng_for

log = logging.getLogger("seqlab")
TASKS: dict[str, str] = {
    "charlm": "seqlab.tasks.charlm:CharLMTask",
    "adding": "seqlab.tasks.long_range:AddingTask",
    "recall": "seqlab.tasks.long_range:RecallTask",
    "copy_memory": "seqlab.tasks.copy_memory:CopyMemoryTask",
    "addition": "seqlab.tasks.seq2seq:AdditionTask",
    "reverse": "seqlab.tasks.seq2seq:ReverseTask",
    "parity": "seqlab.tasks.state_tracking:ParityTask",
    "s3": "seqlab.tasks.state_tracking:S3Task",
    "selective_copy": "seqlab.tasks.selective:SelectiveCopyTask",
    "associative_recall": "seqlab.tasks.selective:AssociativeRecallTask",
    "mnist1d": "seqlab.tasks.mnist:MNIST1DTask",
    "smnist": "seqlab.tasks.mnist:SequentialMNISTTask",
}


def get_task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise DataError(unknown("task.name", name, TASKS))
    module, cls = TASKS[name].split(":")
    return getattr(importlib.import_module(module), cls)


def task_config(name: str) -> ConfigDict:
    """``base_config()`` with ``task.name = name`` and every key that task reads, at its
    declared default (``Task.KEYS``): what a config file starts from."""
    c = base_config()
    c.task.name = name
    apply_keys(c, get_task_class(name).config_keys())
    return c


def apply_keys(c: ConfigDict, keys: dict[str, tuple[Any, str]]) -> None:
    """Sets each dotted ``key`` of ``keys`` to its default in ``c``."""
    for key, (default, _) in keys.items():
        section, leaf = key.split(".", 1)
        c[section][leaf] = default


def make_task(config: ConfigDict, *, process_index: int = 0, process_count: int = 1) -> Task:
    """The config's task; keys the config leaves out take the task's declared defaults."""
    return get_task_class(config.task.name)(
        complete_config(config), process_index=process_index, process_count=process_count
    )


#: keys that moved: old dotted name -> new (configs saved before the move still load)
MOVED = {"data.eval_batches": "task.eval_batches"}


def _leaves(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_leaves(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def complete_config(config: ConfigDict | dict, *, saved: bool = False) -> ConfigDict:
    """``config`` over its task's full defaults (``seqlab.tasks.task_config``): every key the
    code reads is present. Keys ``MOVED`` since are renamed. With ``saved`` (a config from an
    older checkpoint), the keys filled from the defaults are named in one log line."""
    given = _leaves(config.to_dict() if isinstance(config, ConfigDict) else dict(config))
    for old, new in MOVED.items():
        if old in given:
            given.setdefault(new, given.pop(old))
    name = given.get("task.name", "")
    defaults = _leaves((task_config(name) if name in TASKS else base_config()).to_dict())
    merged: dict[str, Any] = {}
    for key, value in {**defaults, **given}.items():
        node = merged
        *sections, leaf = key.split(".")
        for part in sections:
            node = node.setdefault(part, {})
        node[leaf] = value
    if saved and (filled := sorted(set(defaults) - set(given))):  # one line, however many
        log.warning(
            "the saved config predates %s; using the default%s: %s",
            f"{len(filled)} key(s)" if len(filled) > 1 else "a key",
            "s" if len(filled) > 1 else "",
            ", ".join(f"{k}={defaults[k]!r}" for k in filled),
        )
    return ConfigDict(merged)


__all__ = [
    "TASKS",
    "Batch",
    "Metrics",
    "ModelSpec",
    "Task",
    "get_task_class",
    "apply_keys",
    "complete_config",
    "make_task",
    "task_config",
    "rng_for",
]
