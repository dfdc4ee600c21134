"""Runs every `-- name:` query of docs/score-sets.md's DuckDB cookbook against a score
set and checks each answer against manifest.json or values computed in Rust
(expected.json, written by the calling Rust test).

Usage: python tests/duckdb_cookbook.py docs/score-sets.md SCORE_SET_DIR EXPECTED_JSON
"""
import json
import math
import re
import sys

import duckdb

readme, d, expected_path = sys.argv[1:4]
m = json.load(open(f"{d}/manifest.json"))
exp = json.load(open(expected_path))
blocks = re.findall(r"```sql\n(-- name: (\w+).*?)```", open(readme).read(), re.S)
queries = {name: sql.replace("sets/web", d) for sql, name in blocks}
expected_names = {"summary", "loss_by_source", "hardest_tokens", "easiest_tokens", "worst_documents", "kept_share_by_source", "window_stats"}
assert expected_names <= set(queries), f"the cookbook lacks queries: {expected_names - set(queries)}"
con = duckdb.connect()


def run(name):
    return con.execute(queries[name]).fetchall()


def close(a, b, tol=1e-6):
    return math.isclose(a, b, rel_tol=tol, abs_tol=tol)


tokens, scored, mean = run("summary")[0]
assert tokens == m["num_tokens"] and scored == m["ref_loss"]["count"] and close(mean, m["ref_loss"]["mean"]), (tokens, scored, mean)

by_src = run("loss_by_source")
assert len(by_src) == len(m["inputs"]), by_src
assert sum(r[1] for r in by_src) == m["ref_loss"]["count"]
assert close(sum(r[1] * r[2] for r in by_src) / m["ref_loss"]["count"], m["ref_loss"]["mean"])
assert all(r[3] <= r[4] <= r[5] for r in by_src)

hard, easy = run("hardest_tokens"), run("easiest_tokens")
assert hard and easy and all(isinstance(r[0], str) for r in hard + easy)
assert [r[1] for r in hard] == sorted((r[1] for r in hard), reverse=True)
assert [r[1] for r in easy] == sorted(r[1] for r in easy)
assert hard[0][1] > easy[0][1]

worst = run("worst_documents")
assert worst[0][0] == exp["worst_doc_id"] and close(worst[0][3], exp["worst_doc_mean"], 1e-5), (worst[0], exp)

kept = run("kept_share_by_source")
total = sum(r[2] for r in kept)
assert total == m["ref_loss"]["count"]
share = sum(r[1] * r[2] for r in kept) / total
assert abs(share - 0.6) < 0.01, share

win = run("window_stats")
assert len(win) == m["num_windows"]
assert close(sum(r[1] for r in win) / len(win), m["ref_loss"]["mean"])
assert all(r[3] == exp["docs_per_window"][i] for i, r in enumerate(win)), "documents per window differ from Rust"
print(f"duckdb cookbook: {len(queries)} queries checked")
