#!/usr/bin/env python3
"""Tiny random checkpoints of each supported model family, made by
transformers, with the per-token losses transformers computes for fixed
token ids: tests/fixtures/families/<name>/.

    python3 -m venv .venv-fixtures
    .venv-fixtures/bin/pip install torch==2.15.0 transformers==5.24.0 safetensors
    .venv-fixtures/bin/python scripts/make_family_fixtures.py

Each folder holds config.json and model.safetensors (save_pretrained,
float32), input_ids.json (4 x 64 ids), losses_f64.json (4 x 63, the model in
float64, eager attention) and losses_f32.json. losses[b][j] is the
cross-entropy (natural log) of input_ids[b][j+1] given input_ids[b][0..=j].
Weights are N(0, 0.1); norm gains 1 + 0.1 N(0, 1) and biases 0.1 N(0, 1),
so a loader that skips either fails. Vocabulary 1024, hidden 64, 2 layers,
4 heads over 2 KV heads: small enough to commit, and every family option
(rotary scaling, biases, q/k norms, head_dim != hidden / heads, tied and
untied heads, a sliding window) changes the losses. llama-bf16 and qwen2-f16
are llama-linear and qwen2 saved in bfloat16 / float16, with the losses of
the rounded weights.
"""

import json
import os
import sys

import torch
import transformers as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "families")
COMMON = dict(
    vocab_size=1024,
    hidden_size=64,
    intermediate_size=176,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=512,
    rms_norm_eps=1e-5,
)

FAMILIES = {
    # Llama 3.x rotary scaling with a short original context so that the
    # ramp and the scaled band both fall inside 64 positions; q/k/v/o biases;
    # head_dim 24 != 64 / 4.
    "llama3": (T.LlamaConfig, T.LlamaForCausalLM, dict(
        head_dim=24, attention_bias=True, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="llama3", rope_theta=500000.0, factor=8.0,
                             low_freq_factor=1.0, high_freq_factor=4.0,
                             original_max_position_embeddings=16))),
    # Linear position interpolation, tied head.
    "llama-linear": (T.LlamaConfig, T.LlamaForCausalLM, dict(
        tie_word_embeddings=True,
        rope_parameters=dict(rope_type="linear", rope_theta=10000.0, factor=4.0))),
    # A sliding window longer than the test's windows: exact.
    "mistral": (T.MistralConfig, T.MistralForCausalLM, dict(
        sliding_window=128, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
    # q/k/v biases (not o), tied head like Qwen2.5-0.5B.
    "qwen2": (T.Qwen2Config, T.Qwen2ForCausalLM, dict(
        tie_word_embeddings=True,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
    # Per-head q/k RMSNorm, head_dim 24.
    "qwen3": (T.Qwen3Config, T.Qwen3ForCausalLM, dict(
        head_dim=24, tie_word_embeddings=False,
        rope_parameters=dict(rope_type="default", rope_theta=1000000.0))),
}
# Checkpoints saved in half precision (most Hugging Face checkpoints): they
# must load and score in f32; the losses are those of the rounded weights.
HALF = {"llama-bf16": ("llama-linear", torch.bfloat16), "qwen2-f16": ("qwen2", torch.float16)}


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            noise = torch.randn(p.shape, generator=g, dtype=torch.float64)
            if name.endswith("bias"):
                p.copy_(0.1 * noise)
            elif p.dim() == 1:
                p.copy_(1.0 + 0.1 * noise)
            else:
                p.copy_(0.1 * noise)


def losses(model_cls, d, ids, dtype):
    """What transformers computes after loading the saved files, in `dtype`
    (rotary tables are rebuilt at load, as for any checkpoint)."""
    m = model_cls.from_pretrained(d, dtype=dtype, attn_implementation="eager").eval()
    with torch.no_grad():
        logits = m(input_ids=ids).logits
    ce = torch.nn.functional.cross_entropy(
        logits[:, :-1].transpose(1, 2).to(torch.float64), ids[:, 1:], reduction="none")
    return ce


def main():
    torch.manual_seed(0)
    order = list(FAMILIES)
    for name in order + list(HALF):
        family, save_dtype = HALF.get(name, (name, torch.float32))
        i = order.index(family)
        cfg_cls, model_cls, extra = FAMILIES[family]
        cfg = cfg_cls(**COMMON, **extra)
        cfg._attn_implementation = "eager"
        model = model_cls(cfg).eval()
        randomise(model, 1000 + i)
        model = model.to(save_dtype)  # the weights as saved (rounded to half precision)
        g = torch.Generator().manual_seed(2000 + i)
        ids = torch.randint(0, cfg.vocab_size, (4, 64), generator=g)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        f32 = losses(model_cls, d, ids, torch.float32)
        f64 = losses(model_cls, d, ids, torch.float64)
        with open(os.path.join(d, "input_ids.json"), "w") as f:
            json.dump(ids.tolist(), f)
        with open(os.path.join(d, "losses_f64.json"), "w") as f:
            json.dump(f64.tolist(), f)
        with open(os.path.join(d, "losses_f32.json"), "w") as f:
            json.dump(f32.tolist(), f)
        print(f"{name}: mean loss {f64.mean().item():.6f}, "
              f"max |f32 - f64| {(f32 - f64).abs().max().item():.2e}", file=sys.stderr)
    meta = {"torch": torch.__version__, "transformers": T.__version__,
            "families": list(FAMILIES), "half_precision": {k: str(v[1]) for k, v in HALF.items()}}
    with open(os.path.join(OUT, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


if __name__ == "__main__":
    main()
