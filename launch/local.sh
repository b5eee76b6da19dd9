#!/usr/bin/env bash
# Starts N seqlab processes on this machine, joined by jax.distributed over localhost.
#   launch/local.sh [--dry-run] N train --config configs/long_range.py --workdir runs/x
# Each runs `$PYTHON -m seqlab ARGS...` (PYTHON defaults to python3) with
# SEQLAB_COORDINATOR / SEQLAB_NUM_PROCESSES / SEQLAB_PROCESS_ID set; process 0 writes the
# metrics. Exits with the first non-zero status. SEQLAB_PORT picks the coordinator port.
set -euo pipefail
dry=0
if [[ "${1:-}" == "--dry-run" ]]; then dry=1; shift; fi
if [[ $# -lt 2 || ! "$1" =~ ^[0-9]+$ || "$1" -lt 1 ]]; then
  echo "usage: launch/local.sh [--dry-run] N COMMAND [ARGS...]  (N >= 1 processes)" >&2
  exit 2
fi
n=$1; shift
port=${SEQLAB_PORT:-$((20000 + RANDOM % 20000))}
py=${PYTHON:-python3}
pids=()
for ((i = 0; i < n; i++)); do
  vars=(SEQLAB_COORDINATOR="127.0.0.1:${port}" SEQLAB_NUM_PROCESSES="$n" SEQLAB_PROCESS_ID="$i")
  if [[ $dry -eq 1 ]]; then
    printf '%s ' env "${vars[@]}" "$py" -m seqlab "$@"; echo
  else
    env "${vars[@]}" "$py" -m seqlab "$@" &
    pids+=($!)
  fi
done
[[ $dry -eq 1 ]] && exit 0
trap 'kill "${pids[@]}" 2>/dev/null || true' INT TERM
status=0
for pid in "${pids[@]}"; do
  # `if ! wait` would read the negation's status (always 0): take wait's own
  wait "$pid" || { code=$?; [[ $status -eq 0 ]] && status=$code; }
done
exit $status
