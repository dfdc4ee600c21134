#!/usr/bin/env bash
# Intel MKL from PyPI wheels, two ways (nothing is installed system-wide):
#
#   bash scripts/fetch-mkl.sh --runtime   # shared libraries (~550 MB) into .cache/mkl-rt/lib
#   RHO1_MKL_DIR=$PWD/.cache/mkl-rt/lib target/release/trainer ...
#
# The default build loads them at run time on Intel CPUs (shared/src/kernels/blas.rs:
# RHO1_GEMM=auto|mkl|builtin); `pip install mkl==2024.2.0 intel-openmp==2024.2.0`
# into the active virtual environment works as well, with no RHO1_MKL_DIR.
#
#   bash scripts/fetch-mkl.sh             # static libraries (~500 MB) into .cache/mkl
#   MKLROOT=$PWD/.cache/mkl cargo build --release --features mkl
#
# for the optional `mkl` cargo feature (candle's sgemm and vector math linked
# against MKL). Prints the folder to use. Without either, the pure-Rust `gemm`
# crate does the matmuls.
#
# Licences: mkl, mkl-static and mkl-include are under the Intel Simplified
# Software License; intel-openmp (libiomp5) under Intel's developer-tools EULA.
# A binary built with --features mkl links them statically: read both before
# you ship one.
set -euo pipefail
cd "$(dirname "$0")/.."
ver=2024.2.0 # the version PyTorch's CI pins
if [ "${1:-}" = "--runtime" ]; then
  lib=$PWD/.cache/mkl-rt/lib
  if [ -f "$lib/libmkl_rt.so.2" ] && [ -f "$lib/libiomp5.so" ]; then
    echo "$lib"
    exit 0
  fi
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  python3 -m pip download -q --no-deps --only-binary=:all: --require-hashes \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --python-version 3.11 \
    -r scripts/pins/mkl-runtime.txt -d "$tmp" # $ver, pinned by SHA-256
  for w in "$tmp"/*.whl; do python3 -m zipfile -e "$w" "$tmp/x"; done
  rm -rf "$lib.tmp"
  mkdir -p "$lib.tmp"
  cp "$tmp"/x/mkl-*.data/data/lib/*.so* "$lib.tmp/"
  cp "$tmp"/x/intel_openmp-*.data/data/lib/libiomp5.so "$lib.tmp/"
  rm -rf "$lib"
  mv "$lib.tmp" "$lib"
  echo "$lib"
  exit 0
fi
root=$PWD/.cache/mkl
if [ -f "$root/lib/libmkl_core.a" ] && [ -f "$root/lib/libiomp5.a" ] && [ -f "$root/include/mkl.h" ]; then
  echo "$root"
  exit 0
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m pip download -q --no-deps --only-binary=:all: --require-hashes \
  --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 --python-version 3.11 \
  -r scripts/pins/mkl-static.txt -d "$tmp" # $ver, pinned by SHA-256
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
