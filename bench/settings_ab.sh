#!/bin/bash
# A/B, alternated: `trainer bench` of two trainer binaries on the same set
# (e.g. before and after a refactor). Prints CLM and SLM median step seconds
# and the scoring pass of each round.
# Usage: bench/settings_ab.sh SET OLD_TRAINER NEW_TRAINER [ROUNDS]
# (SET: a scored set with windows of 256, e.g. the demo's sets/noisy-scored).
set -euo pipefail
D=$1
lscpu | grep -m1 "Model name" || true
for round in $(seq 1 "${4:-3}"); do
  for side in old new; do
    case $side in old) B=$2 ;; new) B=$3 ;; esac
    printf "%s %s " "$round" "$side"
    $B bench --data "$D" --model-size small --batch-size 8 --steps 8 --json 2>/dev/null |
      python3 -c "import json,sys; d=json.load(sys.stdin); print(d['clm']['median_s'], d['slm']['median_s'], d['score_s'])"
  done
done
