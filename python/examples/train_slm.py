"""Selective language modeling (RHO-1) with a Hugging Face causal LM, from a
score set written by `scorer score`: one process, or several under torchrun.

    python python/examples/train_slm.py --data SET --model HF_DIR --steps 20
    torchrun --nproc_per_node 2 python/examples/train_slm.py --data SET --model HF_DIR

Each step reads `--batch-size` windows (the global batch, in the order
`trainer train --seed` reads them; rank r takes rows rho1.rank_rows(B, r,
world)), computes the live per-token loss in one forward pass, keeps the top
`--ratio` of the GLOBAL batch by excess loss (ce - ref_loss: an all-gather
across ranks) and backpropagates the mean over the kept tokens, divided by
the global kept count. The model is any local checkpoint (nothing is
downloaded); its vocabulary must cover the set's tokenizer.
"""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import torch.nn.functional as F
from transformers import AutoModelForCausalLM

import rho1
import rho1.torch as rt
from rho1.data import ScoreSetDataset


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="score set (directory or bucket URL)")
    p.add_argument("--model", required=True, help="local Hugging Face checkpoint directory")
    p.add_argument("--batch-size", type=int, default=8, help="windows per step, all ranks together")
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--ratio", type=float, default=rho1.DEFAULT_RATIO, help="fraction of tokens kept")
    p.add_argument("--objective", choices=["slm", "clm"], default="slm")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0, help="the data order: trainer train --seed")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--metrics", help="write one JSON line per step here (rank 0)")
    a = p.parse_args()

    world = int(os.environ.get("WORLD_SIZE", "1"))
    cuda = torch.cuda.is_available()
    if world > 1:
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if cuda else "cpu")
    if a.batch_size < world:
        raise SystemExit(f"--batch-size {a.batch_size} is below the {world} ranks: every rank needs a row")

    data = rho1.ScoreSet(a.data)
    if a.objective == "slm" and not data.scored:
        raise SystemExit(f"{a.data}: a packed set has no reference losses: score it, or use --objective clm")
    torch.manual_seed(a.seed)
    model = AutoModelForCausalLM.from_pretrained(a.model, local_files_only=True).to(device)
    if data.vocab_size > model.config.vocab_size:
        raise SystemExit(f"{a.data}: tokenizer of {data.vocab_size} ids, the model has {model.config.vocab_size}")
    ddp = torch.nn.parallel.DistributedDataParallel(model) if world > 1 else model
    opt = torch.optim.AdamW(model.parameters(), lr=a.lr, weight_decay=0.0)

    ds = ScoreSetDataset(a.data, a.batch_size, a.seed, rank=rank, world=world, steps=a.steps)
    loader = torch.utils.data.DataLoader(ds, batch_size=None, num_workers=a.workers)
    log = open(a.metrics, "w") if a.metrics and rank == 0 else None
    for b in loader:
        t0 = time.perf_counter()
        tokens = torch.as_tensor(b["tokens"]).to(device)  # (b, T) int64
        logits = ddp(tokens).logits[:, :-1].float()  # (b, T-1, V)
        ce = F.cross_entropy(logits.flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
        ce = ce.view(tokens.shape[0], -1)  # (b, T-1): the loss of tokens 1..T
        if a.objective == "clm":
            w = torch.ones_like(ce)
            kept = torch.tensor(float(ce.numel() * world), device=device)
        elif world > 1:
            w, kept = rt.select_global(ce, torch.as_tensor(b["ref_loss"]), a.ratio)
        else:
            w = rt.select(ce, torch.as_tensor(b["ref_loss"]), a.ratio)
            kept = w.sum()
        loss = rt.masked_mean(ce, w, kept, world)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        # the step's mean loss over all tokens and over the kept ones, global
        sums = torch.stack([ce.detach().sum(), (w * ce.detach()).sum(),
                            torch.tensor(float(ce.numel()), device=device)])
        if world > 1:
            torch.distributed.all_reduce(sums)
        line = {"step": b["step"] + 1, "loss_all": (sums[0] / sums[2]).item(),
                "loss_selected": (sums[1] / kept.clamp(min=1)).item(),
                "kept": kept.item(), "step_ms": (time.perf_counter() - t0) * 1e3}
        if rank == 0:
            print(json.dumps(line), flush=True)
            if log:
                log.write(json.dumps(line) + "\n")
    if log:
        log.close()
    if world > 1:
        torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
