#!/usr/bin/env bash
# Builds the project against crates.io's candle-core 0.11.1, without the
# vendored copy and its patches (vendor/README.md): a copy of the tracked
# tree, the workspace's `[patch.crates-io]` table removed, the
# `upstream-candle` feature on. Same results, slower.
#   scripts/upstream-candle.sh check     cargo check of every target (CI)
#   scripts/upstream-candle.sh test      cargo test --workspace
# The build goes to target/upstream-candle (kept between runs).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
mode=${1:-check}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$root" && git ls-files -z --cached --others --exclude-standard | grep -zv '^vendor/candle-core/' |
    xargs -0 cp --parents -t "$work")
python3 - "$work/Cargo.toml" <<'PY'
import re, sys
p = sys.argv[1]
s = open(p).read()
out, n = re.subn(r"(?ms)^\[patch\.crates-io\]\n.*?(?=^\[|\Z)", "", s)
assert n == 1, "no [patch.crates-io] table in Cargo.toml"
open(p, "w").write(out)
PY
# What the tests use that git ignores: the duckdb venv, the fetched SmolLM2.
for d in .venv .cache; do
    [ ! -e "$root/$d" ] || ln -s "$root/$d" "$work/$d"
done
cd "$work"
export CARGO_TARGET_DIR="$root/target/upstream-candle"
features="shared/upstream-candle,scorer/upstream-candle,trainer/upstream-candle"
export RHO1_BIN_FEATURES=upstream-candle # tests/util's bin() builds scorer/trainer with it
case "$mode" in
check) cargo check --workspace --all-targets --features "$features" ;;
test) cargo test --workspace --features "$features" ;;
*) echo "usage: $0 check | test" >&2; exit 2 ;;
esac
if grep -q "path = \"vendor/candle-core\"" Cargo.toml || ! grep -A2 "name = \"candle-core\"" Cargo.lock | grep -q "source = \"registry"; then
    echo "error: the build did not use crates.io's candle-core" >&2
    exit 1
fi
echo "built ($mode) against crates.io candle-core $(grep -A1 'name = "candle-core"' Cargo.lock | sed -n 's/version = "\(.*\)"/\1/p')"
