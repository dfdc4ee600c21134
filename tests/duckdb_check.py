"""DuckDB reads a score set as written: counts and means agree with
manifest.json, and a join with vocab.parquet shows token text.

Usage: python tests/duckdb_check.py SCORE_SET_DIR
"""
import json
import math
import sys

import duckdb

d = sys.argv[1]
m = json.load(open(f"{d}/manifest.json"))
con = duckdb.connect()

rows, avg, nonnull = con.execute(
    f"SELECT count(*), avg(ref_loss), count(ref_loss) FROM '{d}/part-*.parquet'"
).fetchone()
assert rows == m["num_tokens"], (rows, m["num_tokens"])
assert nonnull == m["ref_loss"]["count"], (nonnull, m["ref_loss"])
assert math.isclose(avg, m["ref_loss"]["mean"], rel_tol=1e-9, abs_tol=1e-9), (avg, m["ref_loss"]["mean"])

windows, nulls_not_at_0 = con.execute(
    f"SELECT count(DISTINCT seq_id), count(*) FILTER (WHERE ref_loss IS NULL AND pos <> 0) FROM '{d}/part-*.parquet'"
).fetchone()
assert windows == m["num_windows"] and nulls_not_at_0 == 0, (windows, nulls_not_at_0)

top = con.execute(
    f"""SELECT v.piece, avg(t.ref_loss) AS loss, count(*) AS n
        FROM '{d}/part-*.parquet' t JOIN '{d}/vocab.parquet' v USING (token_id)
        WHERE t.ref_loss IS NOT NULL GROUP BY v.piece ORDER BY n DESC LIMIT 5"""
).fetchall()
assert len(top) == 5 and all(isinstance(p, str) for p, _, _ in top), top
docs = con.execute(f"SELECT count(*), sum(token_count) FROM '{d}/documents.parquet'").fetchone()
assert docs[0] == m["num_documents"], (docs, m["num_documents"])
assert docs[1] == m["num_tokens"] + m["dropped_tail_tokens"], (docs, m["num_tokens"], m["dropped_tail_tokens"])
print("duckdb: rows", rows, "avg ref_loss", avg, "most frequent pieces", [p for p, _, _ in top])
