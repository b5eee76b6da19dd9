#!/usr/bin/env bash
# Cloud TPU VMs (single host or pod slice) with gcloud: the same seqlab command on every worker.
#
#   launch/tpu_vm.sh [--dry-run] create            # (spot with SPOT=1; queued resource: QUEUED=1)
#   launch/tpu_vm.sh [--dry-run] install           # clone/update the repo + a Python 3.11 venv
#   launch/tpu_vm.sh [--dry-run] run train --config configs/charlm.py --workdir /gcs/runs/x
#   launch/tpu_vm.sh [--dry-run] resume-loop train ...  # spot: recreate + re-run until done
#   launch/tpu_vm.sh [--dry-run] agent SWEEP_ID    # a W&B sweep agent on worker 0 (COUNT runs)
#   launch/tpu_vm.sh [--dry-run] delete
#
# Settings (environment): TPU_NAME (seqlab), ZONE (us-central2-b), ACCELERATOR (v4-8),
# RUNTIME (follows the accelerator: v4 tpu-ubuntu2204-base, v5e v2-alpha-tpuv5-lite, v5p
# v2-alpha-tpuv5, v6e v2-alpha-tpuv6e), PROJECT (gcloud's default), SPOT (0), QUEUED (0: a
# plain TPU VM; 1: a queued resource, Google's recommended way to get spot capacity), REPO
# (this repo's origin URL), BRANCH (main), PYTHON_VERSION (3.11; the images ship 3.10, which
# current JAX no longer supports), COUNT (runs per sweep agent, 1). On a pod every worker runs
# the same command with SEQLAB_DISTRIBUTED=1, so each calls jax.distributed.initialize(), which
# finds its peers through the metadata server; process 0 writes metrics and W&B. Keep the
# workdir on storage that outlives the VM (a gcsfuse-mounted bucket such as /gcs/...):
# re-running the same command resumes from its latest checkpoint, which is what resume-loop
# relies on after a preemption.
set -euo pipefail
dry=0
if [[ "${1:-}" == "--dry-run" ]]; then dry=1; shift; fi
verb=${1:-}
[[ -n "$verb" ]] && shift
name=${TPU_NAME:-seqlab}
zone=${ZONE:-us-central2-b}
accel=${ACCELERATOR:-v4-8}
case "$accel" in  # the software version each generation boots (Cloud TPU "TPU software versions")
  v4-*) default_runtime=tpu-ubuntu2204-base ;;
  v5litepod-* | v5e-*) default_runtime=v2-alpha-tpuv5-lite ;;
  v5p-*) default_runtime=v2-alpha-tpuv5 ;;
  v6e-*) default_runtime=v2-alpha-tpuv6e ;;
  *) default_runtime="" ;;
esac
runtime=${RUNTIME:-$default_runtime}
if [[ -z "$runtime" && "$verb" == create ]]; then
  echo "no default runtime version for ACCELERATOR=$accel; set RUNTIME" >&2
  exit 2
fi
pyver=${PYTHON_VERSION:-3.11}
repo=${REPO:-$(git -C "$(dirname "$0")/.." remote get-url origin 2>/dev/null || echo REPO_URL)}
branch=${BRANCH:-main}
queued=${QUEUED:-0}
project_flag=()
[[ -n "${PROJECT:-}" ]] && project_flag=(--project "$PROJECT")
where=(--zone "$zone" "${project_flag[@]}")

show() {  # a command as a shell would read it: args with spaces or specials in '...'
  local out=() a q="'"
  for a in "$@"; do
    if [[ "$a" =~ [[:space:]\&\;\|\$\"\'\<\>\(\)] ]]; then out+=("'${a//$q/$q\\$q$q}'"); else out+=("$a"); fi
  done
  echo "${out[*]}"
}
run() {  # print, or execute, one command
  if [[ $dry -eq 1 ]]; then show "$@"; else "$@"; fi
}
ssh_to() {  # ssh_to WORKER COMMAND [extra gcloud flags]: WORKER is all or a number
  local worker=$1 command=$2
  shift 2
  run gcloud compute tpus tpu-vm ssh "$name" "${where[@]}" --worker="$worker" "$@" \
    --command "$command"
}
quote_args() { printf '%q ' "$@"; }
state() {  # the VM's (or queued resource's) state, or NOT_FOUND
  local s
  if [[ "$queued" == "1" ]]; then
    s=$(gcloud compute tpus queued-resources describe "$name" "${where[@]}" \
      --format='value(state.state)' 2>/dev/null) || s=NOT_FOUND
  else
    s=$(gcloud compute tpus tpu-vm describe "$name" "${where[@]}" --format='value(state)' \
      2>/dev/null) || s=NOT_FOUND
  fi
  echo "${s:-NOT_FOUND}"
}

case "$verb" in
  create)
    spot=()
    [[ "${SPOT:-0}" == "1" ]] && spot=(--spot)
    if [[ "$queued" == "1" ]]; then
      run gcloud compute tpus queued-resources create "$name" --node-id "$name" "${where[@]}" \
        --accelerator-type "$accel" --runtime-version "$runtime" "${spot[@]}"
    else
      run gcloud compute tpus tpu-vm create "$name" "${where[@]}" \
        --accelerator-type "$accel" --version "$runtime" "${spot[@]}"
    fi
    ;;
  install)
    py="python$pyver"
    ssh_to all "set -e; if ! command -v $py >/dev/null || ! $py -c 'import ensurepip' 2>/dev/null; then sudo apt-get -qq update && sudo apt-get -qq install -y $py $py-venv; fi; if [ -d seqlab ]; then git -C seqlab fetch -q && git -C seqlab checkout -q $branch && git -C seqlab pull -q; else git clone -q -b $branch $repo seqlab; fi; cd seqlab && { .venv/bin/python -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { rm -rf .venv && $py -m venv .venv; }; } && .venv/bin/pip install -q -U pip && .venv/bin/pip install -q -e . && .venv/bin/pip install -q \"jax[tpu]==\$(.venv/bin/python -c 'import jax; print(jax.__version__)')\""
    ;;
  run)
    [[ $# -ge 1 ]] || { echo "usage: launch/tpu_vm.sh run COMMAND [ARGS...]" >&2; exit 2; }
    ssh_to all "cd seqlab && SEQLAB_DISTRIBUTED=1 .venv/bin/python -m seqlab $(quote_args "$@")"
    ;;
  resume-loop)
    [[ $# -ge 1 ]] || { echo "usage: launch/tpu_vm.sh resume-loop COMMAND [ARGS...]" >&2; exit 2; }
    if [[ $dry -eq 1 ]]; then
      echo "# until the run exits 0: if the VM is PREEMPTED/gone, delete and re-create it, install, run"
      "$0" --dry-run create; "$0" --dry-run install; "$0" --dry-run run "$@"
      exit 0
    fi
    until "$0" run "$@"; do
      s=$(state)
      case "$s" in
        READY | ACTIVE) echo "run stopped with $name $s; re-running (resumes)" >&2 ;;
        CREATING | PROVISIONING | ACCEPTED | WAITING_FOR_RESOURCES | STARTING | RESTARTING)
          echo "$name is $s; waiting" >&2 ;;
        *)  # PREEMPTED, TERMINATED, SUSPENDED, FAILED, NOT_FOUND...: a new one, then resume
          echo "$name is $s; deleting and re-creating it, then resuming" >&2
          [[ "$s" != NOT_FOUND ]] && { "$0" delete || true; }
          "$0" create && "$0" install || echo "re-creating $name failed; retrying" >&2
          ;;
      esac
      sleep "${RETRY_S:-30}"
    done
    ;;
  agent)
    [[ $# -eq 1 ]] || { echo "usage: launch/tpu_vm.sh agent SWEEP_ID" >&2; exit 2; }
    # one agent (each agent fetches its own point): on worker 0, exec'd so that the signals
    # the ssh session forwards (-t: Ctrl-C; hangup) reach it, stopping after COUNT runs.
    ssh_to 0 "cd seqlab && exec .venv/bin/wandb agent --count ${COUNT:-1} $(quote_args "$1")" \
      --ssh-flag=-t
    ;;
  delete)
    if [[ "$queued" == "1" ]]; then
      run gcloud compute tpus queued-resources delete "$name" "${where[@]}" --force --quiet
    else
      run gcloud compute tpus tpu-vm delete "$name" "${where[@]}" --quiet
    fi
    ;;
  *)
    echo "usage: launch/tpu_vm.sh [--dry-run] create|install|run|resume-loop|agent|delete ..." >&2
    exit 2
    ;;
esac
