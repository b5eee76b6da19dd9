#!/usr/bin/env bash
# seqlab's GPU check in one command (about 7 minutes on one GPU; bench/device_check.py says
# what it measures): the fast, scan and cudnn backends agree on the device; the training-step
# table against PyTorch's cuDNN RNNs in fp32 (TF32 off) and bf16/TF32; a char-LM trained for
# a fixed time per backend; memory at T = 10,000. Writes OUTDIR/device_check.{json,md}.
#
#   bash bench/device_check.sh OUTDIR               # on a machine with a CUDA GPU
#   bash bench/device_check.sh OUTDIR --cpu-smoke   # tiny shapes on the CPU (the test)
#
# Installs only what is missing: seqlab with its test extras (PyTorch among them). JAX must
# already see the GPU (a CUDA jaxlib, e.g. jax[cuda12]); without one it stops with a line.
# PYTHON picks the interpreter (default: python3).
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: bash bench/device_check.sh OUTDIR [--cpu-smoke] [device_check.py flags]" >&2
  exit 2
fi
out="$(mkdir -p "$1" && cd "$1" && pwd)"  # OUTDIR as given, before moving to the checkout
shift
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c "import seqlab, seqlab_bench, torch" 2>/dev/null; then
  "$PY" -m pip install -q -e '.[test]' torch
fi
exec "$PY" bench/device_check.py "$out" "$@"
