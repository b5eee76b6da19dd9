"""The launchers: the commands they would run (--dry-run), and runs against stand-ins."""

from __future__ import annotations

import os
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def dry(script, *args, **env):
    r = subprocess.run(
        ["bash", os.path.join(ROOT, "launch", script), "--dry-run", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=30,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_local():
    out = dry(
        "local.sh",
        "3",
        "train",
        "--config",
        "c.py",
        "--workdir",
        "w",
        PYTHON="py",
        SEQLAB_PORT="1234",
    ).splitlines()
    assert len(out) == 3
    for i, line in enumerate(out):
        assert (
            f"SEQLAB_COORDINATOR=127.0.0.1:1234 SEQLAB_NUM_PROCESSES=3 SEQLAB_PROCESS_ID={i}"
            " py -m seqlab train --config c.py --workdir w"
        ) in line


def test_local_usage_error():
    r = subprocess.run(
        ["bash", os.path.join(ROOT, "launch", "local.sh"), "x"], capture_output=True, text=True
    )
    assert r.returncode == 2 and "usage" in r.stderr


def test_tpu_vm():
    env = {
        "TPU_NAME": "t1",
        "ZONE": "z1",
        "ACCELERATOR": "v5litepod-16",
        "SPOT": "1",
        "REPO": "https://example.org/seqlab.git",
    }
    create = dry("tpu_vm.sh", "create", **env)
    assert "gcloud compute tpus tpu-vm create t1 --zone z1" in create
    assert "--accelerator-type v5litepod-16" in create and "--spot" in create
    run = dry(
        "tpu_vm.sh", "run", "train", "--config", "configs/charlm.py", "--workdir", "/gcs/r", **env
    )
    assert "--worker=all" in run and "python -m seqlab train --config configs/charlm.py" in run
    assert "git clone" in dry("tpu_vm.sh", "install", **env)
    loop = dry("tpu_vm.sh", "resume-loop", "train", "--workdir", "/gcs/r", **env)
    assert "create" in loop and "seqlab train" in loop
    assert "wandb agent --count 1 abc123" in dry("tpu_vm.sh", "agent", "abc123", **env)
    assert "tpu-vm delete t1" in dry("tpu_vm.sh", "delete", **env)


def test_slurm():
    out = dry(
        "slurm.sbatch",
        "train",
        "--config",
        "configs/charlm.py",
        "--workdir",
        "/s/r",
        PYTHON="python3",
    )
    assert out.strip() == (
        "srun --kill-on-bad-exit=1 python3 -m seqlab train --config "
        "configs/charlm.py --workdir /s/r"
    )


# -- the launchers run for real against stand-in gcloud / srun / scontrol / wandb -------------
# Each stand-in appends one line per call (its name and arguments) to $CALLS. The gcloud one
# keeps the VM's state in $STATE and runs an ssh --command in a fake home per worker, where
# seqlab/.venv/bin/{python,wandb} are stand-ins too (python exits with the next of $CODES).
GCLOUD = r"""#!/usr/bin/env bash
echo "gcloud $*" >> "$CALLS"
args=" $* "
case "$args" in
  *" describe "*) s=$(cat "$STATE"); [[ $s == NOT_FOUND ]] && exit 1; echo "$s" ;;
  *" delete "*) echo NOT_FOUND > "$STATE" ;;
  *" create "*) echo READY > "$STATE" ;;
  *" ssh "*)
    [[ $(cat "$STATE") == READY ]] || { echo "ssh: no route" >&2; exit 255; }
    cmd=${@: -1}; workers=1
    [[ "$args" == *" --worker=all "* ]] && workers=$NUM_WORKERS
    status=0
    for ((w = 0; w < workers; w++)); do
      (cd "$FAKE_HOME" && WORKER=$w bash -c "$cmd") || status=$?
    done
    exit $status ;;
esac
"""
RECORD = '#!/usr/bin/env bash\necho "$(basename "$0") $*" >> "$CALLS"\n'
FAKE_PYTHON = r"""#!/usr/bin/env bash
echo "python[$WORKER] SEQLAB_DISTRIBUTED=${SEQLAB_DISTRIBUTED:-} $*" >> "$CALLS"
code=$(head -n 1 "$CODES"); sed -i 1d "$CODES"
exit "${code:-0}"
"""
SRUN = r"""#!/usr/bin/env bash
echo "srun $*" >> "$CALLS"
if [[ -n "${SRUN_WAIT_TERM:-}" ]]; then  # seqlab: checkpoint on TERM, exit 75
  trap 'echo "srun got TERM" >> "$CALLS"; exit 75' TERM
  touch "$SRUN_WAIT_TERM"; while true; do sleep 0.05; done
fi
exit "${SRUN_EXIT:-0}"
"""


def stand_ins(tmp_path, num_workers=4, state="READY", codes=()):
    bin_dir, home = tmp_path / "bin", tmp_path / "home"
    venv = home / "seqlab" / ".venv" / "bin"
    venv.mkdir(parents=True)
    bin_dir.mkdir()
    for path, text in [
        (bin_dir / "gcloud", GCLOUD),
        (bin_dir / "srun", SRUN),
        (bin_dir / "scontrol", RECORD),
        (bin_dir / "wandb", RECORD),
        (venv / "wandb", RECORD),
        (venv / "python", FAKE_PYTHON),
    ]:
        path.write_text(text)
        path.chmod(0o755)
    (tmp_path / "state").write_text(state + "\n")
    (tmp_path / "codes").write_text("".join(f"{c}\n" for c in codes))
    (tmp_path / "calls").write_text("")
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "CALLS": str(tmp_path / "calls"),
        "STATE": str(tmp_path / "state"),
        "CODES": str(tmp_path / "codes"),
        "FAKE_HOME": str(home),
        "NUM_WORKERS": str(num_workers),
        "RETRY_S": "0",
    }


def launch(script, *args, env, timeout=30):
    r = subprocess.run(
        ["bash", os.path.join(ROOT, "launch", script), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=timeout,
    )
    with open(env["CALLS"]) as f:
        return r, f.read().splitlines()


def test_local_exit_status_is_the_first_failure(tmp_path):
    # defect 5: `if ! wait $pid; then code=$?` read the negation's status: always exit 0
    py = tmp_path / "py"
    py.write_text("#!/usr/bin/env bash\n[[ $SEQLAB_PROCESS_ID == 1 ]] && exit 3\nexit 0\n")
    py.chmod(0o755)
    env = {"PYTHON": str(py), "CALLS": os.devnull}
    r, _ = launch("local.sh", "3", "train", env=env)
    assert r.returncode == 3, r.stderr
    py.write_text("#!/usr/bin/env bash\nexit 0\n")
    assert launch("local.sh", "2", "train", env=env)[0].returncode == 0


def test_slurm_one_task_per_gpu_and_appended_log():
    with open(os.path.join(ROOT, "launch", "slurm.sbatch")) as f:
        text = f.read()
    assert "#SBATCH --ntasks-per-node=8\n#SBATCH --gpus-per-node=8" in text  # defect 2
    assert "#SBATCH --open-mode=append" in text and "#SBATCH --requeue" in text


def test_slurm_time_limit_requeues(tmp_path):
    # defect 3: exit 75 (checkpointed at --signal's TERM) -> scontrol requeue; 0 or 1 -> not
    env = {**stand_ins(tmp_path), "SLURM_JOB_ID": "4242", "PYTHON": "py"}
    r, calls = launch("slurm.sbatch", "train", "--workdir", "/s/r", env={**env, "SRUN_EXIT": "75"})
    assert r.returncode == 75
    assert calls == [
        "srun --kill-on-bad-exit=1 py -m seqlab train --workdir /s/r",
        "scontrol requeue 4242",
    ]
    for code in ("0", "1"):
        (tmp_path / "calls").write_text("")
        r, calls = launch("slurm.sbatch", "train", env={**env, "SRUN_EXIT": code})
        assert r.returncode == int(code) and not any(c.startswith("scontrol") for c in calls)


def test_slurm_forwards_the_time_limit_signal(tmp_path):
    # --signal=B:TERM reaches only the batch shell: it must pass TERM on to srun's tasks
    ready = tmp_path / "ready"
    env = {**stand_ins(tmp_path), "SLURM_JOB_ID": "7", "SRUN_WAIT_TERM": str(ready)}
    p = subprocess.Popen(
        ["bash", os.path.join(ROOT, "launch", "slurm.sbatch"), "train"],
        env={**os.environ, **env},
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 20
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    p.send_signal(signal.SIGTERM)
    assert p.wait(timeout=20) == 75
    calls = (tmp_path / "calls").read_text().splitlines()
    assert calls[1:] == ["srun got TERM", "scontrol requeue 7"]


def test_tpu_vm_run_sets_every_worker_up_for_initialize(tmp_path):
    env = {**stand_ins(tmp_path, num_workers=4, codes=[0, 0, 0, 0]), "TPU_NAME": "t1"}
    r, calls = launch("tpu_vm.sh", "run", "train", "--workdir", "/gcs/r", env=env)
    assert r.returncode == 0, r.stderr
    runs = [c for c in calls if c.startswith("python[")]
    assert runs == [
        f"python[{w}] SEQLAB_DISTRIBUTED=1 -m seqlab train --workdir /gcs/r" for w in range(4)
    ]


def test_tpu_vm_resume_loop_recreates_a_preempted_spot_vm(tmp_path):
    # defect 4: a PREEMPTED VM is still `describe`-able; the old loop retried ssh forever
    env = {
        **stand_ins(tmp_path, num_workers=2, state="PREEMPTED", codes=[0, 0, 0, 0]),
        "TPU_NAME": "t1",
        "ZONE": "z1",
        "ACCELERATOR": "v5litepod-8",
        "SPOT": "1",
    }
    r, calls = launch("tpu_vm.sh", "resume-loop", "train", "--workdir", "/gcs/r", env=env)
    assert r.returncode == 0, r.stderr
    gcloud = [c.split(" --")[0] for c in calls if c.startswith("gcloud")]
    assert gcloud == [
        "gcloud compute tpus tpu-vm ssh t1",  # refused: the VM is preempted
        "gcloud compute tpus tpu-vm describe t1",
        "gcloud compute tpus tpu-vm delete t1",
        "gcloud compute tpus tpu-vm create t1",
        "gcloud compute tpus tpu-vm ssh t1",  # install
        "gcloud compute tpus tpu-vm ssh t1",  # run: exits 0
    ]
    create = next(c for c in calls if " create " in c)
    assert "--version v2-alpha-tpuv5-lite" in create and "--spot" in create
    assert sum(c.startswith("python[") and "-m seqlab train" in c for c in calls) == 2


def test_tpu_vm_resume_loop_reruns_after_a_checkpointed_stop(tmp_path):
    env = {**stand_ins(tmp_path, num_workers=1, codes=[75, 0]), "TPU_NAME": "t1"}
    r, calls = launch("tpu_vm.sh", "resume-loop", "train", env=env)
    assert r.returncode == 0, r.stderr
    assert [
        c.split(" ")[0] for c in calls if not c.startswith("gcloud compute tpus tpu-vm ssh")
    ] == [
        "python[0]",
        "gcloud",  # describe: READY, so only re-run
        "python[0]",
    ]


def test_tpu_vm_runtime_follows_the_accelerator():
    for accel, runtime in [
        ("v4-32", "tpu-ubuntu2204-base"),
        ("v5litepod-16", "v2-alpha-tpuv5-lite"),
        ("v5p-8", "v2-alpha-tpuv5"),
        ("v6e-8", "v2-alpha-tpuv6e"),
    ]:
        assert f"--version {runtime}" in dry("tpu_vm.sh", "create", ACCELERATOR=accel)
    assert "--version mine" in dry("tpu_vm.sh", "create", ACCELERATOR="v6e-8", RUNTIME="mine")


def test_tpu_vm_install_makes_a_python_311_venv():
    out = dry("tpu_vm.sh", "install")
    assert "python3.11 -m venv .venv" in out and "python3.11-venv" in out
    assert "sys.version_info < (3, 11)" in out and "jax[tpu]==" in out


def test_tpu_vm_queued_resources():
    env = {"QUEUED": "1", "SPOT": "1", "TPU_NAME": "q1", "ACCELERATOR": "v6e-8"}
    create = dry("tpu_vm.sh", "create", **env)
    assert create.startswith("gcloud compute tpus queued-resources create q1 --node-id q1")
    assert "--runtime-version v2-alpha-tpuv6e --spot" in create
    assert "queued-resources delete q1" in dry("tpu_vm.sh", "delete", **env)


def test_tpu_vm_sweep_agent_on_worker_0_only(tmp_path):
    env = {**stand_ins(tmp_path, num_workers=4), "TPU_NAME": "t1", "COUNT": "5"}
    r, calls = launch("tpu_vm.sh", "agent", "me/proj/abc123", env=env)
    assert r.returncode == 0, r.stderr
    assert [c for c in calls if c.startswith("wandb")] == ["wandb agent --count 5 me/proj/abc123"]
    ssh = calls[0]
    assert "--worker=0" in ssh and "--ssh-flag=-t" in ssh and "exec .venv/bin/wandb" in ssh
