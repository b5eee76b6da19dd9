"""The test split scored once, at the end of a run, on its best checkpoint (chosen on
validation): for tasks with a fixed train/test split (``Task.test_at_end``), whose evals
during training score a validation split carved from train."""

from __future__ import annotations

import json
import os
from typing import Any

from ml_collections import ConfigDict

#: generated tasks' stand-in test set: the eval set drawn with task.eval_seed + this
FRESH_EVAL_SEED = 1000


def wants_test(config: ConfigDict) -> bool:
    """Whether ``config``'s task scores its test split once at the end."""
    from seqlab.tasks import get_task_class

    return bool(getattr(get_task_class(config.task.name), "test_at_end", False))


def final_test(workdir: str) -> dict[str, Any]:
    """Scores the best checkpoint of ``workdir`` on the test split (generated tasks: on a
    fresh eval set, ``task.eval_seed + FRESH_EVAL_SEED``, that selection never saw); writes
    eval_test.json and adds the ``test/...`` metrics to results.json. Returns them."""
    from seqlab.run import load_run
    from seqlab.run.evaluate import Evaluator
    from seqlab.run.replicas import Replicas
    from seqlab.run.writers import write_json
    from seqlab.tasks import get_task_class

    run = load_run(workdir, True)
    config, data = run.config, "the test split"
    fresh = "eval_seed" in config.task and not hasattr(
        get_task_class(config.task.name), "test_batches"
    )
    if fresh:  # generated data: a fresh eval set, never used for selection, stands in
        config = ConfigDict(config.to_dict())
        config.task.eval_seed = int(config.task.eval_seed) + FRESH_EVAL_SEED
        data = f"a fresh eval set (task.eval_seed={config.task.eval_seed})"
    replicas = Replicas(config)
    test = replicas.task.eval_batches if fresh else getattr(replicas.task, "test_batches", None)
    batches = list(test()) if test is not None else []
    if not batches:
        return {}
    metrics = Evaluator(run.mdef, replicas.task, replicas=replicas)(run.params, batches, "test/")
    result = {"step": run.step, "checkpoint": "best", "data": data, **metrics}
    write_json(os.path.join(workdir, "eval_test.json"), result, indent=1)
    path = os.path.join(workdir, "results.json")
    if os.path.exists(path):
        with open(path) as f:
            results = json.load(f)
        results.update({**metrics, "test/step": run.step})
        write_json(path, results)
    return result
