"""``rho1.select``: the trainer's selection rules on numpy arrays."""
from __future__ import annotations

import numpy as np

from . import _rho1

NOISE_SPAN = 64


def _predicted(a, cols: int, name: str, dtype) -> np.ndarray:
    """(rows, cols) of the predicted tokens: a batch's (rows, cols + 1)
    column (as ``ScoreSet.batches`` yields it) loses its position 0."""
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be 2-D (rows, cols), got shape {a.shape}")
    if a.shape[1] == cols + 1:
        a = a[:, 1:]
    return np.ascontiguousarray(a, dtype=dtype)


def select(
    ce,
    ref_loss,
    method: str = "topk-batch",
    ratio: float = _rho1.DEFAULT_RATIO,
    *,
    threshold: float = 0.0,
    temperature: float = 1.0,
    doc_ids=None,
    noise_cap: float | None = None,
    noise_span: int = NOISE_SPAN,
    seed: int = 0,
    step: int = 0,
) -> np.ndarray:
    """The weight of each predicted token under a rule of ``trainer train``.

    ``ce`` is the live model's per-token cross-entropy of one global batch,
    (rows, T-1): ``ce[i, j]`` is the loss of token ``j + 1`` of window
    ``i``. ``ref_loss`` (and ``doc_ids``, for the noise filter) may be given
    as the batch holds them, (rows, T): position 0 is dropped. Returns
    float32 weights of ``ce``'s shape: 0/1 for the hard rules (``topk-batch``:
    the top ceil(ratio * n) by excess loss ``ce - ref_loss``, ties to the
    lower index, row-major), softmax weights of mean 1 for ``weighted``. The
    loss to backpropagate is ``(w * ce).sum() / w.sum()``.

    ``noise_cap`` with ``noise_span`` is the trainer's noise filter with that
    cap (``--noise-quantile`` fits the cap to the data first); ``seed`` and
    ``step`` are the trainer's ``--seed`` and 0-based step (for ``random``).
    This is the trainer's own function, bit for bit.
    """
    ce = np.asarray(ce)
    if ce.ndim != 2:
        raise ValueError(f"ce must be 2-D (rows, cols), got shape {ce.shape}")
    cols = ce.shape[1]
    ce = np.ascontiguousarray(ce, dtype=np.float32)
    ref = _predicted(ref_loss, cols, "ref_loss", np.float32)
    docs = None if doc_ids is None else _predicted(doc_ids, cols, "doc_ids", np.uint64)
    return _rho1.select(
        ce,
        ref,
        method,
        float(ratio),
        float(threshold),
        float(temperature),
        docs,
        None if noise_cap is None else float(noise_cap),
        int(noise_span),
        int(seed),
        int(step),
    )
