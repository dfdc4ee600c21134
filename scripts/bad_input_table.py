#!/usr/bin/env python3
"""Prints the table of docs/reliability.md's "Every bad-input case": one row
per test of tests/scorer/bad_input.rs and tests/trainer/bad_input.rs (the
test's name says the case and what happens). tests/trainer/readme.rs checks
that the page lists every one.

Usage: python3 scripts/bad_input_table.py > /tmp/rows.md
"""
import os
import re

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")


def cases(path):
    text = open(os.path.join(ROOT, path)).read()
    # `name(d, tok) =>` inside bad_input! blocks, and #[test] functions.
    macro = re.findall(r"^    ([a-z0-9_]+)\(d, _?tok\) =>", text, re.M)
    tests = re.findall(r"#\[test\]\s*\n(?:\s*#\[[^\]]*\]\s*\n)*\s*fn ([a-z0-9_]+)\(", text)
    return macro + tests


def main():
    print("| binary | case (the test's name) |")
    print("|---|---|")
    for binary, path in (("scorer", "tests/scorer/bad_input.rs"), ("trainer", "tests/trainer/bad_input.rs")):
        for name in cases(path):
            print(f"| {binary} | `{name}` |")


if __name__ == "__main__":
    main()
