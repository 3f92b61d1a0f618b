#!/usr/bin/env bash
# How the shipped pretrained models were made (CPU, reduced iterations: see each manifest's notes).
# Usage: FEWSHOT_DATA=<root holding omniglot/omniglot-28.h5> RUNS=/tmp/runs bash scripts/train_pretrained.sh
# Runs one training at a time (shared CPU), then evaluates the best checkpoint on 600 fixed test
# episodes and writes pretrained/<name>/{model.safetensors,manifest.json}.
# The shipped omniglot-5w1s/20w1s/5w5s runs were first trained to 1200/1000/1000 iterations and later
# resumed to 2400/4000/3000 (20w1s: 2400, then 4000) with the same settings; resume is exact, so these single commands give the same weights
# (sinusoid-maml: its first 3000 iterations ran with 2 CPU threads, the rest with 1, so a rerun may
# differ in the last bits: thread count changes float summation order).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-runs}"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
FS="${FEWSHOT:-.venv/bin/fewshot}"

train_and_publish() {  # name preset notes args...
  local name="$1" preset="$2" notes="$3"; shift 3
  "$FS" train "$preset" --out "$RUNS/$name" --device cpu --quiet "$@"
  "$FS" pretrained publish "$RUNS/$name" "$name" --dest pretrained --episodes 600 --notes "$notes"
}

train_and_publish sinusoid-maml sinusoid-maml "" --iterations 10000 --set val_every=1000 --set checkpoint_every=1000
train_and_publish omniglot-5w1s-maml omniglot-5w1s-maml "" \
  --iterations 2400 --set val_every=200 --set val_episodes=100 --set checkpoint_every=100
train_and_publish omniglot-5w5s-maml omniglot-5w5s-maml "Meta-batch 8 instead of 32 (CPU time)." \
  --iterations 3000 --set meta_batch=8 --set val_every=200 --set val_episodes=100 --set checkpoint_every=100
train_and_publish omniglot-20w1s-maml omniglot-20w1s-maml \
  "Meta-batch 8 instead of 16 and 1 inner step in training (5 at test) instead of 5 (CPU time)." \
  --iterations 4000 --set meta_batch=8 --set learner.inner_steps=1 --set val_every=200 --set val_episodes=100 \
  --set checkpoint_every=100

# Learned optimizers (fewshot l2o), CPU, one thread. l2o-quadratic: the thesis' full protocol
# (100 epochs of 100 iterations, 42 min). l2o-mnist: 8 of the preset's 20 epochs (50 min; validation
# was still improving at epoch 8). MNIST needs `fewshot prepare mnist` under the data root
# ($FEWSHOT_DATA or --root). The figures: fewshot l2o experiment all --out docs/l2o
l2o_train() {  # problem epochs args...
  local problem="$1" epochs="$2"; shift 2
  "$FS" l2o train "$problem" --out "pretrained/l2o-$problem" --set "epochs=$epochs" "$@"
}
l2o_train quadratic 100
l2o_train mnist 8
