#!/usr/bin/env bash
# Reproduces FIDELITY.md's figures on the embedded corpus, at the
# demo's (calibration) configuration: CLM, SLM k=0.6 and the random-60%
# ablation, and a selection-ratio sweep (k=1.0 is CLM), all with seeds 0, 1, 2;
# and the noise-recovery measurement. Every stage that exists is reused.
# Usage: scripts/fidelity.sh [WORK_DIR]   (~75 min on 2 cores after `trainer demo`)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/demo}
cargo build --release -q
T=./target/release/trainer
S=./target/release/scorer

for seed in 0 1 2; do
  $T demo --work "$W" --seed "$seed" >/dev/null
  $T demo --work "$W" --seed "$seed" --select random >/dev/null
done
for seed in 0 1 2; do
  for k in 0.3 0.45 0.8; do
    $T demo --work "$W" --seed "$seed" --select-ratio "$k" >/dev/null
  done
done
R="$W/runs"
$T report --out "$W/fidelity" --run "$R"/clm-seed{0,1,2} "$R"/slm-topkbatch-k0.6-seed{0,1,2} \
  "$R"/slm-random-k0.6-seed{0,1,2} "$R"/slm-topkbatch-k{0.3,0.45,0.8}-seed{0,1,2}

# Noise recovery: labelled noise records injected into a copy of the noisy
# corpus, scored with the same reference model; what k=0.6 drops, by label.
python3 scripts/inject_noise.py data/noisy_web.jsonl.zst "$W/noisy_injected.jsonl.zst" --seed 0
$S score --model "$R/reference/final" --corpus "$W/noisy_injected.jsonl.zst" --out "$W/sets/noisy-injected" --seq-len 256 --batch-size 16
for seed in 0 1 2; do
  $T selection --data "$W/sets/noisy-injected" --seed "$seed"
  $T selection --data "$W/sets/noisy-injected" --seed "$seed" --model "$R/slm-topkbatch-k0.6-seed$seed/final"
  $T selection --data "$W/sets/noisy-injected" --seed "$seed" --select random
done
