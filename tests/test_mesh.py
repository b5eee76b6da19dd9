"""Which environments join a multi-process run, and how (seqlab.run.mesh.init_plan)."""

from __future__ import annotations

import jax

from seqlab.run import mesh
from seqlab.run.mesh import init_plan

SRUN = {  # what srun sets in each task of a 2-node x 8-GPU job (one task per GPU)
    "SLURM_JOB_ID": "4242",
    "SLURM_STEP_NODELIST": "gpu[01-02]",
    "SLURM_NTASKS": "16",
    "SLURM_PROCID": "9",
    "SLURM_LOCALID": "1",
}


def test_local_machine_is_one_process():
    assert init_plan({"HOME": "/root", "PATH": "/usr/bin"}, chips=0) is None


def test_explicit_coordinator_from_local_sh():
    env = {"SEQLAB_COORDINATOR": "127.0.0.1:1234", "SEQLAB_NUM_PROCESSES": "3"}
    kind, kw = init_plan({**env, "SEQLAB_PROCESS_ID": "2"})
    assert kind == "explicit"
    assert kw == {"coordinator_address": "127.0.0.1:1234", "num_processes": 3, "process_id": 2}


def test_tpu_vm_pod_slice_initializes_with_no_arguments():
    # a `gcloud compute tpus tpu-vm` worker: chips on PCI, no TPU_WORKER_HOSTNAMES (that is
    # GKE's); the old gate skipped initialize() here and orbax then refused to checkpoint
    assert init_plan({"HOME": "/home/me"}, chips=4) == ("tpu-vm", {})


def test_gke_tpu():
    assert init_plan({"TPU_WORKER_HOSTNAMES": "w-0,w-1,w-2,w-3"}) == ("gke-tpu", {})
    assert init_plan({"TPU_PROCESS_ADDRESSES": "a:1,b:1"}, chips=4) == ("gke-tpu", {})


def test_slurm_gpu_and_cpu_tasks():
    assert init_plan(SRUN) == ("slurm", {})  # JAX reads SLURM_LOCALID -> local_device_ids
    cpu = {**SRUN, "SLURM_NTASKS": "4", "SLURM_PROCID": "3", "SLURM_LOCALID": "3"}
    assert init_plan(cpu) == ("slurm", {})
    assert init_plan({**SRUN, "SLURM_NTASKS": "1"}) is None  # one task: nothing to join
    batch_shell = {k: v for k, v in SRUN.items() if k != "SLURM_STEP_NODELIST"}
    assert init_plan(batch_shell) is None  # inside sbatch but outside srun


def test_forced_on_and_off():
    assert init_plan({"SEQLAB_DISTRIBUTED": "1"}) == ("forced", {})
    assert init_plan({**SRUN, "SEQLAB_DISTRIBUTED": "0"}, chips=8) is None


def test_maybe_initialize_calls_jax_as_planned(monkeypatch):
    calls = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: calls.append(kw))
    monkeypatch.setattr(jax.config, "update", lambda *a: None)
    monkeypatch.setattr(mesh, "tpu_chips", lambda: 4)
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")  # keep the CPU pin out of this test
    for k in ("SEQLAB_COORDINATOR", "SEQLAB_DISTRIBUTED", "TPU_WORKER_HOSTNAMES", "SLURM_JOB_ID"):
        monkeypatch.delenv(k, raising=False)
    saved = dict(vars(mesh.maybe_initialize))
    vars(mesh.maybe_initialize).clear()
    try:
        assert mesh.maybe_initialize() == "tpu-vm"
        assert calls == [{}]
        assert mesh.maybe_initialize() == "tpu-vm" and len(calls) == 1  # once per process
    finally:
        vars(mesh.maybe_initialize).clear()
        vars(mesh.maybe_initialize).update(saved)


def test_tpu_chips_on_this_machine():
    assert mesh.tpu_chips() == 0  # the CI machines have no TPU


def test_cpu_only_when_no_accelerator_is_attached():
    # the aot extra's libtpu / CUDA plugin must not be probed by a CPU run
    assert mesh.cpu_only_here({}, tpus=0, nvidia=False, amd=0)
    assert not mesh.cpu_only_here({}, tpus=4, nvidia=False, amd=0)
    assert not mesh.cpu_only_here({}, tpus=0, nvidia=True, amd=0)
    assert not mesh.cpu_only_here({}, tpus=0, nvidia=False, amd=1)
    assert not mesh.cpu_only_here({"JAX_PLATFORMS": "cuda"}, tpus=0, nvidia=False, amd=0)
