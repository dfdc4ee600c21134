#!/usr/bin/env python3
"""The house rules, checked: no import pointing up the layers of shared/src
(util < kernels, select < model, text < scores) and no function over 120 lines
outside tests, in shared/, scorer/ and trainer/. Exit 1 naming each breach."""
import os
import re
import sys

ORDER = {"error": 0, "util": 1, "kernels": 2, "select": 2, "metrics": 1, "store": 1, "model": 3, "text": 3, "scores": 4, "reader": 5, "process": 5}
root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
breaches = []
for crate in ("shared", "scorer", "trainer"):
    src = os.path.join(root, crate, "src")
    for d, _, files in os.walk(src):
        for f in sorted(files):
            if not f.endswith(".rs"):
                continue
            path = os.path.join(d, f)
            rel = os.path.relpath(path, root)
            text = open(path).read().split("#[cfg(test)]")[0]
            top = os.path.relpath(path, src).split(os.sep)[0].removesuffix(".rs")
            if crate == "shared" and top in ORDER:
                for dep in sorted(set(re.findall(r"crate::([a-z_]+)", text))):
                    if dep in ORDER and ORDER[dep] > ORDER[top]:
                        breaches.append(f"{rel} uses crate::{dep}, a layer above {top}/")
            lines = text.splitlines()
            for i, line in enumerate(lines):
                if re.match(r"\s*(pub(\([a-z]+\))?\s+)?(async\s+)?fn\s+\w+", line) and not line.rstrip().endswith(";"):
                    depth, started, j = 0, False, i
                    while j < len(lines):
                        depth += lines[j].count("{") - lines[j].count("}")
                        started = started or "{" in lines[j]
                        if started and depth <= 0:
                            break
                        j += 1
                    if j - i + 1 > 120:
                        breaches.append(f"{rel}:{i + 1}: a function of {j - i + 1} lines")
print("\n".join(breaches) or "house: no upward import, no function over 120 lines")
sys.exit(1 if breaches else 0)
