#!/usr/bin/env bash
# Peak memory per rank with and without --shard-optimizer (ZeRO-1), 2 ranks
# under mpirun, side by side in one run: the medium model (hidden 512, 8
# layers), 5 SLM steps on the checked-in score set. Two figures a rank: the
# peak while training (the trainer's own line, read before the final
# checkpoint) and over the whole run (/usr/bin/time: rank 0 then also
# holds every moment gathered for the checkpoint it writes).
#
# Usage: bench/zero_memory.sh [MODEL_SIZE]   (default medium)
set -euo pipefail
cd "$(dirname "$0")/.."
size=${1:-medium}
work=${RHO1_BENCH_WORK:-/tmp/rho1-zero-bench}
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_btl_vader_single_copy_mechanism=none
cargo build --release -q -p trainer --features trainer/mpi
mkdir -p "$work"
echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') (model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) cores; model $size; commit $(git rev-parse --short HEAD)"
printf "%-20s %16s %16s %14s %14s\n" config train_rank0_MB train_rank1_MB run_rank0_MB run_rank1_MB
for flag in "" --shard-optimizer; do
  rm -rf "$work/run"
  W="$work" timeout 1800 mpirun --oversubscribe --bind-to none -np 2 -x RAYON_NUM_THREADS=1 -x W \
    sh -c '/usr/bin/time -f "peak-rss %M" -o "$W/rss.$OMPI_COMM_WORLD_RANK" "$@"' sh \
    ./target/release/trainer train --data tests/fixtures/scoreset-v1 --model-size "$size" --objective slm \
    --batch-size 4 --max-steps 5 --eval-every 0 --checkpoint-every 0 --out "$work/run" $flag 2>"$work/err" || { cat "$work/err"; exit 1; }
  train=$(sed -n 's/^peak RSS per rank before the final checkpoint: \(.*\) MB$/\1/p' "$work/err")
  printf "%-20s %16s %16s %14s %14s\n" "${flag:-unsharded}" "${train%%,*}" "${train##*, }" \
    "$(awk '{printf "%.0f", $2/1024}' "$work/rss.0")" "$(awk '{printf "%.0f", $2/1024}' "$work/rss.1")"
done
