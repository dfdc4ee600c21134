#!/usr/bin/env python3
"""Checks that transformers loads checkpoints this project wrote: the class
it picks, and that no weight is missing or left unused.

    .venv-fixtures/bin/python scripts/check_hf_load.py runs/x/final ...
"""

import sys

import transformers as T


def main():
    bad = 0
    for d in sys.argv[1:]:
        m, info = T.AutoModelForCausalLM.from_pretrained(d, output_loading_info=True)
        problems = {k: v for k, v in info.items() if v}
        print(f"{d}: {type(m).__name__} ({m.config.model_type}), "
              f"{sum(p.numel() for p in m.parameters())} parameters, "
              f"{'OK' if not problems else problems}")
        bad += bool(problems)
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
