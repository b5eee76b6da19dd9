"""``seqlab plan --config X[:ARG] --target v5e:2x4 [--config.KEY=V ...] [--json FILE]``."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Sequence
from typing import Any

from absl import flags

from seqlab.tools.flags import parse
from seqlab.tools.plan_targets import EXAMPLES


def _define(fv: flags.FlagValues) -> None:
    flags.DEFINE_string("target", None, f"what to compile for: {EXAMPLES}", flag_values=fv)
    flags.DEFINE_integer("slices", 1, "TPU slices joined over DCN (multi-slice)", flag_values=fv)
    flags.DEFINE_string("json", None, "also write the answer as JSON to this file", flag_values=fv)
    flags.DEFINE_integer("repeats", 5, "--target cpu: timed steps to compare with", flag_values=fv)


def cmd_plan(argv: Sequence[str]) -> int:
    fv = parse("plan", argv, _define, with_config=True)
    import jax

    from seqlab.errors import UsageError

    # plan runs nothing on an accelerator: keep JAX on the CPU (an installed CUDA plugin
    # without a GPU would otherwise log a traceback as JAX starts)
    with contextlib.suppress(RuntimeError):  # backends already started (a test): leave them
        jax.config.update("jax_platforms", "cpu")

    if not fv.target:
        raise UsageError(f"--target is required: one of {EXAMPLES}")
    from seqlab.run import memory
    from seqlab.run.validate import validate
    from seqlab.tasks import complete_config
    from seqlab.tools import plan, plan_targets

    config = complete_config(fv.config)
    validate(config)
    # before the target: cuDNN needs a GPU here whether or not the CUDA plugin is installed
    chip = plan_targets.CHIPS.get(plan_targets.parse(fv.target)[0])
    plan.refuse_cudnn_without_gpu(config, chip.platform if chip else "cpu")
    target = plan_targets.make(fv.target, fv.slices)
    cpu = target.chip.platform == "cpu"
    if cpu:  # no published peak for "this CPU": measure the two the roofline needs
        flops, bw = plan.cpu_peaks()
        have = memory.host_available() or 0
        target = dataclasses.replace(
            target,
            chip=dataclasses.replace(target.chip, peak_flops=flops, hbm_bw=bw, hbm_bytes=have),
        )
    try:
        run, result = plan.plan(config, target)
    except plan.CompileFailed as e:
        print(f"XLA could not compile for {target.name} ({target.chip.kind}): the {e}")
        _write(fv.json, {"target": target.name, "fits": None, "error": str(e)})
        return 1
    except plan.OutOfMemory as e:
        shrink = _shrink(config, len(target.devices))
        print(f"does not fit {target.name} ({target.chip.kind}): XLA refused the {e}; {shrink}")
        _write(fv.json, {"target": target.name, "fits": False, "error": str(e)})
        return 1
    if (wall := plan.wall_seconds(result, config, run["eval_batches"])) is not None:
        result["wall_s"] = wall
    if cpu:
        result["cpu_peaks"] = {"flops": target.chip.peak_flops, "bytes_per_s": target.chip.hbm_bw}
        result["measured_step_s"] = plan.measure_cpu(result, run, fv.repeats)
    for line in plan.describe(result, _shrink(config, len(target.devices))):
        print(line)
    if cpu:
        est, got = result["train"]["roofline_s"], result["measured_step_s"]
        print(
            f"measured on this CPU: {got * 1e3:.3g} ms/step (median of {fv.repeats}); the roofline"
            f" {est * 1e3:.3g} ms is {est / got:.2g} of it (peaks measured here: "
            f"{target.chip.peak_flops / 1e9:.3g} GFLOP/s, {target.chip.hbm_bw / 1e9:.3g} GB/s)"
        )
    fits = all(result[w]["fits"] is not False for w in ("train", "eval"))
    _write(fv.json, {**result, "fits": fits})
    return 0 if fits else 1


def _shrink(config: Any, devices: int) -> str:
    """The up-front memory check's advice (seqlab.run.memory): the keys to shrink, biggest
    share first."""
    from seqlab.run import memory
    from seqlab.tasks import make_task

    task = make_task(config)
    need = memory.train_need(config, task.spec, task.tokens_per_batch(), devices=devices)
    return memory._shrink(config, need)


def _write(path: str | None, result: dict[str, Any]) -> None:
    if not path:
        return
    clean = {k: v for k, v in result.items() if k not in ("train", "eval")}
    for w in ("train", "eval"):
        if w in result:
            clean[w] = {k: v for k, v in result[w].items() if k not in ("lowered", "compiled")}
    with open(path, "w") as f:
        json.dump(clean, f, indent=1)
