"""Final held-out loss of runs named NAME-seedN, per seed, mean and sample sd,
and paired-by-seed differences against baseline groups. Usage:
  python3 scripts/seed_table.py RUNS_DIR GROUP [GROUP ...] --against BASE [BASE ...]
A GROUP is a run name without its -seedN suffix. Reads metrics.jsonl only."""
import argparse
import json
import os
import statistics


def final_eval(run):
    last = None
    with open(os.path.join(run, "metrics.jsonl")) as f:
        for line in f:
            m = json.loads(line)
            if "eval_loss" in m:
                last = m
    return last


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("runs")
    ap.add_argument("groups", nargs="+")
    ap.add_argument("--against", nargs="*", default=[])
    ap.add_argument("--seeds", default="0,1,2")
    a = ap.parse_args()
    seeds = [int(s) for s in a.seeds.split(",")]
    loss = {}
    for g in dict.fromkeys(a.groups + a.against):
        loss[g] = [final_eval(os.path.join(a.runs, f"{g}-seed{s}"))["eval_loss"] for s in seeds]
    print("| run | " + " | ".join(f"seed {s}" for s in seeds) + " | mean | sd | " + " | ".join(f"minus {b} (mean, sd)" for b in a.against) + " |")
    print("|---|" + "---:|" * (len(seeds) + 2 + len(a.against)))
    for g in a.groups:
        v = loss[g]
        cells = [f"{x:.4f}" for x in v] + [f"{statistics.mean(v):.4f}", f"{statistics.stdev(v):.4f}"]
        for b in a.against:
            d = [x - y for x, y in zip(v, loss[b])]
            cells.append(f"{statistics.mean(d):+.3f} ({statistics.stdev(d):.3f})")
        print(f"| {g} | " + " | ".join(cells) + " |")


main()
