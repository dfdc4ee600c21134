"""Bad sets raise ScoreSetError with the text the CLIs print."""
import json
import subprocess

import pytest

import rho1


def cli_error(trainer, path) -> str:
    """What `trainer read-bench` prints for the set, after "error: "."""
    r = subprocess.run([trainer, "read-bench", "--data", str(path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode != 0, r.stdout
    line = r.stderr.strip().splitlines()[-1]
    assert line.startswith("error: "), r.stderr
    return line[len("error: "):]


def read_all(path):
    for _ in rho1.ScoreSet(str(path)).batches(16):
        pass


def truncate_shard(d):
    p = d / "part-00002.parquet"
    p.write_bytes(p.read_bytes()[:-100])


def drop_manifest(d):
    (d / "manifest.json").unlink()


def break_manifest(d):
    (d / "manifest.json").write_text('{"format": "rho1-score-set", ')


def wrong_seq_len(d):
    m = json.loads((d / "manifest.json").read_text())
    m["seq_len"] = 64
    (d / "manifest.json").write_text(json.dumps(m))


def zero_a_page(d):
    # bytes in the middle of a shard's data: the footer still parses, the
    # page does not decode (or decodes to values the reader refuses)
    p = d / "part-00001.parquet"
    b = bytearray(p.read_bytes())
    b[200:1200] = bytes(1000)
    p.write_bytes(bytes(b))


@pytest.mark.parametrize("damage", [truncate_shard, drop_manifest, break_manifest,
                                    wrong_seq_len, zero_a_page])
def test_a_bad_set_raises_what_the_cli_prints(trainer, set_copy, damage):
    damage(set_copy)
    want = cli_error(trainer, set_copy)
    with pytest.raises(rho1.ScoreSetError) as e:
        read_all(set_copy)
    assert str(e.value) == want
    assert str(set_copy) in want  # the message names the file


def test_a_changed_shard_fails_the_hash_check(set_copy):
    p = set_copy / "part-00003.parquet"
    b = bytearray(p.read_bytes())
    b[100] ^= 1
    p.write_bytes(bytes(b))
    s = rho1.ScoreSet(str(set_copy))
    with pytest.raises(rho1.ScoreSetError, match="part-00003.parquet"):
        s.check_hashes()


def test_a_missing_set_is_an_error_not_a_crash(tmp_path):
    with pytest.raises(rho1.ScoreSetError, match="missing"):
        rho1.ScoreSet(str(tmp_path / "nothing"))
    with pytest.raises(rho1.ScoreSetError, match="ftp://"):
        rho1.ScoreSet("ftp://host/set")
