#!/usr/bin/env bash
# The scorer's write path, two builds side by side: `scorer pack` (no model:
# tokenizing and writing only) and `scorer score` with a small model, each
# alternated between OLD and NEW for ROUNDS rounds; prints every round's
# tokens/s as the scorer reports it and the medians.
#   bench/write_ab.sh OLD_SCORER NEW_SCORER MODEL_DIR [ROUNDS] [CORPUS]
# e.g. an older build kept with `git worktree add /tmp/old REV && cargo build
# --release --manifest-path /tmp/old/Cargo.toml`, and the demo's reference
# (runs/demo/runs/reference/final, which has its tokenizer.json).
set -euo pipefail
old=$1 new=$2 model=$3 rounds=${4:-3} corpus=${5:-data/noisy_web.jsonl.zst}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rate() { sed -n 's/.*(\([0-9]*\) tok\/s.*/\1/p'; }
declare -A runs
for r in $(seq "$rounds"); do
    for side in old new; do
        bin=${!side}
        rm -rf "$work/p" "$work/s"
        p=$("$bin" pack --tokenizer "$model/tokenizer.json" --corpus "$corpus" --out "$work/p" --seq-len 256 2>&1 | rate)
        s=$("$bin" score --model "$model" --corpus "$corpus" --out "$work/s" --seq-len 256 --batch-size 16 2>&1 | rate)
        echo "round $r $side: pack $p tok/s, score $s tok/s"
        runs[$side-pack]+="$p "
        runs[$side-score]+="$s "
    done
done
median() { tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
for kind in pack score; do
    o=$(echo "${runs[old-$kind]}" | median) n=$(echo "${runs[new-$kind]}" | median)
    echo "$kind: median old $o tok/s, new $n tok/s, new/old $(awk -v a="$n" -v b="$o" 'BEGIN {printf "%.3f", a / b}')"
done
