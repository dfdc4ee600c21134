#!/usr/bin/env python3
"""Reference losses for tests/fixtures/gguf/llama-mixed.gguf (written by
`cargo run --release -p shared --example make_gguf_fixture`): transformers
reads the file itself (gguf_file=..., dequantized by gguf-py's numpy code,
llama.cpp's q/k permutation undone by transformers), so every tensor type
in it (F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q4_K, Q6_K) is checked against
an independent dequantizer.

    .venv-fixtures/bin/python scripts/make_gguf_fixture.py

Writes input_ids.json (2 x 64 ids) and losses_f64.json / losses_f32.json
(2 x 63) next to the file; losses[b][j] is the loss of input_ids[b][j+1].
"""

import json
import os

import torch
import transformers as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DIR = os.path.join(ROOT, "tests", "fixtures", "gguf")
NAME = "llama-mixed.gguf"


def main():
    model = T.AutoModelForCausalLM.from_pretrained(
        DIR, gguf_file=NAME, dtype=torch.float32, attn_implementation="eager").eval()
    g = torch.Generator().manual_seed(77)
    ids = torch.randint(0, model.config.vocab_size, (2, 64), generator=g)
    for name, dtype in [("f32", torch.float32), ("f64", torch.float64)]:
        m = model.to(dtype)
        with torch.no_grad():
            logits = m(input_ids=ids).logits
        ce = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2).to(torch.float64), ids[:, 1:], reduction="none")
        json.dump(ce.tolist(), open(os.path.join(DIR, f"losses_{name}.json"), "w"))
        print(name, "mean loss", ce.mean().item())
    json.dump(ids.tolist(), open(os.path.join(DIR, "input_ids.json"), "w"))


if __name__ == "__main__":
    main()
