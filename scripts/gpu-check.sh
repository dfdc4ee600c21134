#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU and prebuilt CUDA binaries
# (scripts/build-cuda.sh). Run from a checkout of this repository (it reads
# tests/fixtures and data/); takes under 5 minutes on an H100/H200.
#
#   scripts/gpu-check.sh DIR_WITH_SCORER_AND_TRAINER [OUT_DIR]
#
# 1. nvidia-smi and the CUDA libraries the binaries find;
# 2. the golden fixtures scored on the GPU: f32 must match transformers'
#    losses to 1e-4 (exit 1 otherwise), bf16 is reported;
# 3. a ~100M-parameter random Llama (hidden 768, 14 layers, seq_len 1024,
#    batch 16): scoring tok/s in f32 and bf16 with the model FLOP
#    utilisation against the GPU's peak, 20 CLM and 20 SLM trainer steps
#    with tok/s and the SLM/CLM step ratio; one table at the end.
#
# DEVICE=cpu SMALL=1 runs the same steps on the CPU with a small model (a
# smoke test of the script itself on a machine without a GPU).
set -euo pipefail
BIN=$(cd "${1:?usage: $0 BIN_DIR [OUT_DIR]}" && pwd)
cd "$(dirname "$0")/.."
OUT=${2:-$(mktemp -d)}
mkdir -p "$OUT"
DEVICE=${DEVICE:-cuda:0}
S=$BIN/scorer
T=$BIN/trainer
F=tests/fixtures
fail=0

echo "== GPU and libraries"
if command -v nvidia-smi >/dev/null; then
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv || true
  nvidia-smi | head -4 | tail -2 || true
  GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader | head -1)
else
  echo "nvidia-smi: not found"
  GPU=none
fi
ldconfig -p 2>/dev/null | grep -E 'libcuda\.so|libcudart|libcublas|libcurand|libnvrtc' || echo "ldconfig: no CUDA libraries listed"
ldd "$S" | grep -E 'cuda|cublas|curand|nvrtc' || true

echo "== golden fixtures on $DEVICE"
parity_rows=""
for m in llama-gqa llama-mha families/llama3 families/llama-linear families/mistral families/qwen2 families/qwen3 gguf/llama-mixed.gguf; do
  model=$F/$m
  data=$F/$m
  [ -f "$model" ] && data=$(dirname "$model")
  for dtype in f32 bf16; do
    tol=1e-4
    [ "$dtype" = bf16 ] && tol=1
    if line=$("$S" parity --model "$model" --ids "$data/input_ids.json" --losses "$data/losses_f64.json" \
      --device "$DEVICE" --dtype "$dtype" --tolerance "$tol" 2>"$OUT/parity.err"); then :; else
      echo "FAILED: $m $dtype: $(tail -1 "$OUT/parity.err")"
      fail=1
      line=$(head -1 <<<"$line")
    fi
    echo "$line"
    max=$(sed -n 's/.*"max_abs_diff":\([^,]*\).*/\1/p' <<<"$line")
    mean=$(sed -n 's/.*"mean_abs_diff":\([^,]*\).*/\1/p' <<<"$line")
    parity_rows+="$(printf '| %s | %s | %s | %s |' "$m" "$dtype" "${max:-?}" "${mean:-?}")"$'\n'
  done
done

echo "== ~100M-parameter model on $DEVICE"
if [ -n "${SMALL:-}" ]; then
  H=128 L=2 I=352 N=4 SEQ=256 B=4 STEPS=3
else
  H=768 L=14 I=2048 N=12 SEQ=1024 B=16 STEPS=20
fi
cat > "$OUT/model.json" <<EOF
{"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 1024,
 "hidden_size": $H, "intermediate_size": $I, "num_hidden_layers": $L,
 "num_attention_heads": $N, "num_key_value_heads": $N, "rms_norm_eps": 1e-5,
 "rope_theta": 10000.0, "max_position_embeddings": $SEQ, "tie_word_embeddings": false}
EOF
# Windows of SEQ tokens with reference losses (any model of the same
# vocabulary gives them; the fixture's is the fastest).
"$S" tokenizer --corpus data/clean_train.jsonl.zst --vocab-size 1024 --out "$OUT/tokenizer.json" 2>/dev/null
"$S" score --model $F/llama-gqa --tokenizer "$OUT/tokenizer.json" --corpus data/noisy_web.jsonl.zst data/clean_train.jsonl.zst \
  --seq-len "$SEQ" --out "$OUT/set" --device "$DEVICE" 2>"$OUT/score.log" || { cat "$OUT/score.log"; exit 1; }
for dtype in f32 bf16; do
  "$T" bench --data "$OUT/set" --model-size "$OUT/model.json" --batch-size "$B" --steps "$STEPS" \
    --device "$DEVICE" --dtype "$dtype" --json > "$OUT/bench-$dtype.json" 2>"$OUT/bench-$dtype.err" \
    || { echo "FAILED: trainer bench $dtype: $(tail -3 "$OUT/bench-$dtype.err")"; fail=1; }
done

# Dense peak FLOP/s of the GPU (vendor figures, no sparsity): f32 (not TF32), bf16.
case "$GPU" in
  *H200* | *H100*SXM* | *"H100 80GB HBM3"*) PEAK_F32=67e12 PEAK_BF16=989e12 ;;
  *H100*) PEAK_F32=51e12 PEAK_BF16=756e12 ;;
  *A100*) PEAK_F32=19.5e12 PEAK_BF16=312e12 ;;
  *L40S*) PEAK_F32=91.6e12 PEAK_BF16=362e12 ;;
  *L4*) PEAK_F32=30.3e12 PEAK_BF16=121e12 ;;
  *) PEAK_F32=0 PEAK_BF16=0 ;;
esac

field() { sed -n "s/.*\"$2\":{\"max_s\":[^,]*,\"median_s\":\([^,]*\),.*/\1/p;s/.*\"$2\":\([0-9.e+-]*\).*/\1/p" "$1" | head -1; }
echo
echo "## GPU check: $GPU ($DEVICE), $(date -u +%Y-%m-%d)"
echo
echo "| fixture | dtype | max abs diff vs transformers | mean abs diff |"
echo "|---|---|---:|---:|"
printf '%s' "$parity_rows"
echo
echo "Model: $(sed -n 's/.*"params":\([0-9]*\).*/\1/p' "$OUT/bench-f32.json" 2>/dev/null) parameters, batch $B x $SEQ."
echo
echo "| dtype | scoring tok/s | scoring MFU | CLM tok/s | SLM tok/s | SLM/CLM step | CLM MFU |"
echo "|---|---:|---:|---:|---:|---:|---:|"
for dtype in f32 bf16; do
  j=$OUT/bench-$dtype.json
  [ -s "$j" ] || { echo "| $dtype | failed | | | | | |"; continue; }
  peak=$PEAK_F32; [ "$dtype" = bf16 ] && peak=$PEAK_BF16
  awk -v tok="$(field "$j" tokens_per_step)" -v sc="$(field "$j" score_s)" -v sf="$(field "$j" score_flops_per_step)" \
      -v c="$(field "$j" clm)" -v s="$(field "$j" slm)" -v tf="$(field "$j" train_flops_per_step)" -v peak="$peak" -v d="$dtype" '
    function mfu(f, t) { return peak > 0 ? sprintf("%.1f%%", 100 * f / t / peak) : "n/a" }
    BEGIN { printf "| %s | %.0f | %s | %.0f | %.0f | %.3f | %s |\n", d, tok / sc, mfu(sf, sc), tok / c, tok / s, s / c, mfu(tf, c) }'
done
echo
echo "Peak used for MFU: f32 $PEAK_F32, bf16 $PEAK_BF16 FLOP/s (dense). Files in $OUT."
exit $fail
