#!/usr/bin/env python3
"""How far an exact f32 ref_loss column can be squeezed: the set's losses
(non-null, in row order) split into their four byte streams, each
compressed by zstd level 3 (the writer's) and level 19, and by xz -9e;
bytes per value printed beside the order-0 entropy of each byte stream.

    .venv-bench/bin/python bench/loss_floor.py SET_DIR

Needs pyarrow and numpy (bench/run.py's venv has them) and the zstd and xz
command-line tools.
"""
import glob
import lzma
import subprocess
import sys

import numpy as np
import pyarrow.parquet as pq

d = sys.argv[1]
parts = sorted(glob.glob(f"{d}/part-*.parquet"))
x = np.concatenate([pq.read_table(p, columns=["ref_loss"]).column(0).drop_null().to_numpy() for p in parts])
x = x.astype(np.float32)
n = len(x)
streams = x.view(np.uint8).reshape(n, 4).T.copy()


def zstd(b, level):
    return len(subprocess.run(["zstd", f"-{level}", "-c"], input=b, capture_output=True, check=True).stdout)


def entropy(s):
    c = np.bincount(s, minlength=256) / len(s)
    c = c[c > 0]
    return float(-(c * np.log2(c)).sum() / 8)  # bytes per byte


raw = b"".join(s.tobytes() for s in streams)
print(f"{d}: {n:,} losses")
print(f"byte-stream split, zstd -3:  {zstd(raw, 3) / n:.3f} B/value")
print(f"byte-stream split, zstd -19: {zstd(raw, 19) / n:.3f} B/value")
print(f"byte-stream split, xz -9e:   {len(lzma.compress(raw, preset=9 | lzma.PRESET_EXTREME)) / n:.3f} B/value")
print("order-0 entropy per byte stream (low to high byte): " + ", ".join(f"{entropy(s):.3f}" for s in streams)
      + f" = {sum(entropy(s) for s in streams):.3f} B/value")
