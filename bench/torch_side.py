"""The PyTorch side of `bench/run.py`: what a user would write instead of
this project, with transformers' LlamaForCausalLM in eager PyTorch on CPU.

Subcommands (each prints one JSON object on stdout):
  init   --config CONFIG.json --out DIR          a seeded random checkpoint
  score  --model DIR --set SET --windows N       forward + per-token CE
  train  --model DIR --set SET --steps N         CLM / SLM / online-ref SLM steps

Timings cover the work only (not imports or loading), like the Rust side's.
Run it in the venv that bench/run.py creates (torch, transformers, pyarrow).
"""

import argparse
import glob
import json
import os
import statistics
import sys
import time


def setup(threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    return torch


def load_windows(set_dir, seq_len):
    """token ids and ref_loss of the set's windows, as (W, T) tensors."""
    import pyarrow.parquet as pq
    import torch

    parts = sorted(glob.glob(os.path.join(set_dir, "part-*.parquet")))
    if not parts:
        sys.exit(f"{set_dir}: no part-*.parquet shards")
    toks, refs = [], []
    for p in parts:
        t = pq.read_table(p, columns=["token_id", "ref_loss"])
        toks.append(torch.tensor(t.column("token_id").to_numpy().astype("int64")))
        r = t.column("ref_loss").to_numpy(zero_copy_only=False)
        refs.append(torch.tensor(r.astype("float32")))
    ids = torch.cat(toks).view(-1, seq_len)
    ref = torch.cat(refs).view(-1, seq_len)
    return ids, ref


def load_model(torch, model_dir):
    from transformers import LlamaForCausalLM

    return LlamaForCausalLM.from_pretrained(model_dir, dtype=torch.float32)


def per_token_ce(torch, model, ids):
    logits = model(input_ids=ids[:, :-1]).logits  # (B, T-1, V)
    v = logits.shape[-1]
    ce = torch.nn.functional.cross_entropy(
        logits.reshape(-1, v), ids[:, 1:].reshape(-1), reduction="none"
    )
    return ce.view(ids.shape[0], -1)


def cmd_init(a):
    torch = setup(a.threads)
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(**json.load(open(a.config)))
    model = LlamaForCausalLM(cfg).to(torch.float32)
    model.save_pretrained(a.out, safe_serialization=True)
    n = sum(p.numel() for p in model.parameters())
    print(json.dumps({"params": n, "out": a.out}))


def cmd_score(a):
    torch = setup(a.threads)
    model = load_model(torch, a.model).eval()
    ids, ref = load_windows(a.set, a.seq_len)
    ids, ref = ids[: a.windows], ref[: a.windows]
    batches = [ids[i : i + a.batch] for i in range(0, len(ids), a.batch)]
    with torch.inference_mode():
        per_token_ce(torch, model, batches[0])  # warm-up
        out = []
        t0 = time.perf_counter()
        for b in batches:
            out.append(per_token_ce(torch, model, b))
        dt = time.perf_counter() - t0
    ce = torch.cat(out)
    diff = (ce - ref[:, 1:]).abs().max().item()
    print(
        json.dumps(
            {
                "tokens": int(ids.numel()),
                "seconds": dt,
                "tok_per_s": ids.numel() / dt,
                "max_abs_diff_vs_set": diff,
            }
        )
    )


def cmd_train(a):
    torch = setup(a.threads)
    model = load_model(torch, a.model).train()
    ref_model = load_model(torch, a.model).eval()  # the online reference
    for p in ref_model.parameters():
        p.requires_grad_(False)
    ids, ref = load_windows(a.set, a.seq_len)
    opt = torch.optim.AdamW(
        model.parameters(), lr=1e-4, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1
    )

    def step(kind, batch, ref_loss):
        ce = per_token_ce(torch, model, batch)  # (B, T-1)
        if kind == "clm":
            loss = ce.mean()
        else:
            if kind == "slm_online":
                with torch.inference_mode():
                    ref_loss = per_token_ce(torch, ref_model, batch)
            excess = (ce.detach() - ref_loss).flatten()
            k = max(1, int(a.ratio * excess.numel()))
            keep = torch.zeros_like(excess)
            keep[torch.topk(excess, k).indices] = 1.0
            loss = (ce.flatten() * keep).sum() / k
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)

    kinds = ["clm", "slm", "slm_online"]
    times = {k: [] for k in kinds}
    cursor = 0
    for i in range((a.steps + 2) * len(kinds)):
        kind = kinds[i % len(kinds)]
        lo = cursor % max(1, len(ids) - a.batch)
        batch, r = ids[lo : lo + a.batch], ref[lo : lo + a.batch, 1:]
        cursor += a.batch
        t0 = time.perf_counter()
        step(kind, batch, r)
        dt = time.perf_counter() - t0
        if i >= 2 * len(kinds):
            times[kind].append(dt)
    tokens = a.batch * a.seq_len
    out = {"tokens_per_step": tokens}
    for k, v in times.items():
        out[k] = {"median_s": statistics.median(v), "min_s": min(v), "max_s": max(v)}
    # This machine's f32 GEMM as PyTorch (MKL) sees it, 1024^3.
    x = torch.randn(1024, 1024)
    y = torch.randn(1024, 1024)
    g = []
    for _ in range(5):
        t0 = time.perf_counter()
        (x @ y).sum().item()
        g.append(time.perf_counter() - t0)
    out["gemm_gflops"] = 2 * 1024**3 / statistics.median(g) / 1e9
    print(json.dumps(out))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    sub = p.add_subparsers(dest="cmd", required=True)
    i = sub.add_parser("init")
    i.add_argument("--config", required=True)
    i.add_argument("--out", required=True)
    for name in ("score", "train"):
        s = sub.add_parser(name)
        s.add_argument("--model", required=True)
        s.add_argument("--set", required=True)
        s.add_argument("--seq-len", type=int, default=256)
        s.add_argument("--batch", type=int, default=8)
    sub.choices["score"].add_argument("--windows", type=int, default=64)
    sub.choices["train"].add_argument("--steps", type=int, default=5)
    sub.choices["train"].add_argument("--ratio", type=float, default=0.6)
    a = p.parse_args()
    {"init": cmd_init, "score": cmd_score, "train": cmd_train}[a.cmd](a)


if __name__ == "__main__":
    main()
