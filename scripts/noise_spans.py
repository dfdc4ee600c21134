"""How well the reference loss separates injected noise, by label: per-token
and per-document quantiles, and the share of each label above the set's
quantiles of the span-mean score that `trainer train --noise-quantile` uses.
Needs duckdb (pip install duckdb). Usage:
  python3 scripts/noise_spans.py runs/demo/sets/noisy-injected [--spans 16,64,256]"""
import argparse
import os

import duckdb

ap = argparse.ArgumentParser()
ap.add_argument("set")
ap.add_argument("--spans", default="16,32,64,128,256")
a = ap.parse_args()
os.chdir(a.set)
con = duckdb.connect()
labelled = """select p.seq_id, p.pos, p.doc_id, p.ref_loss,
  case when d.original_id like 'noise:%' then split_part(d.original_id, ':', 2) else 'original' end as label
  from 'part-*.parquet' p join 'documents.parquet' d using (doc_id) where p.ref_loss is not null"""
print("per token: label, tokens, quantiles 0.1 / 0.5 / 0.9 of ref_loss")
for r in con.sql(f"select label, count(*), quantile_cont(ref_loss, [0.1, 0.5, 0.9]) from ({labelled}) group by 1 order by 1").fetchall():
    print(" ", r[0], r[1], [round(x, 2) for x in r[2]])
print("per document: label, documents, quantiles 0.1 / 0.5 / 0.9 of the document's mean ref_loss")
for r in con.sql(f"select label, count(*), quantile_cont(m, [0.1, 0.5, 0.9]) from (select doc_id, label, avg(ref_loss) m from ({labelled}) group by 1, 2) group by 1 order by 1").fetchall():
    print(" ", r[0], r[1], [round(x, 2) for x in r[2]])
for span in [int(s) for s in a.spans.split(",")]:
    before, after = (span - 1) // 2, span // 2
    sm = f"""select label, avg(ref_loss) over (partition by seq_id, doc_id order by pos
      rows between {before} preceding and {after} following) sm from ({labelled})"""
    qs = con.sql(f"select quantile_cont(sm, [0.8, 0.85, 0.9, 0.95]) from ({sm})").fetchall()[0][0]
    print(f"span {span}: quantiles 0.8 / 0.85 / 0.9 / 0.95 = {[round(x, 3) for x in qs]}")
    for q, cap in zip([0.8, 0.85, 0.9, 0.95], qs):
        rows = con.sql(f"select label, 100 * avg(case when sm > {cap} then 1 else 0 end) from ({sm}) group by 1 order by 1").fetchall()
        print(f"  q {q}: % above the cap:", ", ".join(f"{l} {v:.1f}" for l, v in rows))
