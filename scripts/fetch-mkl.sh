#!/usr/bin/env bash
# Intel MKL (static, LP64, Intel OpenMP) from PyPI wheels into .cache/mkl/, for
# the optional `mkl` cargo feature (candle's sgemm and vector math through MKL):
#
#   bash scripts/fetch-mkl.sh          # ~500 MB under .cache/mkl, once
#   MKLROOT=$PWD/.cache/mkl cargo build --release --features mkl
#
# Prints the MKLROOT to use. Nothing is installed system-wide. The default
# build does not need this: without `--features mkl` the pure-Rust `gemm`
# crate does the matmuls.
#
# Licences: mkl-static / mkl-include are under the Intel Simplified Software
# License; intel-openmp (libiomp5.a) under Intel's developer-tools EULA. A
# binary built this way links them statically: read both before you ship one.
set -euo pipefail
cd "$(dirname "$0")/.."
ver=2024.2.0 # the version PyTorch's CI pins
root=$PWD/.cache/mkl
if [ -f "$root/lib/libmkl_core.a" ] && [ -f "$root/lib/libiomp5.a" ] && [ -f "$root/include/mkl.h" ]; then
  echo "$root"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --python-version 3.11 \
  "mkl-static==$ver" "mkl-include==$ver" "intel-openmp==$ver" -d "$tmp"
for w in "$tmp"/*.whl; do python3 -m zipfile -e "$w" "$tmp/x"; done
rm -rf "$root.tmp"
mkdir -p "$root.tmp/lib" "$root.tmp/include"
cp "$tmp"/x/mkl_static-*.data/data/lib/libmkl_{intel_lp64,intel_thread,core}.a "$root.tmp/lib/"
# The static OpenMP runtime only: a libiomp5.so under MKLROOT would be linked
# dynamically and then not found at run time.
cp "$tmp"/x/intel_openmp-*.data/data/lib/libiomp5.a "$root.tmp/lib/"
cp -a "$tmp"/x/mkl_include-*.data/data/include/. "$root.tmp/include/"
rm -rf "$root"
mv "$root.tmp" "$root"
echo "$root"
