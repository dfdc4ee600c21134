#!/usr/bin/env bash
# The Python package's reader (`rho1.ScoreSet.batches`, numpy arrays out)
# against the trainer's (`trainer read-bench`), on the same synthetic score
# set, side by side in one run: one epoch of global batches of 64 windows at
# 1 and 2 read threads, three rounds, alternating. Python does what
# read-bench does with each batch (sums the token ids).
#
# Usage: bench/python_reader.sh [TOKENS]   (default 100,000,000; `scorer synth`)
# Builds the release wheel into .venv-bench-py (maturin, numpy: tests/requirements-python.txt).
set -euo pipefail
cd "$(dirname "$0")/.."
tokens=${1:-100000000}
work=${RHO1_BENCH_WORK:-/tmp/rho1-python-bench}
venv=.venv-bench-py
cargo build --release -q -p scorer -p trainer
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q --require-hashes -r tests/requirements-python.txt
fi
PATH="$PWD/$venv/bin:$PATH" "$venv/bin/pip" install -q --no-build-isolation --no-deps --force-reinstall ./python
mkdir -p "$work"
# data/clean_train packed with the scorer's default layout (seq_len 256, row
# groups of 65,536 tokens), repeated by synth with ref_loss from a random stream.
source="$work/source"
[ -f "$source/manifest.json" ] || ./target/release/scorer pack --tokenizer tests/fixtures/scoreset-v1/tokenizer.json \
  --corpus data/clean_train.jsonl.zst --seq-len 256 --out "$source" 2>/dev/null
set_dir="$work/set-$tokens"
[ -f "$set_dir/manifest.json" ] || ./target/release/scorer synth --set "$source" --tokens "$tokens" --out "$set_dir" 2>/dev/null

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') (model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) cores; set: $tokens tokens, $(du -sh "$set_dir" | cut -f1); commit $(git rev-parse --short HEAD)"
printf "%-8s %-8s %-7s %14s %10s %9s\n" round reader threads tokens/s batches/s seconds
for round in 1 2 3; do
  for threads in 1 2; do
    j=$(timeout 1800 ./target/release/trainer read-bench --data "$set_dir" --batch-size 64 --read-threads "$threads" --json 2>/dev/null)
    python3 -c 'import json,sys; j=json.loads(sys.argv[1]); b=j["tokens"]/256/64; print("%-8s %-8s %-7s %14.0f %10.1f %9.2f" % (sys.argv[2], "rust", j["read_threads"], j["tokens_per_s"], b/j["seconds"], j["seconds"]))' "$j" "$round"
    timeout 1800 "$venv/bin/python" - "$set_dir" "$threads" "$round" <<'PY'
import sys, time
import rho1
path, threads, rnd = sys.argv[1], int(sys.argv[2]), sys.argv[3]
s = rho1.ScoreSet(path)
t0 = time.perf_counter()
n = checksum = 0
# read-bench reads exactly one epoch: ceil(windows / 64) steps, the last one short;
# here every step is full (the trainer's steps), so count the tokens handed out
for b in s.batches(64, 0, epochs=1, read_threads=threads):
    checksum += int(b["tokens"].sum())
    n += b["tokens"].size
    _ = b["ref_loss"]
secs = time.perf_counter() - t0
print("%-8s %-8s %-7s %14.0f %10.1f %9.2f" % (rnd, "python", threads, n / secs, n / 256 / 64 / secs, secs))
PY
  done
done
