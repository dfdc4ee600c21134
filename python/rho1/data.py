"""``ScoreSetDataset``: ``ScoreSet.batches`` as a torch ``IterableDataset``.

Each item is one optimizer step's rows for this rank (a dict of numpy
arrays, see ``ScoreSet.batches``); use it with ``DataLoader(ds,
batch_size=None)``. The rank split is the trainer's (``rho1.rank_rows``);
within a rank, DataLoader worker ``w`` of ``W`` yields the steps ``w, w + W,
...``: the DataLoader takes workers' items in turn, so the steps arrive in
order, none repeated, none lost. Each worker runs its own reader (it decodes
the row groups of every step it skips as well: more workers add decoding,
not throughput; one worker, or none, is usually enough).
"""
from __future__ import annotations

from ._rho1 import ScoreSet

try:  # torch is optional: without it the class is a plain iterable
    from torch.utils.data import IterableDataset as _Base
    from torch.utils.data import get_worker_info as _worker_info
except ImportError:  # pragma: no cover - depends on the environment
    _Base = object

    def _worker_info():
        return None


class ScoreSetDataset(_Base):
    """One rank's batches of a score set, in the trainer's order.

    ``rank`` and ``world`` default to torch.distributed's when a process
    group is initialised, else 0 and 1.
    """

    def __init__(
        self,
        path,
        batch_size: int,
        seed: int = 0,
        *,
        rank: int | None = None,
        world: int | None = None,
        start_step: int = 0,
        epochs: int = 1,
        steps: int | None = None,
        read_threads: int = 1,
        cache=None,
    ):
        super().__init__()
        if rank is None or world is None:
            rank, world = _distributed()
        self.path, self.batch_size, self.seed = path, batch_size, seed
        self.rank, self.world = rank, world
        self.start_step, self.epochs, self.steps = start_step, epochs, steps
        self.read_threads, self.cache = read_threads, cache

    def iter_worker(self, worker: int, num_workers: int):
        """The batches DataLoader worker ``worker`` of ``num_workers`` yields."""
        kwargs = {} if self.cache is None else {"cache": self.cache}
        return ScoreSet(self.path, **kwargs).batches(
            self.batch_size,
            self.seed,
            rank=self.rank,
            world=self.world,
            start_step=self.start_step,
            epochs=self.epochs,
            steps=self.steps,
            worker=worker,
            num_workers=num_workers,
            read_threads=self.read_threads,
        )

    def __iter__(self):
        info = _worker_info()
        if info is None:
            return self.iter_worker(0, 1)
        return self.iter_worker(info.id, info.num_workers)


def _distributed():
    try:
        import torch.distributed as dist
    except ImportError:
        return 0, 1
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1
