"""Copy a JSONL(.zst) corpus and inject synthetic noise with known labels.

Each noise span becomes its own record, inserted after a randomly chosen
original document, with id "noise:<kind>:<n>" so that every token of it can be
traced through documents.parquet (doc_id -> original_id). Kinds:
  random     random printable characters (as in binary garbage or encodings)
  boilerplate  a repeated navigation/cookie/footer line
  shuffled   the words of a span of a real document in random order
Deterministic for a given --seed. Usage:
  python3 scripts/inject_noise.py IN.jsonl.zst OUT.jsonl.zst [--rate 0.3] [--seed 0]
"""
import argparse
import json
import random
import string
import subprocess

BOILERPLATE = [
    "Home | Products | Blog | Contact us | Privacy policy | Terms of use | Sitemap",
    "We use cookies to improve your experience. By continuing you accept our cookie policy. Accept all | Reject",
    "Copyright (c) 2024 Example Media Group. All rights reserved. Follow us on social media.",
]


def read(path):
    raw = subprocess.run(["zstd", "-dc", path], check=True, capture_output=True).stdout if path.endswith(".zst") else open(path, "rb").read()
    return [json.loads(l) for l in raw.decode("utf-8").splitlines() if l.strip()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("src")
    ap.add_argument("dst")
    ap.add_argument("--rate", type=float, default=0.3, help="noise records per original document")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    docs = read(a.src)
    out, n, chars = [], 0, {"random": 0, "boilerplate": 0, "shuffled": 0}
    for d in docs:
        out.append({"id": str(d.get("id")), "text": d["text"]})
        if rng.random() < a.rate:
            kind = rng.choice(["random", "boilerplate", "shuffled"])
            if kind == "random":
                text = "".join(rng.choice(string.ascii_letters + string.digits + string.punctuation + " ") for _ in range(rng.randint(200, 600)))
            elif kind == "boilerplate":
                text = "\n".join(rng.choice(BOILERPLATE) for _ in range(rng.randint(3, 8)))
            else:
                words = d["text"].split()
                start = rng.randint(0, max(0, len(words) - 120))
                span = words[start:start + 120]
                rng.shuffle(span)
                text = " ".join(span)
            out.append({"id": f"noise:{kind}:{n}", "text": text})
            chars[kind] += len(text)
            n += 1
    payload = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out).encode("utf-8")
    if a.dst.endswith(".zst"):
        subprocess.run(["zstd", "-q", "-f", "-o", a.dst], input=payload, check=True)
    else:
        open(a.dst, "wb").write(payload)
    print(f"{len(docs)} documents, {n} noise records injected, characters by kind: {chars}")


if __name__ == "__main__":
    main()
