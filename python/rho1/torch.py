"""RHO-1's batch top-k on torch tensors (GPU or CPU), for training loops
that keep the live loss on the device: the rule of ``rho1.select(...,
"topk-batch")`` and of ``trainer train --select topk-batch``: the top
ceil(ratio * n) predicted tokens of the global batch by excess loss
``ce - ref_loss``, ties broken by the lower row-major index, so the count is
exact and the choice deterministic (``torch.topk`` alone orders ties as the
kernel happens to). Scores are assumed finite (the trainer stops on a
non-finite loss; score sets hold finite reference losses).

Across ranks (``torchrun``), ``select_global`` all-gathers the excess losses
so that every rank keeps exactly the tokens one process with the whole
global batch would keep (rank r holding rows ``rho1.rank_rows(B, r, world)``
of it), and ``masked_mean`` divides by the global kept count: a per-rank
mean would over-weight ranks that keep fewer tokens, and a rank that keeps
none would divide by zero.
"""
from __future__ import annotations

import math

import torch


def topk_mask(score: torch.Tensor, k: int) -> torch.Tensor:
    """Bool mask of the ``k`` largest of ``score`` (any shape, read
    row-major), ties to the lower index."""
    flat = score.reshape(-1)
    n = flat.numel()
    if k <= 0:
        return torch.zeros_like(score, dtype=torch.bool)
    if k >= n:
        return torch.ones_like(score, dtype=torch.bool)
    kth = torch.topk(flat, k, sorted=True).values[-1]
    above = flat > kth
    tie = flat == kth
    need = k - above.sum()
    keep = above | (tie & (torch.cumsum(tie.to(torch.int64), 0) <= need))
    return keep.reshape(score.shape)


def select(ce: torch.Tensor, ref_loss: torch.Tensor, ratio: float = 0.6) -> torch.Tensor:
    """0/1 weights (``ce``'s dtype and device) of the batch top-k by excess
    loss. ``ce`` is (rows, T-1); ``ref_loss`` is (rows, T-1) or the batch's
    (rows, T) (position 0 dropped)."""
    ref_loss = _predicted(ref_loss, ce).to(ce.device, torch.float32)
    excess = ce.detach().to(torch.float32) - ref_loss
    k = math.ceil(ratio * excess.numel())
    return topk_mask(excess, k).to(ce.dtype)


def select_global(ce: torch.Tensor, ref_loss: torch.Tensor, ratio: float = 0.6, group=None):
    """``select`` over the global batch of all ranks of ``group``: returns
    this rank's weights and the global kept count (a float tensor). Ranks
    may hold different numbers of rows (as ``rho1.rank_rows`` splits)."""
    import torch.distributed as dist

    ref_loss = _predicted(ref_loss, ce).to(ce.device, torch.float32)
    excess = (ce.detach().to(torch.float32) - ref_loss).contiguous()
    world = dist.get_world_size(group)
    rank = dist.get_rank(group)
    rows = torch.tensor([excess.shape[0]], device=excess.device)
    counts = [torch.zeros_like(rows) for _ in range(world)]
    dist.all_gather(counts, rows, group=group)
    counts = [int(c.item()) for c in counts]
    most = max(counts)
    padded = torch.zeros((most, excess.shape[1]), dtype=excess.dtype, device=excess.device)
    padded[: excess.shape[0]] = excess
    parts = [torch.empty_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded, group=group)
    whole = torch.cat([p[:c] for p, c in zip(parts, counts)])
    k = math.ceil(ratio * whole.numel())
    keep = topk_mask(whole, k)
    start = sum(counts[:rank])
    mine = keep[start : start + counts[rank]].to(ce.dtype)
    return mine, torch.tensor(float(k), device=ce.device)


def masked_mean(ce: torch.Tensor, w: torch.Tensor, kept=None, world: int = 1) -> torch.Tensor:
    """The SLM loss, sum(w * ce) / kept, with ``kept`` the global kept count
    (default: this rank's ``w.sum()``). Under DistributedDataParallel, which
    averages gradients over ranks, pass ``world``: the loss is scaled by it
    so that the averaged gradient is the global batch's. Nothing kept gives
    a zero loss with a zero gradient, never NaN."""
    kept = w.sum() if kept is None else torch.as_tensor(kept, device=ce.device)
    total = (w * ce).sum()
    return torch.where(kept > 0, total * world / kept.clamp(min=1), total * 0)


def _predicted(ref_loss: torch.Tensor, ce: torch.Tensor) -> torch.Tensor:
    ref_loss = torch.as_tensor(ref_loss)
    if ref_loss.shape[-1] == ce.shape[-1] + 1:
        ref_loss = ref_loss[..., 1:]
    if ref_loss.shape != ce.shape:
        raise ValueError(f"ref_loss {tuple(ref_loss.shape)} does not match ce {tuple(ce.shape)}")
    return ref_loss
