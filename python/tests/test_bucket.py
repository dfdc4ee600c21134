"""A score set in a bucket (moto's S3 server on 127.0.0.1, as the Rust
bucket tests use): the same batches as from the directory; errors named."""
import os
import pathlib
import shutil
import socket
import subprocess
import time
import urllib.request

import numpy as np
import pytest

import rho1

REPO = pathlib.Path(__file__).resolve().parents[2]


def moto_binary():
    for p in (os.environ.get("RHO1_MOTO_SERVER"), REPO / ".venv/bin/moto_server",
              shutil.which("moto_server")):
        if p and pathlib.Path(p).is_file():
            return str(p)
    why = "no moto_server (pip install -r tests/requirements-moto.txt into .venv)"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture
def s3(monkeypatch):
    """A fresh server and a client environment pointing at it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([moto_binary(), "-H", "127.0.0.1", "-p", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(url + "/", timeout=2)
                break
            except OSError:
                time.sleep(0.2)
        else:
            pytest.fail(f"moto_server did not answer on {url}")
        env = {"AWS_ENDPOINT_URL": url, "AWS_ACCESS_KEY_ID": "rho1-test-key",
               "AWS_SECRET_ACCESS_KEY": "rho1-test-secret", "AWS_DEFAULT_REGION": "us-east-1",
               "RHO1_STORE_RETRIES": "1"}
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        urllib.request.urlopen(urllib.request.Request(url + "/rho1-py", method="PUT"), timeout=10)
        yield env
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_a_set_in_a_bucket_reads_as_the_directory(s3, scorer, fixture_set, tmp_path):
    subprocess.run([scorer, "sync", str(fixture_set), "s3://rho1-py/set"],
                   check=True, capture_output=True, timeout=300, env=dict(os.environ))
    remote, local = rho1.ScoreSet("s3://rho1-py/set"), rho1.ScoreSet(str(fixture_set))
    assert remote.manifest == local.manifest and remote.num_windows == 273
    for kwargs in ({}, {"cache": str(tmp_path / "cache")}):
        r = list(rho1.ScoreSet("s3://rho1-py/set", **kwargs).batches(8, 2, steps=40, read_threads=2))
        l = list(local.batches(8, 2, steps=40))
        assert len(r) == len(l) == 40
        for a, b in zip(r, l):
            assert (a["windows"] == b["windows"]).all() and (a["tokens"] == b["tokens"]).all()
            assert (a["ref_loss"].view(np.uint32) == b["ref_loss"].view(np.uint32)).all()
    assert any((tmp_path / "cache").iterdir()), "the cache holds the fetched shards"


def test_a_missing_bucket_or_prefix_is_named(s3):
    with pytest.raises(rho1.ScoreSetError, match="s3://rho1-py/nothing"):
        rho1.ScoreSet("s3://rho1-py/nothing")
    with pytest.raises(rho1.ScoreSetError, match="no-such-bucket"):
        rho1.ScoreSet("s3://no-such-bucket/set")
