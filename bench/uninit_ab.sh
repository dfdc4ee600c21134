#!/bin/bash
# A/B/C, alternated: eb867ff (kernel outputs uninitialised through Vec::set_len),
# eb867ff with every output zero-filled, and the working tree (outputs written
# through MaybeUninit; attention's per-head buffer and the LM head's logits still zero-filled).
# Usage: bench/uninit_ab.sh SET UNINIT_TRAINER ZEROED_TRAINER NEW_TRAINER
# (SET: a scored set with windows of 256, e.g. the demo's sets/noisy-scored).
D=$1
for round in 1 2 3 4; do
  for side in uninit zeroed maybeuninit; do
    case $side in
      uninit) B=$2;;
      zeroed) B=$3;;
      maybeuninit) B=$4;;
    esac
    printf "%s %s " $round $side
    RHO1_GEMM=builtin $B bench --data $D --model-size small --batch-size 8 --steps 8 --json 2>/dev/null | python3 -c "import json,sys; d=json.load(sys.stdin); print(d['clm']['median_s'], d['slm']['median_s'], d['score_s'])"
  done
done
