#!/usr/bin/env bash
# Read throughput of one score set through the training reader (`trainer
# read-bench`: one epoch, batches copied out as a step takes them) from local
# disk and from a local S3-protocol server (moto, tests/requirements-moto.txt)
# side by side in one run, at 1, 2 and 4 read threads (requests in flight).
# moto is a single Python process: its figures bound what the reader does
# against a slow store, not what S3 gives.
#
# Usage: bench/bucket_read.sh [TOKENS]   (default 20,000,000; `scorer synth`)
set -euo pipefail
cd "$(dirname "$0")/.."
tokens=${1:-20000000}
work=${RHO1_BENCH_WORK:-/tmp/rho1-bucket-bench}
moto=${RHO1_MOTO_SERVER:-.venv/bin/moto_server}
[ -x "$moto" ] || { echo "no moto_server: pip install --require-hashes -r tests/requirements-moto.txt into .venv" >&2; exit 1; }
cargo build --release -q -p scorer -p trainer
mkdir -p "$work"
# The windows of data/clean_train packed with the scorer's default layout
# (seq_len 256, row groups of 65,536 tokens, shards of 2^20), repeated by synth.
source="$work/source"
[ -f "$source/manifest.json" ] || ./target/release/scorer pack --tokenizer tests/fixtures/scoreset-v1/tokenizer.json \
  --corpus data/clean_train.jsonl.zst --seq-len 256 --out "$source" 2>/dev/null
set_dir="$work/set-$tokens"
[ -f "$set_dir/manifest.json" ] || ./target/release/scorer synth --set "$source" --tokens "$tokens" --out "$set_dir" 2>/dev/null

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
timeout 3600 "$moto" -H 127.0.0.1 -p "$port" >"$work/moto.log" 2>&1 &
moto_pid=$!
trap 'kill $moto_pid 2>/dev/null || true' EXIT
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
export AWS_ENDPOINT_URL="http://127.0.0.1:$port" AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench-secret AWS_DEFAULT_REGION=us-east-1
curl -s -X PUT "http://127.0.0.1:$port/rho1-bench" >/dev/null
url="s3://rho1-bench/set"
./target/release/scorer sync "$set_dir" "$url" 2>/dev/null

echo "CPU: $(lscpu | sed -n 's/^Model name: *//p') (model $(lscpu | sed -n 's/^Model: *//p')), $(nproc) cores; set: $tokens tokens, $(du -sh "$set_dir" | cut -f1)"
row() {  # name, read-bench JSON
  python3 -c 'import json,sys; j=json.loads(sys.argv[1]); e=j["epoch_seconds"]; print("%-14s %-7s %12.0f %9.2f %9s" % (sys.argv[2], j["read_threads"], j["tokens_per_s"], e[0], "%.2f" % e[1] if len(e) > 1 else "-"))' "$2" "$1"
}
printf "%-14s %-7s %12s %9s %9s\n" source threads tokens/s epoch1_s epoch2_s
for threads in 1 2 4; do
  for src in "$set_dir" "$url"; do
    j=$(timeout 1800 ./target/release/trainer read-bench --data "$src" --read-threads "$threads" --json 2>/dev/null)
    row "$([ "$src" = "$url" ] && echo s3 || echo disk)" "$j"
  done
done
# --cache: the first epoch fetches each shard whole (hashed) into the cache, the second reads it from disk.
rm -rf "$work/cache"
j=$(timeout 1800 ./target/release/trainer read-bench --data "$url" --read-threads 2 --epochs 2 --cache "$work/cache" --json 2>/dev/null)
row "s3 --cache" "$j"
j=$(timeout 1800 ./target/release/trainer read-bench --data "$url" --read-threads 2 --epochs 2 --json 2>/dev/null)
row "s3" "$j"
