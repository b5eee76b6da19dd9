"""Devices and hosts: joining a multi-process run, the data mesh, and placing arrays on it.

One command scales from 1 CPU to 8 GPUs to a TPU slice: the batch is split across every
device of a 1-D ``data`` mesh and the parameters are replicated (plain data parallelism,
which is what small recurrent models want). Each host feeds only its own rows of the batch.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from seqlab.errors import ConfigError

#: what srun sets for each task and JAX's SLURM detection reads
SLURM_VARS = (
    "SLURM_JOB_ID",
    "SLURM_STEP_NODELIST",
    "SLURM_NTASKS",
    "SLURM_PROCID",
    "SLURM_LOCALID",
)


def tpu_chips() -> int:
    """TPU chips attached to this host over PCI (JAX's own probe; 0 off Cloud TPU)."""
    try:
        from jax._src.hardware_utils import num_available_tpu_chips_and_device_id

        return int(num_available_tpu_chips_and_device_id()[0])
    except Exception:  # a private helper: a JAX without it means "no TPU seen"
        return 0


def init_plan(env: Mapping[str, str], chips: int = 0) -> tuple[str, dict[str, Any]] | None:
    """How this process joins a multi-process run: (environment, ``jax.distributed.initialize``
    keyword arguments), or None for a single process. ``env``: the environment it sees;
    ``chips``: TPU chips attached (``tpu_chips()``).

    - ``SEQLAB_COORDINATOR`` (launch/local.sh): explicit coordinator, count and id;
    - ``SEQLAB_DISTRIBUTED=1`` / ``0``: always / never call it with no arguments;
    - SLURM with more than one task (one per GPU, or CPU tasks): no arguments, JAX reads
      SLURM's variables and gives each process ``local_device_ids=[SLURM_LOCALID]``;
    - GKE TPU (``TPU_WORKER_HOSTNAMES`` / ``TPU_PROCESS_ADDRESSES``): no arguments;
    - a Cloud TPU VM (TPU chips on PCI), single host or pod slice: no arguments, JAX finds
      its peers through the metadata server (JAX's multi-process guide: every process calls
      it on Cloud TPU);
    - anything else (a laptop, one GPU box): None.
    """
    if env.get("SEQLAB_COORDINATOR"):
        return "explicit", {
            "coordinator_address": env["SEQLAB_COORDINATOR"],
            "num_processes": int(env["SEQLAB_NUM_PROCESSES"]),
            "process_id": int(env["SEQLAB_PROCESS_ID"]),
        }
    forced = env.get("SEQLAB_DISTRIBUTED", "").strip()
    if forced in ("0", "1"):
        return ("forced", {}) if forced == "1" else None
    if all(env.get(k) for k in SLURM_VARS) and int(env["SLURM_NTASKS"]) > 1:
        return "slurm", {}
    if env.get("TPU_WORKER_HOSTNAMES") or env.get("TPU_PROCESS_ADDRESSES"):
        return "gke-tpu", {}
    if chips > 0:
        return "tpu-vm", {}
    return None


def cpu_only_here(env: Mapping[str, str], tpus: int, nvidia: bool, amd: int) -> bool:
    """Whether to pin JAX to the CPU: no JAX_PLATFORMS chosen and no accelerator attached.
    Then an installed accelerator plugin (``pip install -e '.[aot]'``: libtpu, the CUDA
    plugin) is not probed at start, which costs time and logs warnings on a CPU machine."""
    return not env.get("JAX_PLATFORMS") and not tpus and not nvidia and not amd


def pin_cpu_if_no_accelerator() -> None:
    """``cpu_only_here`` for this process, before JAX's backends start (else nothing)."""
    try:
        from jax._src import hardware_utils as hw
        from jax._src.xla_bridge import backends_are_initialized

        if backends_are_initialized():
            return
        if cpu_only_here(os.environ, tpu_chips(), hw.has_visible_nvidia_gpu(),
                         hw.num_available_amd_gpus(stop_at=1)):  # fmt: skip
            jax.config.update("jax_platforms", "cpu")
            os.environ["JAX_PLATFORMS"] = "cpu"  # the runs a sweep starts, too
    except (ImportError, AttributeError):  # private helpers moved: leave JAX's default
        return


def maybe_initialize() -> str | None:
    """Calls ``jax.distributed.initialize`` as ``init_plan`` decides for this process's
    environment; returns the environment's name (None: a single process). On a machine with
    no accelerator, JAX is pinned to the CPU first (``cpu_only_here``)."""
    if getattr(maybe_initialize, "_done", False):
        return getattr(maybe_initialize, "_kind", None)
    pin_cpu_if_no_accelerator()
    plan = init_plan(os.environ, tpu_chips())
    if plan is not None:
        kind, kwargs = plan
        if kind in ("explicit", "slurm", "forced"):
            # CPU processes need a collectives backend; it does not affect GPU/TPU runs (and
            # asking which backend is in use would start it before initialize may run).
            jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(**kwargs)
        maybe_initialize._kind = kind
    maybe_initialize._done = True
    return plan[0] if plan else None


class DataMesh:
    """A 1-D mesh over all devices; ``batch`` shards the leading axis, ``replicated`` none."""

    def __init__(self, devices: list[Any] | None = None):
        self.mesh = Mesh(np.asarray(devices or jax.devices()), ("data",))
        self.batch = NamedSharding(self.mesh, PartitionSpec("data"))
        # with num_seeds > 1, train batches and carries lead with a (replicated) seed axis
        self.seeds_batch = NamedSharding(self.mesh, PartitionSpec(None, "data"))
        self.replicated = NamedSharding(self.mesh, PartitionSpec())

    @property
    def size(self) -> int:
        return self.mesh.size

    def check_batch(self, global_batch: int, what: str = "data.batch_size") -> None:
        if global_batch % self.size:
            raise ConfigError(
                f"{what}={global_batch} must be divisible by the {self.size} "
                "devices it is split across"
            )

    def put_local_batch(
        self, batch: dict[str, np.ndarray], seed_axis: bool = False
    ) -> dict[str, jax.Array]:
        """This process's rows -> one global array per key, sharded over the mesh."""
        sh = self.seeds_batch if seed_axis else self.batch
        return {
            k: jax.make_array_from_process_local_data(sh, np.asarray(v)) for k, v in batch.items()
        }

    def put_replicated(self, tree: Any) -> Any:
        """The same value on every process -> replicated on every device."""
        return jax.tree.map(lambda x: jax.device_put(x, self.replicated), tree)

    def put_state(self, state: dict[str, Any], seed_axis: bool = False) -> dict[str, Any]:
        """Train state: everything replicated except the carried RNN state (batch-sharded)."""
        out = {k: self.put_replicated(v) for k, v in state.items() if k != "carry"}
        sh = self.seeds_batch if seed_axis else self.batch
        out["carry"] = jax.tree.map(lambda x: jax.device_put(x, sh), state["carry"])
        return out
