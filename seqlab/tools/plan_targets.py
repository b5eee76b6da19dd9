"""The accelerators ``seqlab plan`` compiles for: each chip's published peaks and memory, and
its compile-only devices (``jax.experimental.topologies``: no chip needed, only the extra
``pip install -e '.[aot]'``: libtpu for TPUs; ``'.[aot-gpu]'``: jax-cuda12-plugin/-pjrt for
NVIDIA GPUs)."""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from seqlab.errors import UsageError

AOT_PIP = "pip install -e '.[aot]'"  # TPU targets (libtpu)
AOT_GPU_PIP = "pip install -e '.[aot-gpu]'"  # NVIDIA targets (the CUDA plugin)
GIB = 1024**3


@dataclass(frozen=True)
class Chip:
    """One chip's peaks: dense bf16 matmul FLOP/s, HBM bytes/s and bytes, and where from."""

    kind: str
    platform: str  # tpu | cuda | cpu
    peak_flops: float
    hbm_bw: float
    hbm_bytes: float
    source: str


# Cloud TPU system-architecture pages (cloud.google.com/tpu/docs/v4, /v5e, /v6e, /v5p),
# "peak compute per chip (bf16)", "HBM capacity" and "HBM bandwidth" rows, read 2026-12.
# f32 matmuls at JAX's default precision run as bf16 MXU passes on TPU, so the bf16 peak is
# the ceiling either way. H100: NVIDIA H100 Tensor Core GPU datasheet (SXM5 column): dense
# BF16 989.4 TFLOP/s (1,979 is with 2:4 sparsity), 80 GB HBM3 at 3.35 TB/s.
CHIPS = {
    "v4": Chip("TPU v4", "tpu", 275e12, 1200e9, 32 * GIB, "cloud.google.com/tpu/docs/v4"),
    "v5e": Chip("TPU v5 lite", "tpu", 197e12, 819e9, 16 * GIB, "cloud.google.com/tpu/docs/v5e"),
    "v6e": Chip("TPU v6 lite", "tpu", 918e12, 1640e9, 32 * GIB, "cloud.google.com/tpu/docs/v6e"),
    "v5p": Chip("TPU v5", "tpu", 459e12, 2765e9, 95 * GIB, "cloud.google.com/tpu/docs/v5p"),
    "h100": Chip(
        "NVIDIA H100 80GB HBM3", "cuda", 989.4e12, 3.35e12, 80e9, "NVIDIA H100 datasheet (SXM5)"
    ),
}
EXAMPLES = (
    "v5e:2x4, v5e:2x2, v5e:4x4, v4:2x2x1, v6e:2x4, v5p:2x2x1 (or gcloud's names: v5litepod-8,"
    " v4-8, ...), h100:8, cpu"
)
GPU_SPECS = {"h100": Path(__file__).with_name("plan_h100_sxm.txtpb")}


@dataclass(frozen=True)
class Target:
    name: str  # as given: v5e:2x4, h100:8, cpu; "+2 slices" for num_slices
    chip: Chip
    devices: list[Any]

    @property
    def hosts(self) -> int:
        return len({d.process_index for d in self.devices})


#: Cloud TPU accelerator types (gcloud's --accelerator-type, launch/tpu_vm.sh's ACCELERATOR)
#: -> topologies: v4/v5p count TensorCores (2 per chip), v5e/v6e count chips
ACCELERATOR_TYPES = {
    "v4-8": "v4:2x2x1",
    "v4-16": "v4:2x2x2",
    "v4-32": "v4:2x2x4",
    "v5p-8": "v5p:2x2x1",
    "v5litepod-4": "v5e:2x2",
    "v5litepod-8": "v5e:2x4",
    "v5litepod-16": "v5e:4x4",
    "v6e-4": "v6e:2x2",
    "v6e-8": "v6e:2x4",
    "v6e-16": "v6e:4x4",
}


def parse(name: str) -> tuple[str, str, int]:
    """``v5e:2x4`` (or ``v5litepod-8``) -> (chip, topology, slices); slices come from
    ``--slices``."""
    name = ACCELERATOR_TYPES.get(name.strip().lower().replace("v5e-", "v5litepod-"), name)
    m = re.fullmatch(r"(v4|v5e|v5p|v6e|h100|cpu)(?::([0-9x]+))?", name.strip().lower())
    if not m or (m.group(1) != "cpu" and not m.group(2)):
        raise UsageError(f"--target={name!r} is not a target; use one of {EXAMPLES}")
    return m.group(1), m.group(2) or "", 1


#: libtpu, loaded off Cloud TPU, probes for a slice's settings and logs when they are missing,
#: and takes /tmp/libtpu_lockfile, refusing a second process (two plans, pytest -n 2); set
#: only while it loads (TPU_WORKER_HOSTNAMES must not leak: seqlab.run.mesh reads it)
QUIET_LIBTPU = {
    "ALLOW_MULTIPLE_LIBTPU_LOAD": "1",
    "TPU_SKIP_MDS_QUERY": "1",
    "TPU_ACCELERATOR_TYPE": "v5litepod-8",
    "TPU_WORKER_HOSTNAMES": "localhost",
}


@contextlib.contextmanager
def _env(values: dict[str, str]):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update({k: v for k, v in values.items() if old[k] is None})
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)


def _tpu_devices(gen: str, topo: str, slices: int) -> list[Any]:
    from jax.experimental import topologies

    from seqlab.run.mesh import tpu_chips

    kw: dict[str, Any] = {"num_slices": slices} if slices > 1 else {}
    if gen in ("v4", "v5p"):
        kw["chip_config_name"] = "megacore"  # one JAX device per chip, as on a real slice
    with _env({} if tpu_chips() else QUIET_LIBTPU):
        return topologies.get_topology_desc(f"{gen}:{topo}", "tpu", **kw).devices


def _cuda_plugin() -> None:
    """Registers the CUDA plugin's compile-only topology if JAX started without it (its
    CUDA version check fails where no CUDA libraries are installed; compiling needs none)."""
    from jax._src import xla_bridge as xb

    os.environ.setdefault("JAX_SKIP_CUDA_CONSTRAINTS_CHECK", "1")
    if "cuda" in getattr(xb, "_topology_factories", {"cuda": None}):
        return
    try:
        import jax_plugins.xla_cuda12 as plugin
    except ImportError:
        raise RuntimeError("the CUDA plugin (jax-cuda12-plugin) is not installed") from None
    plugin.initialize()


def _gpu_devices(gen: str, count: str, slices: int) -> list[Any]:
    from jax.experimental import topologies

    _cuda_plugin()

    spec = GPU_SPECS[gen].read_text()
    return topologies.get_topology_desc(
        "", "cuda", target_config=spec, topology=f"{slices}x1x{int(count)}"
    ).devices


def make(name: str, slices: int = 1) -> Target:
    """The target's compile-only devices; one UsageError line where they cannot be made."""
    gen, topo, _ = parse(name)
    import jax

    if gen == "cpu":
        devs = jax.devices("cpu")
        chip = Chip(devs[0].device_kind, "cpu", 0.0, 0.0, 0.0, "measured: seqlab.tools.plan")
        return Target(name, chip, devs)
    try:
        devs = (_tpu_devices if CHIPS[gen].platform == "tpu" else _gpu_devices)(gen, topo, slices)
    except (RuntimeError, NotImplementedError, ValueError) as e:
        first = " ".join(str(e).split())[:200]
        missing = "not installed" in first or "not implemented" in first.lower()
        pip = AOT_PIP if CHIPS[gen].platform == "tpu" else AOT_GPU_PIP
        how = f"; install the extra: {pip}" if missing else ""
        raise UsageError(f"cannot compile for --target={name} ({first}){how}") from None
    return Target(name + (f" x{slices} slices" if slices > 1 else ""), CHIPS[gen], list(devs))
