#!/usr/bin/env python3
"""Bytes per token of score sets, per column and in all, read from the
Parquet footers by DuckDB (`parquet_metadata`), with each column's encodings.

    .venv/bin/python bench/density.py SET_DIR [SET_DIR ...]

Needs DuckDB (`pip install --require-hashes -r tests/requirements-duckdb.txt`).
"""
import glob
import json
import os
import sys

import duckdb

COLUMNS = ["seq_id", "pos", "doc_id", "token_id", "ref_loss"]


def density(d):
    m = json.load(open(os.path.join(d, "manifest.json")))
    tokens = m["num_tokens"]
    parts = sorted(glob.glob(os.path.join(d, "part-*.parquet")))
    files = ", ".join(f"'{p}'" for p in parts)
    rows = duckdb.sql(
        f"""select path_in_schema, sum(total_compressed_size), string_agg(distinct encodings, ' ')
            from parquet_metadata([{files}]) group by 1"""
    ).fetchall()
    cols = {name: (size / tokens, enc) for name, size, enc in rows}
    total = sum(os.path.getsize(p) for p in parts) / tokens
    return m, tokens, cols, total


def main():
    print("| set | version | ref_loss dtype | tokens | " + " | ".join(COLUMNS) + " | file B/token |")
    print("|---|---:|---|---:|" + "---:|" * (len(COLUMNS) + 1))
    for d in sys.argv[1:]:
        m, tokens, cols, total = density(d)
        cells = [f"{cols[c][0]:.3f}" for c in COLUMNS]
        print(f"| {d} | {m['format_version']} | {m.get('loss_dtype', 'f32')} | {tokens:,} | " + " | ".join(cells) + f" | {total:.3f} |")
    for d in sys.argv[1:]:
        _, _, cols, _ = density(d)
        print(f"{d}: " + "; ".join(f"{c} {cols[c][1]}" for c in COLUMNS))


if __name__ == "__main__":
    main()
