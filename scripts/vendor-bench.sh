#!/usr/bin/env bash
# Each vendor patch measured on candle alone (vendor/bench/main.rs): builds
# the bench against upstream candle-core 0.11.1 and against each prefix of
# vendor/patches/, then runs them interleaved (ROUNDS times each) so that
# drift on a shared machine hits every level alike. Figures in vendor/README.md.
#   scripts/vendor-bench.sh [ROUNDS]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
rounds=${1:-3}
work=${VENDOR_BENCH_DIR:-$(mktemp -d)}
levels="0000 0001 0002 0003"
for n in $levels; do
    d=$work/$n
    if [ ! -x "$d/target/release/vendor-bench" ]; then
        rm -rf "$d"
        mkdir -p "$d/src"
        bash "$root/scripts/vendor-patches.sh" stage "$n" "$d/candle-core"
        cp "$root/vendor/bench/main.rs" "$d/src/main.rs"
        printf '[package]\nname = "vendor-bench"\nversion = "0.0.0"\nedition = "2021"\n[workspace]\n[dependencies]\ncandle-core = { path = "candle-core" }\n# the gemm kernels the project builds (x86-v4: AVX-512)\ngemm = { version = "0.19", default-features = false, features = ["std", "rayon", "x86-v4"] }\n[profile.release]\ncodegen-units = 16\n' >"$d/Cargo.toml"
        (cd "$d" && cargo build -q --release)
    fi
done
lscpu | grep -m1 'Model name' || true
for r in $(seq "$rounds"); do
    for n in $levels; do
        printf 'round %s, patches up to %s: ' "$r" "$n"
        "$work/$n/target/release/vendor-bench"
    done
done
