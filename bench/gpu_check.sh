#!/usr/bin/env bash
# The GPU checks of issue 24 (point 5), at most ~8 minutes on one GPU; figures under bench/results/gpu_check/.
#   1. CUDA vs CPU meta-gradients in float64 (every registered learner, and Conv4 MAML at 28x28)
#   2. loop == vmap in float64 on the device
#   3. bf16 autocast on the device against float32 (cosine, relative error)
#   4. the peers table on the GPU (bench/peers.py --device cuda: timing and meta-gradient rows)
#   5. a short full-speed training rate (bench/train_bench.py: the Omniglot presets, synthetic tasks)
# Without CUDA it runs what the CPU can (2 and 3 on the CPU), says which GPU parts it skipped, and exits 0.
# Usage: bash bench/gpu_check.sh [OUT]     (PYTHON=... to choose the interpreter; default .venv's or python3)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-bench/results/gpu_check}"
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$(pwd)${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
rm -f "$OUT"/train_rate.jsonl "$OUT"/steps.txt
status=0
step() {  # step NAME SECONDS COMMAND...: run with a time limit, record its outcome
  local name="$1" limit="$2"; shift 2
  local t0=$SECONDS
  echo "== $name (at most ${limit}s)"
  timeout "$limit" "$@"
  local rc=$?
  echo "$name: exit $rc after $((SECONDS - t0))s" >> "$OUT/steps.txt"
  [ "$rc" -eq 0 ] || status=1
}
if "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
  CUDA=1
  "$PY" -c 'import torch; print("device:", torch.cuda.get_device_name(0), "| torch", torch.__version__)'
else
  CUDA=0
  echo "device: no CUDA device: running the CPU parts only"
fi
step "checks 1-3 (gradients, loop vs vmap, bf16)" 150 "$PY" bench/gpu_check.py --out "$OUT"
if [ "$CUDA" = 1 ]; then
  step "peers table on the GPU" 240 "$PY" bench/peers.py --device cuda --rounds 5 --quick --out "$OUT/peers"
  step "training rate on the GPU" 90 sh -c "\"$PY\" bench/train_bench.py --presets omniglot-5w1s-maml \
      omniglot-20w1s-maml --iterations 20 --warmup 3 --device cuda --json > \"$OUT/train_rate.jsonl\""
else
  echo "SKIP peers table on the GPU (needs CUDA)"
  echo "SKIP training rate on the GPU (needs CUDA)"
fi
"$PY" bench/gpu_check.py --report --out "$OUT" || status=1
if [ "$CUDA" = 0 ]; then
  echo "no CUDA: the GPU figures are missing (skipped: CUDA vs CPU gradients, peers table, training rate)"
  exit 0
fi
exit $status
