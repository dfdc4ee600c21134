"""rho1.torch against rho1.select (where torch is installed; CI has no torch:
PyPI's torch is a multi-GB CUDA build)."""
import math

import numpy as np
import pytest

import rho1

torch = pytest.importorskip("torch", reason="torch is not installed: the torch helper is not checked here")
import rho1.torch as rt  # noqa: E402


@pytest.mark.parametrize("ratio", [0.05, 0.3, 0.6, 1.0])
def test_torch_topk_equals_the_trainers_rule_ties_included(ratio):
    rng = np.random.default_rng(1)
    ce = rng.integers(0, 5, size=(8, 31)).astype(np.float32) / 4
    ref = rng.integers(0, 3, size=(8, 31)).astype(np.float32) / 4
    want = rho1.select(ce, ref, "topk-batch", ratio)
    got = rt.select(torch.from_numpy(ce), torch.from_numpy(ref), ratio)
    assert (got.numpy() == want).all()
    assert got.sum().item() == math.ceil(ratio * ce.size)


def test_masked_mean_of_nothing_is_zero_not_nan():
    ce = torch.tensor([[1.0, 2.0]], requires_grad=True)
    loss = rt.masked_mean(ce, torch.zeros_like(ce), kept=0.0, world=2)
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(ce.grad).all()


def test_the_global_top_k_over_two_ranks_equals_one_process(tmp_path):
    """Two gloo ranks (threads-free: torch.multiprocessing) keep what one
    process with the whole batch keeps."""
    import torch.multiprocessing as mp

    rng = np.random.default_rng(2)
    ce = rng.integers(0, 5, size=(7, 15)).astype(np.float32) / 4
    ref = rng.integers(0, 3, size=(7, 15)).astype(np.float32) / 4
    np.save(tmp_path / "ce.npy", ce)
    np.save(tmp_path / "ref.npy", ref)
    mp.spawn(_rank, args=(2, str(tmp_path)), nprocs=2, join=True)
    got = np.concatenate([np.load(tmp_path / f"w{r}.npy") for r in range(2)])
    assert (got == rho1.select(ce, ref, "topk-batch", 0.6)).all()


def _rank(rank, world, d):
    import os
    import pathlib

    import torch.distributed as dist

    os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
    os.environ.setdefault("MASTER_PORT", "29533")
    dist.init_process_group("gloo", rank=rank, world_size=world)
    d = pathlib.Path(d)
    ce, ref = np.load(d / "ce.npy"), np.load(d / "ref.npy")
    start, stop = rho1.rank_rows(ce.shape[0], rank, world)
    w, kept = rt.select_global(torch.from_numpy(ce[start:stop]), torch.from_numpy(ref[start:stop]), 0.6)
    assert kept.item() == math.ceil(0.6 * ce.size)
    np.save(d / f"w{rank}.npy", w.numpy())
    dist.destroy_process_group()


def test_the_example_trains_the_same_on_one_process_and_two_ranks(fixture_set, tmp_path):
    """python/examples/train_slm.py on the golden tiny Llama: 5 SLM steps,
    one process against torchrun with two gloo ranks (global top-k)."""
    pytest.importorskip("transformers", reason="transformers is not installed: the example is not run here")
    import json
    import pathlib
    import subprocess
    import sys

    repo = pathlib.Path(__file__).resolve().parents[2]
    example = repo / "python" / "examples" / "train_slm.py"
    common = ["--data", str(fixture_set), "--model", str(repo / "tests/fixtures/llama-mha"),
              "--steps", "5", "--batch-size", "6"]
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    subprocess.run([sys.executable, str(example), *common, "--metrics", str(one)],
                   check=True, capture_output=True, timeout=600)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
                    "--master_port", "29534", str(example), *common, "--metrics", str(two)],
                   check=True, capture_output=True, timeout=600)
    a = [json.loads(x) for x in one.read_text().splitlines()]
    b = [json.loads(x) for x in two.read_text().splitlines()]
    assert len(a) == len(b) == 5
    for x, y in zip(a, b):
        assert x["kept"] == y["kept"] == math.ceil(0.6 * 6 * 31)
        assert abs(x["loss_all"] - y["loss_all"]) < 1e-4, (x, y)
        assert abs(x["loss_selected"] - y["loss_selected"]) < 1e-4, (x, y)
