"""Devices and hosts: joining a multi-process run, the data mesh, and placing arrays on it.

One command scales from 1 CPU to 8 GPUs to a TPU slice: the batch is split across every
device of a 1-D ``data`` mesh and the parameters are replicated (plain data parallelism,
which is what small recurrent models want). Each host feeds only its own rows of the batch.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from seqlab.errors import ConfigError


def maybe_initialize() -> None:
    """Calls ``jax.distributed.initialize`` when launched as one of several processes.

    Explicit settings (``launch/local.sh`` sets them): SEQLAB_COORDINATOR=host:port,
    SEQLAB_NUM_PROCESSES, SEQLAB_PROCESS_ID. Otherwise JAX's own cluster detection covers
    SLURM (more than one task) and Cloud TPU pod slices.
    """
    if getattr(maybe_initialize, "_done", False):
        return
    coord = os.environ.get("SEQLAB_COORDINATOR")
    if coord:
        # CPU processes need a collectives backend; it does not affect GPU/TPU runs (and
        # asking which backend is in use would start it before initialize may run).
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=coord,
            num_processes=int(os.environ["SEQLAB_NUM_PROCESSES"]),
            process_id=int(os.environ["SEQLAB_PROCESS_ID"]),
        )
    elif int(os.environ.get("SLURM_NTASKS", "1")) > 1 or os.environ.get("TPU_WORKER_HOSTNAMES"):
        jax.distributed.initialize()
    maybe_initialize._done = True


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
