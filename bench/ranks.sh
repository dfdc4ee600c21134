#!/usr/bin/env bash
# Data-parallel training on this machine, side by side in one run: one
# process with 2 threads against 2 MPI ranks with 1 thread each, the same
# global batch and steps (SLM, a synthetic scored set of windows of 256).
# Prints step time and tokens/s (medians over the steps after the first 3),
# and for 2 ranks the collectives' share of the step and the all-reduce's
# bandwidth (rank 0's count: time in collectives includes waiting for the
# other rank).
#
# Usage: bench/ranks.sh [MODEL_SIZE] [STEPS]   (default: small 30)
# Needs Open MPI (libopenmpi-dev, openmpi-bin) and libclang-dev.
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-small}
steps=${2:-30}
work=${RHO1_BENCH_WORK:-/tmp/rho1-ranks-bench}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
cargo build --release -q -p scorer -p trainer --features trainer/mpi
mkdir -p "$work"
source="$work/source"
[ -f "$source/manifest.json" ] || ./target/release/scorer pack --tokenizer tests/fixtures/scoreset-v1/tokenizer.json \
  --corpus data/clean_train.jsonl.zst --seq-len 256 --out "$source" 2>/dev/null
set_dir="$work/set"
[ -f "$set_dir/manifest.json" ] || ./target/release/scorer synth --set "$source" --tokens 4000000 --out "$set_dir" 2>/dev/null
args=(train --data "$set_dir" --model-size "$size" --objective slm --batch-size 16 --max-steps "$steps"
      --eval-every 0 --checkpoint-every 0 --seed 1)
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') (model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) cores; model $size, global batch 16 x 256 tokens, $steps steps; commit $(git rev-parse --short HEAD)"
summary() {  # run dir, label, stderr file
  python3 - "$1" "$2" "$3" <<'PY'
import json, re, statistics, sys
run, label, err = sys.argv[1:]
steps = [json.loads(l) for l in open(run + "/metrics.jsonl")]
steps = [s for s in steps if "step_ms" in s][3:]
ms = statistics.median(s["step_ms"] for s in steps)
tps = statistics.median(s["tokens_per_s"] for s in steps)
line = f"{label:<22} {ms:9.1f} {tps:11.0f}"
m = re.search(r"collectives: (\d+) calls, ([\d.]+) s \(([\d.]+) ms a step\), ([\d.]+) MB summed, ([\d.]+) MB gathered", open(err).read())
if m:
    per_step, summed = float(m.group(3)), float(m.group(4))
    n = len(steps) + 3
    line += f" {per_step:10.1f} {100 * per_step / ms:7.1f}% {summed / n:9.2f} {summed / n / (per_step / 1e3) / 1e3:9.2f}"
print(line)
PY
}
printf "%-22s %9s %11s %10s %8s %9s %9s\n" config step_ms tokens/s coll_ms share MB/step GB/s
for round in 1 2; do
  rm -rf "$work/one" "$work/two"
  RAYON_NUM_THREADS=2 timeout 1800 ./target/release/trainer --threads 2 "${args[@]}" --out "$work/one" 2>"$work/one.err"
  summary "$work/one" "1 process x 2 threads" "$work/one.err"
  timeout 1800 mpirun --oversubscribe --bind-to none -np 2 -x RAYON_NUM_THREADS=1 \
    ./target/release/trainer --threads 1 "${args[@]}" --out "$work/two" 2>"$work/two.err"
  summary "$work/two" "2 ranks x 1 thread" "$work/two.err"
done
