#!/usr/bin/env bash
# The vendored candle-core is crates.io's candle-core 0.11.1 plus the patch
# series in vendor/patches/ (vendor/README.md). This script rebuilds it from
# the registry and compares:
#
#   scripts/vendor-patches.sh check          pristine + every patch == vendor/candle-core
#   scripts/vendor-patches.sh stage N DIR    pristine + patches 0000..N into DIR
#
# The pristine crate comes through cargo (so from the registry or the local
# cache) and is checked against the sha256 that crates.io publishes for it.
set -euo pipefail

VERSION=0.11.1
SHA256=d11c8be87cfbaef9ebb62fb3f850d1fc8e00cc1d11d393fdbe55a4d5c2cdb325
root=$(cd "$(dirname "$0")/.." && pwd)

pristine() { # DIR: candle-core $VERSION, checked, without tests/benches/examples
    local out=$1 tmp
    tmp=$(mktemp -d)
    mkdir -p "$tmp/p/src"
    printf '[package]\nname = "p"\nversion = "0.0.0"\nedition = "2021"\n[dependencies]\ncandle-core = "=%s"\n' \
        "$VERSION" >"$tmp/p/Cargo.toml"
    : >"$tmp/p/src/lib.rs"
    (cd "$tmp/p" && cargo fetch -q)
    local crate
    crate=$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/candle-core-$VERSION.crate | head -n1)
    echo "$SHA256  $crate" | sha256sum -c --quiet - || {
        echo "error: $crate does not have the published sha256 $SHA256" >&2
        exit 1
    }
    mkdir -p "$out"
    tar xzf "$crate" -C "$tmp"
    rm -rf "$tmp/candle-core-$VERSION"/{tests,benches,examples}
    cp -a "$tmp/candle-core-$VERSION/." "$out/"
    rm -rf "$tmp"
}

apply_upto() { # DIR LAST
    local dir=$1 last=$2 p n
    for p in "$root"/vendor/patches/[0-9][0-9][0-9][0-9]-*.patch; do
        n=$(basename "$p" | cut -c1-4)
        [ "$((10#$n))" -le "$((10#$last))" ] || break
        patch -s -p1 -d "$dir" --no-backup-if-mismatch <"$p" || {
            echo "error: $(basename "$p") does not apply" >&2
            exit 1
        }
    done
}

case "${1:-check}" in
check)
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    pristine "$work/candle-core"
    apply_upto "$work/candle-core" 9999
    if diff -r "$work/candle-core" "$root/vendor/candle-core" >"$work/drift"; then
        echo "vendor/candle-core == candle-core $VERSION + vendor/patches ($(ls "$root"/vendor/patches/*.patch | wc -l) files)"
    else
        echo "error: vendor/candle-core differs from candle-core $VERSION + vendor/patches:" >&2
        cat "$work/drift" >&2
        exit 1
    fi
    ;;
stage)
    [ $# -eq 3 ] || { echo "usage: $0 stage N DIR" >&2; exit 2; }
    [ ! -e "$3" ] || { echo "error: $3 exists" >&2; exit 2; }
    pristine "$3"
    apply_upto "$3" "$2"
    ;;
*)
    echo "usage: $0 check | stage N DIR" >&2
    exit 2
    ;;
esac
