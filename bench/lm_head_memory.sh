#!/bin/bash
# Peak memory of the composed LM head + loss, forward and backward, at
# Qwen2.5's vocabulary (151,936): the (N, V) logits as graph nodes ("whole",
# the path before model::loss::lm_head_losses) against row chunks ("chunked"),
# with the fused CPU kernel ("fused") for reference.
# Usage: bench/lm_head_memory.sh [N] [C] [V]   (defaults 2048 256 151936)
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p shared --example lm_head_memory
bin=target/release/examples/lm_head_memory
lscpu | grep -m1 "Model name" || true
for mode in whole chunked fused; do
  $bin $mode "${@}"
done > "${TMPDIR:-/tmp}/lm_head_memory.jsonl"
python3 - "${TMPDIR:-/tmp}/lm_head_memory.jsonl" <<'PY'
import json, sys
r = {d["mode"]: d for d in map(json.loads, open(sys.argv[1]))}
w = r["whole"]
print("N=%d C=%d V=%d" % (w["n"], w["c"], w["v"]))
for m in ("whole", "chunked", "fused"):
    d = r[m]
    print("%-8s peak %6.0f MiB (%5.0f above the inputs), %.1f s, mean loss %.7f, |grad W|^2 %.9e, peak whole/this %.1fx"
          % (m, d["peak_mib"], d["peak_mib"] - d["setup_peak_mib"], d["seconds"], d["loss"], d["grad_w_sq"],
             w["peak_mib"] / d["peak_mib"]))
PY
