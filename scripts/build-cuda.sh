#!/usr/bin/env bash
# CUDA-enabled `scorer` and `trainer`, built on a machine without a GPU or a
# system CUDA toolkit (see ../docs/gpu.md).
#
#   scripts/build-cuda.sh          # release binaries in target/cuda/release
#   scripts/build-cuda.sh check    # `cargo check` of the cuda feature only (CI)
#
# The toolkit comes from PyPI's CUDA 13 wheels (a complete nvcc), pinned, in
# the ignored folder .cuda/ and reused when present. No wheel ships the
# driver's libcuda.so, so a link stub with its soname (libcuda.so.1) is made
# from the symbols cudarc declares; on the GPU machine the real driver's
# library is loaded instead. CUDA_COMPUTE_CAP picks the GPU architecture of
# candle's kernels (default 90: H100/H200).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
MODE=${1:-build}
case "$MODE" in build | check) ;; *) echo "usage: $0 [build|check]" >&2; exit 2 ;; esac
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}

TK=$ROOT/.cuda
PINS=$ROOT/scripts/pins/cuda.txt # versions and SHA-256 of every wheel
stamp=$TK/installed-$(sha256sum < "$PINS" | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "installing the CUDA 13 toolkit wheels into $TK (~1.2 GB, once)" >&2
  rm -rf "$TK/venv"
  python3 -m venv "$TK/venv"
  "$TK/venv/bin/pip" install -q --disable-pip-version-check --no-deps --require-hashes -r "$PINS"
  touch "$stamp"
fi
CUDA_HOME=$(echo "$TK"/venv/lib/python3*/site-packages/nvidia/cu13)
[ -x "$CUDA_HOME/bin/nvcc" ] || { echo "no nvcc in $CUDA_HOME" >&2; exit 1; }
export CUDA_HOME PATH="$CUDA_HOME/bin:$PATH"

# Unversioned names for the linker (the wheels ship libfoo.so.13 only).
for lib in cudart cublas cublasLt curand nvrtc; do
  real=$(cd "$CUDA_HOME/lib" && ls "lib$lib.so."* 2>/dev/null | grep -E "^lib$lib\.so\.[0-9]+$" | head -1)
  [ -n "$real" ] || { echo "no lib$lib.so.* in $CUDA_HOME/lib" >&2; exit 1; }
  ln -sf "$real" "$CUDA_HOME/lib/lib$lib.so"
done

# libcuda stub: every cu* function cudarc's driver bindings declare, each
# returning CUDA_ERROR_NO_DEVICE (100). It satisfies the linker here, and on a
# machine without a driver it lets the binaries start (--device cpu works,
# --device cuda:N is a clear error); on a GPU machine the driver's own
# libcuda.so.1 is used instead.
stub=$CUDA_HOME/lib/stubs/libcuda.so
if [ ! -f "$stub" ] || ! grep -q "return 100" "$CUDA_HOME/lib/stubs/stub.c" 2>/dev/null; then
  cargo fetch -q
  crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/cudarc-"$(awk '/name = "cudarc"/{getline; gsub(/[^0-9.]/,""); print; exit}' Cargo.lock)".crate | head -1)
  src=$(mktemp -d)
  tar xzf "$crate" -C "$src"
  mkdir -p "$CUDA_HOME/lib/stubs"
  grep -ho '^pub unsafe fn cu[A-Za-z0-9_]*' "$src"/cudarc-*/src/driver/sys/mod.rs \
    | sed 's/^pub unsafe fn //' | sort -u | sed 's/.*/int &(void) { return 100; }/' > "$src/stub.c"
  gcc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$stub" "$src/stub.c"
  ln -sf libcuda.so "$CUDA_HOME/lib/stubs/libcuda.so.1"
  cp "$src/stub.c" "$CUDA_HOME/lib/stubs/stub.c"
  echo "libcuda stub $stub: $(wc -l < "$src/stub.c") symbols" >&2
  rm -rf "$src"
fi
export LIBRARY_PATH="$CUDA_HOME/lib:$CUDA_HOME/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export RUSTFLAGS="${RUSTFLAGS:-} -L native=$CUDA_HOME/lib -L native=$CUDA_HOME/lib/stubs"

TARGET=$ROOT/target/cuda
if [ "$MODE" = check ]; then
  cargo check --release --features scorer/cuda,trainer/cuda -p scorer -p trainer --target-dir "$TARGET"
  echo "cuda feature: cargo check passed (compute capability $CUDA_COMPUTE_CAP)" >&2
  exit 0
fi
cargo build --release --features scorer/cuda,trainer/cuda -p scorer -p trainer --target-dir "$TARGET"
for b in scorer trainer; do strip "$TARGET/release/$b"; done
mkdir -p "$TARGET/release/no-gpu"
cp "$stub" "$TARGET/release/no-gpu/libcuda.so.1"
# One file to copy to a GPU machine: the two binaries share most of their
# bytes (candle's kernels), which zstd's long window finds.
bundle=$TARGET/rho1-cuda-sm$CUDA_COMPUTE_CAP.tar.zst
tar -C "$TARGET/release" -cf - scorer trainer no-gpu | zstd -q -19 --long=27 -f -o "$bundle"
cat >&2 <<EOF

CUDA binaries (compute capability $CUDA_COMPUTE_CAP), stripped:
$(ls -l "$TARGET/release/scorer" "$TARGET/release/trainer")
Both in one file: $bundle ($(du -m "$bundle" | cut -f1) MB; unpack with
  zstd -dc --long=27 $(basename "$bundle") | tar -xf -).
They need on the GPU machine: an NVIDIA driver >= 580 (CUDA 13; nvidia-smi
says "CUDA Version: 13.x"), and libcudart.so.13, libcublas.so.13,
libcublasLt.so.13, libcurand.so.10, libnvrtc.so.13 on the loader path (for
instance LD_LIBRARY_PATH=$CUDA_HOME/lib). Check them with
scripts/gpu-check.sh $TARGET/release.
On a machine without a driver they start only with the stub:
  LD_LIBRARY_PATH=$TARGET/release/no-gpu:$CUDA_HOME/lib $TARGET/release/scorer ... --device cpu
EOF
