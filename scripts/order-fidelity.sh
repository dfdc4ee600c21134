#!/usr/bin/env bash
# The demo's SLM run (top-k batch, k = 0.6, 400 steps, tiny model) on a
# demo work directory's sets, for several seeds: the held-out clean CE of a
# data order, to compare with FIDELITY.md's runs of another.
#   scripts/order-fidelity.sh TRAINER DEMO_WORK_DIR [SEEDS...]   (~5 min a seed on 2 cores)
# DEMO_WORK_DIR holds sets/noisy-scored and sets/clean-heldout (`trainer demo --work`).
set -euo pipefail
trainer=$1 w=$2
shift 2
for seed in ${*:-0 1 2}; do
    out="$w/order-fidelity/slm-seed$seed"
    rm -rf "$out"
    "$trainer" train --data "$w/sets/noisy-scored" --eval-data "$w/sets/clean-heldout" \
        --out "$out" --objective slm --select topk-batch --select-ratio 0.6 --model-size tiny \
        --batch-size 16 --max-steps 400 --lr 1e-3 --warmup-steps 30 --eval-every 400 \
        --seed "$seed" >/dev/null 2>&1
    loss=$(grep eval_loss "$out/metrics.jsonl" | tail -1 | sed 's/.*"eval_loss":\([0-9.]*\).*/\1/')
    echo "seed $seed: held-out CE $loss"
done
