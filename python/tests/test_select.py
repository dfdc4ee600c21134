"""rho1.select: the trainer's rules (the same Rust function; the trace tests
in test_batches compare it with the trainer's own weights), here the rules'
definitions on inputs with many ties."""
import math

import numpy as np
import pytest

import rho1


def reference_topk(score, k):
    """The top k by score, ties to the lower index (row-major)."""
    order = sorted(range(score.size), key=lambda i: (-score.flat[i], i))
    keep = np.zeros(score.size, dtype=np.float32)
    keep[order[:k]] = 1
    return keep.reshape(score.shape)


@pytest.fixture
def tied():
    rng = np.random.default_rng(4)
    # few distinct values: most scores tie with others
    ce = rng.integers(0, 6, size=(6, 17)).astype(np.float32) / 2
    ref = rng.integers(0, 3, size=(6, 17)).astype(np.float32) / 2
    return ce, ref


@pytest.mark.parametrize("ratio", [0.01, 0.3, 0.6, 0.999, 1.0])
def test_topk_batch_keeps_ceil_k_n_ties_to_the_lower_index(tied, ratio):
    ce, ref = tied
    w = rho1.select(ce, ref, "topk-batch", ratio)
    k = math.ceil(ratio * ce.size)
    assert w.sum() == k
    assert (w == reference_topk(ce - ref, k)).all()


def test_topk_seq_cuts_each_window(tied):
    ce, ref = tied
    w = rho1.select(ce, ref, "topk-seq", 0.3)
    for row in range(ce.shape[0]):
        want = reference_topk((ce - ref)[row:row + 1], math.ceil(0.3 * ce.shape[1]))
        assert (w[row] == want[0]).all()


def test_threshold_ref_only_weighted(tied):
    ce, ref = tied
    assert (rho1.select(ce, ref, "threshold", threshold=0.5) == (ce - ref > 0.5)).all()
    k = math.ceil(0.4 * ce.size)
    assert (rho1.select(ce, ref, "ref-only", 0.4) == reference_topk(-ref, k)).all()
    w = rho1.select(ce, ref, "weighted", temperature=2.0).astype(np.float64)
    e = np.exp(((ce - ref) - (ce - ref).max()) / 2.0)
    np.testing.assert_allclose(w, e / e.sum() * ce.size, rtol=1e-5)


def test_random_depends_on_seed_and_step_only(tied):
    ce, ref = tied
    a = rho1.select(ce, ref, "random", 0.5, seed=3, step=11)
    assert a.sum() == math.ceil(0.5 * ce.size)
    assert (a == rho1.select(ce * 0, ref, "random", 0.5, seed=3, step=11)).all()
    assert (a != rho1.select(ce, ref, "random", 0.5, seed=3, step=12)).any()


def test_the_batch_layout_is_accepted(tied):
    ce, ref = tied
    # ref_loss as ScoreSet.batches yields it: (rows, T) with NaN at position 0
    full = np.concatenate([np.full((ce.shape[0], 1), np.nan, np.float32), ref], axis=1)
    assert (rho1.select(ce, full) == rho1.select(ce, ref)).all()
    assert (rho1.select(ce.astype(np.float64), ref) == rho1.select(ce, ref)).all()


def test_the_noise_filter_takes_noisy_spans_out_first():
    # one window: document 1 clean with one hard token, document 2 noise
    ce = np.array([[3.0, 3.0, 9.0, 3.0, 12.0, 12.0]], np.float32)
    ref = np.array([[2.0, 2.0, 6.0, 2.0, 8.0, 8.0]], np.float32)
    docs = np.array([[1, 1, 1, 1, 2, 2]], np.uint64)
    plain = rho1.select(ce, ref, "topk-batch", 0.5)
    assert plain.tolist() == [[0, 0, 1, 0, 1, 1]]
    filtered = rho1.select(ce, ref, "topk-batch", 0.5, doc_ids=docs, noise_cap=5.0, noise_span=3)
    assert filtered.tolist() == [[1, 1, 1, 0, 0, 0]]


def test_bad_arguments(tied):
    ce, ref = tied
    with pytest.raises(ValueError, match="topk-batch"):
        rho1.select(ce, ref, "top-k")
    with pytest.raises(ValueError, match="ratio"):
        rho1.select(ce, ref, ratio=0.0)
    with pytest.raises(ValueError, match="shape"):
        rho1.select(ce, ref[:, :5])
    with pytest.raises(ValueError, match="doc_ids"):
        rho1.select(ce, ref, noise_cap=1.0)
