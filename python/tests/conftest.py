"""Shared fixtures: the checked-in score set and the trainer binary."""
import os
import pathlib
import shutil

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def fixture_set() -> pathlib.Path:
    """A scored set checked into the repo: 273 windows of 32 in 5 shards."""
    return REPO / "tests" / "fixtures" / "scoreset-v1"


def _binary(name: str) -> str:
    """RHO1_TRAINER / RHO1_SCORER, else target/{release,debug}/NAME."""
    var = "RHO1_" + name.upper()
    path = os.environ.get(var)
    if path:
        return path
    for profile in ("release", "debug"):
        p = REPO / "target" / profile / name
        if p.exists():
            return str(p)
    why = f"no {name} binary: set {var} or run cargo build"
    if os.environ.get("CI"):
        pytest.fail(why)
    pytest.skip(why)


@pytest.fixture(scope="session")
def trainer() -> str:
    return _binary("trainer")


@pytest.fixture(scope="session")
def scorer() -> str:
    return _binary("scorer")


@pytest.fixture
def set_copy(fixture_set, tmp_path) -> pathlib.Path:
    """A writable copy of the fixture set, to damage."""
    dst = tmp_path / "set"
    shutil.copytree(fixture_set, dst)
    return dst
