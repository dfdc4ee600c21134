"""ScoreSet and ScoreSet.batches against what `trainer train` reads."""
import json
import math
import os
import subprocess

import numpy as np
import pytest

import rho1

BATCH, ACCUM, SEED = 4, 2, 7  # the trainer's global batch: 8 windows


def bits(a):
    return np.asarray(a, dtype=np.uint32)


def trace(trainer, data, out, *extra):
    """`trainer train` with RHO1_TRACE_STEPS: its steps' lines."""
    path = out.parent / (out.name + ".trace.jsonl")
    args = [trainer, "train", "--data", str(data), "--out", str(out),
            "--model-size", "debug", "--batch-size", str(BATCH),
            "--grad-accum", str(ACCUM), "--seed", str(SEED),
            "--objective", "slm", "--eval-every", "0", *extra]
    env = dict(os.environ, RHO1_TRACE_STEPS=str(path))
    subprocess.run(args, env=env, check=True, capture_output=True, timeout=600)
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def two_epochs(trainer, fixture_set, tmp_path_factory):
    """Two epochs of SLM on the fixture set (69 steps of 8 windows)."""
    return trace(trainer, fixture_set, tmp_path_factory.mktemp("run") / "slm",
                 "--epochs", "2", "--select", "topk-batch", "--select-ratio", "0.6")


def test_scoreset_reports_the_manifest(fixture_set):
    s = rho1.ScoreSet(str(fixture_set))
    m = json.loads((fixture_set / "manifest.json").read_text())
    # the file's fields as the Rust reader parsed them (it adds defaults of
    # later format versions, such as loss_dtype)
    assert {k: v for k, v in s.manifest.items() if k in m} == m
    assert (s.num_windows, s.num_tokens, s.num_documents) == (
        m["num_windows"], m["num_tokens"], m["num_documents"])
    assert s.seq_len == m["seq_len"] == 32
    assert s.scored and len(s) == 273
    assert s.job_fingerprint == m["job_fingerprint"]
    assert s.reference_fingerprint == m["reference_model"]["fingerprint"]
    s.check_hashes()


def test_batches_are_the_windows_the_trainer_read(fixture_set, two_epochs):
    s = rho1.ScoreSet(str(fixture_set))
    got = list(s.batches(BATCH * ACCUM, SEED, epochs=2))
    # the trainer's step count for --epochs 2: ceil(2 * 273 / 8)
    assert len(got) == len(two_epochs) == math.ceil(2 * 273 / 8) == 69
    for b, t in zip(got, two_epochs):
        assert b["step"] + 1 == t["step"]
        assert b["tokens"].dtype == np.int64 and b["tokens"].shape == (8, 32)
        assert b["windows"].tolist() == t["windows"]
        assert b["tokens"].ravel().tolist() == t["tokens"]
        ref = b["ref_loss"]
        assert ref.dtype == np.float32 and np.isnan(ref[:, 0]).all()
        assert ref[:, 1:].ravel().view(np.uint32).tolist() == t["ref_loss_bits"]
        assert b["doc_ids"][:, 1:].ravel().tolist() == t["doc_ids"]
    # an epoch is every window once; the order is shuffled
    first = np.concatenate([b["windows"] for b in got])[:273]
    assert sorted(first.tolist()) == list(range(273))
    assert first.tolist() != list(range(273))


def test_select_gives_the_trainers_weights(fixture_set, two_epochs):
    for t in two_epochs:
        cols = t["cols"]
        ce = np.array(t["ce_bits"], dtype=np.uint32).view(np.float32).reshape(-1, cols)
        ref = np.array(t["ref_loss_bits"], dtype=np.uint32).view(np.float32).reshape(-1, cols)
        w = rho1.select(ce, ref, "topk-batch", 0.6)
        assert w.view(np.uint32).ravel().tolist() == t["weight_bits"], t["step"]
        assert w.sum() == math.ceil(0.6 * ce.size)


@pytest.mark.parametrize("method,extra", [
    ("random", ["--select-ratio", "0.3"]),
    ("weighted", ["--select-temperature", "0.5"]),
    ("topk-seq", ["--select-ratio", "0.4"]),
])
def test_other_rules_match_the_trainer(trainer, fixture_set, tmp_path, method, extra):
    steps = trace(trainer, fixture_set, tmp_path / method, "--max-steps", "3",
                  "--select", method, *extra)
    opts = {"ratio": float(extra[1])} if "--select-ratio" in extra else {
        "temperature": float(extra[1])}
    for t in steps:
        cols = t["cols"]
        ce = np.array(t["ce_bits"], dtype=np.uint32).view(np.float32).reshape(-1, cols)
        ref = np.array(t["ref_loss_bits"], dtype=np.uint32).view(np.float32).reshape(-1, cols)
        w = rho1.select(ce, ref, method, seed=SEED, step=t["step"] - 1, **opts)
        assert w.view(np.uint32).ravel().tolist() == t["weight_bits"], (method, t["step"])


def test_resuming_at_a_step_equals_skipping_to_it(fixture_set):
    s = rho1.ScoreSet(str(fixture_set))
    all_ = list(s.batches(8, 3, steps=50))
    resumed = list(s.batches(8, 3, start_step=37, steps=50))
    assert [b["step"] for b in resumed] == list(range(37, 50))
    for a, b in zip(all_[37:], resumed):
        assert (a["windows"] == b["windows"]).all()
        assert (a["tokens"] == b["tokens"]).all()


@pytest.mark.parametrize("world,batch", [(2, 8), (3, 8), (4, 2)])
def test_ranks_together_read_the_global_batch(fixture_set, world, batch):
    s = rho1.ScoreSet(str(fixture_set))
    whole = list(s.batches(batch, 5, steps=40))
    ranks = [list(s.batches(batch, 5, rank=r, world=world, steps=40)) for r in range(world)]
    for i, g in enumerate(whole):
        parts = [ranks[r][i] for r in range(world)]
        for r, p in enumerate(parts):
            start, stop = rho1.rank_rows(batch, r, world)
            assert p["tokens"].shape == (stop - start, 32)
        joined = np.concatenate([p["windows"] for p in parts])
        assert joined.tolist() == g["windows"].tolist()
        assert (np.concatenate([p["ref_loss"] for p in parts]).view(np.uint32)
                == g["ref_loss"].view(np.uint32)).all()


def test_workers_split_the_steps_without_repeat_or_loss(fixture_set):
    from rho1.data import ScoreSetDataset

    ds = ScoreSetDataset(str(fixture_set), 8, 1, rank=1, world=2, steps=30)
    alone = [b["windows"].tolist() for b in ds.iter_worker(0, 1)]
    workers = [list(ds.iter_worker(w, 3)) for w in range(3)]
    # the DataLoader takes the workers' items in turn
    interleaved = [workers[i % 3][i // 3] for i in range(30)]
    assert [b["step"] for b in interleaved] == list(range(30))
    assert [b["windows"].tolist() for b in interleaved] == alone


def test_a_packed_set_has_tokens_and_no_reference_losses(scorer, fixture_set, tmp_path):
    out = tmp_path / "packed"
    subprocess.run([scorer, "pack", "--tokenizer", str(fixture_set / "tokenizer.json"),
                    "--corpus", str(fixture_set.parent / "scoreset-v1-corpus.jsonl"),
                    "--seq-len", "32", "--out", str(out),
                    # the fixture's layout: 64 windows a shard, 16 a row group
                    "--shard-tokens", "2048", "--row-group-tokens", "512"],
                   check=True, capture_output=True, timeout=600)
    packed, scored = rho1.ScoreSet(str(out)), rho1.ScoreSet(str(fixture_set))
    assert not packed.scored and packed.reference_fingerprint is None
    a, b = next(packed.batches(3)), next(scored.batches(3))
    assert a["ref_loss"] is None and a["tokens"].shape == (3, 32)
    # the same corpus and tokenizer: the same windows in the same order
    assert (a["windows"] == b["windows"]).all() and (a["tokens"] == b["tokens"]).all()


def test_bad_arguments_raise_value_error(fixture_set):
    s = rho1.ScoreSet(str(fixture_set))
    for kwargs in ({"rank": 2, "world": 2}, {"world": 0}, {"worker": 1}):
        with pytest.raises(ValueError):
            s.batches(8, **kwargs)
    with pytest.raises(ValueError):
        s.batches(0)
