"""Score sets written by `scorer`, read by the Rust code the trainer runs.

- ``ScoreSet(path)``: a complete set (a directory or a bucket URL), its
  manifest and counts; errors raise ``ScoreSetError`` with the text the CLIs
  print.
- ``ScoreSet.batches(batch_size, seed, rank=, world=, start_step=)``: the
  windows `trainer train --seed seed` reads, step by step, as numpy arrays.
- ``select(ce, ref_loss, method, ratio)``: the trainer's selection rules.
- ``rho1.data.ScoreSetDataset``: a torch ``IterableDataset`` over batches,
  split by rank and by DataLoader worker (needs torch).
- ``rho1.torch``: the batch top-k on torch tensors, one process or across
  ranks (needs torch).
"""
from ._rho1 import (
    DEFAULT_RATIO,
    Batches,
    ScoreSet,
    ScoreSetError,
    __version__,
    rank_rows,
)
from .select import select

__all__ = [
    "DEFAULT_RATIO",
    "Batches",
    "ScoreSet",
    "ScoreSetError",
    "__version__",
    "rank_rows",
    "select",
]
