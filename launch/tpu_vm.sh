#!/usr/bin/env bash
# Cloud TPU VMs (single host or pod slice) with gcloud: the same seqlab command on every worker.
#
#   launch/tpu_vm.sh [--dry-run] create            # (spot with SPOT=1)
#   launch/tpu_vm.sh [--dry-run] install           # clone/update the repo + venv on all workers
#   launch/tpu_vm.sh [--dry-run] run train --config configs/charlm.py --workdir /gcs/runs/x
#   launch/tpu_vm.sh [--dry-run] resume-loop train ...  # spot: recreate + re-run until done
#   launch/tpu_vm.sh [--dry-run] agent SWEEP_ID    # a W&B sweep agent on every worker
#   launch/tpu_vm.sh [--dry-run] delete
#
# Settings (environment): TPU_NAME (seqlab), ZONE (us-central2-b), ACCELERATOR (v4-8),
# RUNTIME (tpu-ubuntu2204-base), PROJECT (gcloud's default), SPOT (0), REPO (this repo's
# origin URL), BRANCH (main). On a pod every worker runs the same command; jax.distributed
# finds its peers by itself and process 0 writes metrics and W&B. Keep the workdir on storage
# that outlives the VM (a gcsfuse-mounted bucket such as /gcs/...): re-running the same command
# resumes from its latest checkpoint, which is what resume-loop relies on after a preemption.
set -euo pipefail
dry=0
if [[ "${1:-}" == "--dry-run" ]]; then dry=1; shift; fi
verb=${1:-}
[[ -n "$verb" ]] && shift
name=${TPU_NAME:-seqlab}
zone=${ZONE:-us-central2-b}
accel=${ACCELERATOR:-v4-8}
runtime=${RUNTIME:-tpu-ubuntu2204-base}
repo=${REPO:-$(git -C "$(dirname "$0")/.." remote get-url origin 2>/dev/null || echo REPO_URL)}
branch=${BRANCH:-main}
project_flag=()
[[ -n "${PROJECT:-}" ]] && project_flag=(--project "$PROJECT")

show() {  # a command as a shell would read it: args with spaces or specials in '...'
  local out=() a q="'"
  for a in "$@"; do
    if [[ "$a" =~ [[:space:]\&\;\|\$\"\'] ]]; then out+=("'${a//$q/$q\\$q$q}'"); else out+=("$a"); fi
  done
  echo "${out[*]}"
}
run() {  # print, or execute, one command
  if [[ $dry -eq 1 ]]; then show "$@"; else "$@"; fi
}
on_all_workers() {
  run gcloud compute tpus tpu-vm ssh "$name" --zone "$zone" "${project_flag[@]}" --worker=all \
    --command "$1"
}
quote_args() { printf '%q ' "$@"; }

case "$verb" in
  create)
    spot=()
    [[ "${SPOT:-0}" == "1" ]] && spot=(--spot)
    run gcloud compute tpus tpu-vm create "$name" --zone "$zone" "${project_flag[@]}" \
      --accelerator-type "$accel" --version "$runtime" "${spot[@]}"
    ;;
  install)
    on_all_workers "set -e; if [ -d seqlab ]; then git -C seqlab fetch -q && git -C seqlab checkout -q $branch && git -C seqlab pull -q; else git clone -q -b $branch $repo seqlab; fi; cd seqlab && python3 -m venv .venv && .venv/bin/pip install -q -e . 'jax[tpu]'"
    ;;
  run)
    [[ $# -ge 1 ]] || { echo "usage: launch/tpu_vm.sh run COMMAND [ARGS...]" >&2; exit 2; }
    on_all_workers "cd seqlab && .venv/bin/python -m seqlab $(quote_args "$@")"
    ;;
  resume-loop)
    [[ $# -ge 1 ]] || { echo "usage: launch/tpu_vm.sh resume-loop COMMAND [ARGS...]" >&2; exit 2; }
    if [[ $dry -eq 1 ]]; then
      echo "# until the run exits 0: (re)create the VM if it was preempted, install, run"
      "$0" --dry-run create; "$0" --dry-run install; "$0" --dry-run run "$@"
      exit 0
    fi
    until "$0" run "$@"; do
      echo "run stopped (preempted?); recreating $name and resuming" >&2
      gcloud compute tpus tpu-vm describe "$name" --zone "$zone" "${project_flag[@]}" \
        >/dev/null 2>&1 || { "$0" create && "$0" install; }
      sleep 30
    done
    ;;
  agent)
    [[ $# -eq 1 ]] || { echo "usage: launch/tpu_vm.sh agent SWEEP_ID" >&2; exit 2; }
    on_all_workers "cd seqlab && .venv/bin/wandb agent $(quote_args "$1")"
    ;;
  delete)
    run gcloud compute tpus tpu-vm delete "$name" --zone "$zone" "${project_flag[@]}" --quiet
    ;;
  *)
    echo "usage: launch/tpu_vm.sh [--dry-run] create|install|run|resume-loop|agent|delete ..." >&2
    exit 2
    ;;
esac
