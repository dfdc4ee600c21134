#!/usr/bin/env python3
"""The score-set reader at scale, beside pyarrow on the same files.

    .venv-bench/bin/python bench/reader.py --source SET [--sizes 1e6 1e7 1e8]

For each size it writes a synthetic score set through the real writer
(`scorer synth`: SET's windows repeated, ref_loss from a fixed random
stream; under --work, not committed) and prints: bytes/token, write
tokens/s, one epoch through the training reader (`trainer read-bench`) with
one decoding thread and with all cores' worth, time waited, decode
amplification (rows decoded / rows used) and peak RSS, and pyarrow reading
the same files on one thread (`pq.read_table(..., use_threads=False)`, every
column) as the anchor. SET is any score set, e.g. the demo's
runs/demo/sets/noisy-scored. Needs pyarrow (bench/run.py's venv has it).
"""

import argparse
import glob
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sh(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


def pyarrow_read(d):
    import pyarrow.parquet as pq

    t0 = time.perf_counter()
    rows = 0
    for p in sorted(glob.glob(f"{d}/part-*.parquet")):
        rows += pq.read_table(p, use_threads=False).num_rows
    return rows / (time.perf_counter() - t0)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--source", required=True)
    ap.add_argument("--sizes", nargs="+", type=float, default=[1e6, 1e7, 1e8])
    ap.add_argument("--work", default=os.path.join(ROOT, "runs", "reader-bench"))
    ap.add_argument("--loss-dtype", default="f32")
    ap.add_argument("--keep", action="store_true", help="keep the written sets")
    a = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=ROOT, check=True)
    scorer, trainer = (os.path.join(ROOT, "target", "release", b) for b in ("scorer", "trainer"))
    os.makedirs(a.work, exist_ok=True)
    cores = os.cpu_count() or 1
    rows = []
    for size in a.sizes:
        out = os.path.join(a.work, f"synth-{int(size)}")
        shutil.rmtree(out, ignore_errors=True)
        t0 = time.perf_counter()
        sh([scorer, "synth", "--set", a.source, "--tokens", str(int(size)), "--out", out, "--loss-dtype", a.loss_dtype])
        write_s = time.perf_counter() - t0
        m = json.load(open(f"{out}/manifest.json"))
        tokens = m["num_tokens"]
        size_b = sum(os.path.getsize(p) for p in glob.glob(f"{out}/part-*.parquet"))
        reads = {}
        for threads in sorted({1, cores}):
            r = sh([trainer, "read-bench", "--data", out, "--read-threads", str(threads), "--json"])
            reads[threads] = json.loads(r.stdout)
        arrow = pyarrow_read(out)
        rows.append((tokens, size_b / tokens, tokens / write_s, reads, arrow))
        if not a.keep:
            shutil.rmtree(out)
        print(f"{tokens:,} tokens done", file=sys.stderr)
    print(f"CPU: {cpu_name()}, {cores} cores; ref_loss {a.loss_dtype}")
    print("| tokens | B/token | write tok/s | read tok/s, 1 thread | read tok/s, %d threads | pyarrow 1 thread | ours / pyarrow (1 thread) | waited (1 thread) | amplification | peak RSS MB (1 thread) |" % cores)
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for tokens, bpt, wr, reads, arrow in rows:
        one, many = reads[1], reads[max(reads)]
        print(f"| {tokens:,} | {bpt:.3f} | {wr / 1e6:.2f}M | {one['tokens_per_s'] / 1e6:.2f}M | {many['tokens_per_s'] / 1e6:.2f}M | "
              f"{arrow / 1e6:.2f}M | {one['tokens_per_s'] / arrow:.2f} | {one['wait_s']:.2f} s | {one['amplification']:.3f} | {one['peak_rss_mb']:.0f} |")


def cpu_name():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    main()
