#!/usr/bin/env python3
"""Side-by-side benchmark: this project (candle, Rust) against PyTorch eager
(transformers LlamaForCausalLM) on the same CPU, configs, data and threads.

    python3 bench/run.py                 # both configs, ~8 min on 2 cores
    python3 bench/run.py --configs d256  # the tiny one only
    python3 bench/run.py --mkl           # our side built with `--features mkl`
                                         # (MKL from PyPI wheels, scripts/fetch-mkl.sh)
    python3 bench/run.py --mkl-runtime   # the default build, MKL's shared library
                                         # loaded at run time (fetch-mkl.sh --runtime)

Our binaries pick their GEMM when they start (shared/src/kernels/blas.rs): MKL
if its shared library is found and the CPU is an Intel one, else the built-in
`gemm` crate. Without --mkl-runtime this sets RHO1_GEMM=builtin, so the
default row measures the pure-Rust build whatever is installed.

It builds the release binaries, creates `.venv-bench` from PyPI (torch,
transformers, pyarrow; ~5.8 GB, once), trains a vocab-8192 tokenizer on the
embedded data, makes one seeded random checkpoint per config with
transformers, scores a slice of the noisy corpus with it, then alternates the
two sides round by round so drift hits both. Printed: median over rounds
(each round's figure is itself a median over steps) and the min..max spread.

Only the standard library is used here; PyTorch runs in bench/torch_side.py.
"""

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, ".venv-bench")
PINS = ["torch==2.15.0", "transformers==5.24.0", "pyarrow", "safetensors"]
CONFIGS = {
    # name: (hidden, intermediate, layers, heads); vocab 8192, untied, f32
    "d256": (256, 704, 4, 4),
    "d512": (512, 1408, 8, 8),
}
SCORER = TRAINER = None  # set by build()


def build(mkl):
    """Builds the release binaries (with MKL into target/mkl, so that the
    default build stays as it is) and points SCORER and TRAINER at them."""
    global SCORER, TRAINER
    cmd = ["cargo", "build", "--release", "-q", "-p", "scorer", "-p", "trainer"]
    env, target = dict(os.environ), os.path.join(ROOT, "target")
    if mkl:
        root = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch-mkl.sh")],
                              capture_output=True, text=True, check=True).stdout.strip()
        target = os.path.join(ROOT, "target", "mkl")
        env.update(MKLROOT=root, CARGO_TARGET_DIR=target)
        cmd += ["--features", "scorer/mkl,trainer/mkl"]
    subprocess.run(cmd, cwd=ROOT, check=True, env=env)
    SCORER = os.path.join(target, "release", "scorer")
    TRAINER = os.path.join(target, "release", "trainer")


def cpu_model():
    """The CPU as /proc/cpuinfo names it, with its family/model numbers."""
    info = {}
    try:
        for line in open("/proc/cpuinfo"):
            k, _, v = line.partition(":")
            info.setdefault(k.strip(), v.strip())
            if not line.strip():
                break
    except OSError:
        return "unknown CPU"
    flags = info.get("flags", "").split()
    simd = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return (f"{info.get('model name', '?')} ({info.get('vendor_id', '?')}, family "
            f"{info.get('cpu family', '?')} model {info.get('model', '?')}, {os.cpu_count()} CPUs, {simd})")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def run(cmd, env=None):
    """Runs cmd; returns (stdout, stderr). Exits with its stderr if it fails."""
    p = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        sys.exit(f"command failed ({p.returncode}): {' '.join(cmd)}\n{p.stderr}")
    return p.stdout, p.stderr


def run_rss(cmd, env=None):
    """Runs cmd and returns (stdout, stderr, peak RSS in MB of that child)."""
    # communicate() would reap the child; read the pipes (stdout is small),
    # then reap it with wait4 for its own rusage.
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    err = p.stderr.read()
    out = p.stdout.read()
    _, status, ru = os.wait4(p.pid, 0)
    rc = os.waitstatus_to_exitcode(status)
    p.returncode = rc
    if rc != 0:
        sys.exit(f"command failed ({rc}): {' '.join(cmd)}\n{err}")
    return out, err, ru.ru_maxrss / 1024


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    probe = "import torch, transformers, pyarrow; print(torch.__version__, transformers.__version__)"
    if os.path.exists(py):
        r = subprocess.run([py, "-c", probe], capture_output=True, text=True)
        if r.returncode == 0:
            return py, r.stdout.strip()
    log(f"creating {VENV} ({' '.join(PINS)}; ~5.8 GB, a few minutes)")
    subprocess.run([sys.executable, "-m", "venv", VENV], check=True)
    subprocess.run([py, "-m", "pip", "install", "-q", *PINS], check=True)
    r = subprocess.run([py, "-c", probe], capture_output=True, text=True, check=True)
    return py, r.stdout.strip()


def env_threads(threads):
    env = dict(os.environ)
    for k in ("RAYON_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env[k] = str(threads)
    return env


def make_corpus(work, chars):
    """The first noisy documents up to `chars` characters, as plain JSONL."""
    path = os.path.join(work, "corpus-1x.jsonl")
    if os.path.exists(path):
        return path
    raw = subprocess.run(
        ["zstd", "-dc", os.path.join(ROOT, "data", "noisy_web.jsonl.zst")],
        capture_output=True, text=True, check=True,
    ).stdout
    lines, total = [], 0
    for line in raw.splitlines():
        lines.append(line)
        total += len(json.loads(line)["text"])
        if total >= chars:
            break
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(path + ".tmp", path)
    return path


def spread(v):
    return statistics.median(v), min(v), max(v)


def fmt(v, unit="", digits=0):
    m, lo, hi = spread(v)
    return f"{m:,.{digits}f}{unit} ({lo:,.{digits}f}..{hi:,.{digits}f})"


def main():
    ap = argparse.ArgumentParser(description="candle (ours) vs PyTorch on this CPU")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=3, help="measured steps per kind per round")
    ap.add_argument("--score-windows", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--work", default=os.path.join(ROOT, "runs", "bench"))
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--mkl", action="store_true",
                    help="build our side with --features mkl (MKL from PyPI wheels, ~500 MB once)")
    ap.add_argument("--mkl-runtime", action="store_true",
                    help="default build, MKL's shared library loaded at run time "
                         "(scripts/fetch-mkl.sh --runtime, ~550 MB once)")
    ap.add_argument("--memory-repeats", type=int, default=3)
    a = ap.parse_args()
    if a.mkl and a.mkl_runtime:
        ap.error("--mkl and --mkl-runtime are two different builds: pick one")

    os.makedirs(a.work, exist_ok=True)
    log("building release binaries" + (" with MKL" if a.mkl else ""))
    build(a.mkl)
    py, versions = ensure_venv()
    env = env_threads(a.threads)
    if a.mkl_runtime:
        lib = subprocess.run(["bash", os.path.join(ROOT, "scripts", "fetch-mkl.sh"), "--runtime"],
                             capture_output=True, text=True, check=True).stdout.strip()
        env.update(RHO1_GEMM="mkl", RHO1_MKL_DIR=lib)
    elif not a.mkl:
        env["RHO1_GEMM"] = "builtin"
    torch_side = [py, os.path.join(ROOT, "bench", "torch_side.py"), "--threads", str(a.threads)]

    tok = os.path.join(a.work, "tokenizer.json")
    if not os.path.exists(tok):
        log("training a vocab-8192 tokenizer")
        run([SCORER, "tokenizer", "--corpus", os.path.join(ROOT, "data"), "--vocab-size", "8192", "--out", tok], env)
    corpus = make_corpus(a.work, a.score_windows * 256 * 4 * 2)

    results = {}
    for name in a.configs:
        h, i, layers, heads = CONFIGS[name]
        cdir = os.path.join(a.work, name)
        ckpt = os.path.join(cdir, "checkpoint")
        os.makedirs(cdir, exist_ok=True)
        if not os.path.exists(os.path.join(ckpt, "model.safetensors")):
            cfg = dict(
                vocab_size=8192, hidden_size=h, intermediate_size=i, num_hidden_layers=layers,
                num_attention_heads=heads, num_key_value_heads=heads, max_position_embeddings=4096,
                rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                bos_token_id=None, eos_token_id=None, pad_token_id=None,
            )
            with open(os.path.join(cdir, "init.json"), "w") as f:
                json.dump(cfg, f)
            log(f"{name}: random checkpoint (transformers, seed 0)")
            run([*torch_side, "init", "--config", os.path.join(cdir, "init.json"), "--out", ckpt], env)
            shutil.copy(tok, os.path.join(ckpt, "tokenizer.json"))
        r = {k: [] for k in ("ours_score", "torch_score", "ours_clm", "ours_slm", "torch_clm",
                             "torch_slm", "torch_slm_online", "read_share", "diff")}
        extra = {}
        for rnd in range(a.rounds):
            sides = ["ours", "torch"] if rnd % 2 == 0 else ["torch", "ours"]
            for side in sides:
                log(f"{name} round {rnd + 1}/{a.rounds}: {side}")
                sset = os.path.join(cdir, f"scored-r{rnd}")
                if side == "ours":
                    shutil.rmtree(sset, ignore_errors=True)
                    _, err = run([SCORER, "score", "--model", ckpt, "--corpus", corpus, "--out", sset,
                                     "--batch-size", "8", "--threads", str(a.threads)], env)
                    line = [l for l in err.splitlines() if l.startswith("scoring pass:")][0]
                    ntok, secs = int(line.split()[2]), float(line.split()[5].rstrip("s"))
                    r["ours_score"].append(ntok / secs)
                    out, _ = run([TRAINER, "bench", "--data", sset, "--model-size",
                                     os.path.join(ckpt, "config.json"), "--batch-size", "8",
                                     "--steps", str(a.steps), "--json"], env)
                    j = json.loads(out)
                    n = j["tokens_per_step"]
                    r["ours_clm"].append(n / j["clm"]["median_s"])
                    r["ours_slm"].append(n / j["slm"]["median_s"])
                    r["read_share"].append(j["read_s"] / j["slm"]["median_s"])
                    extra.setdefault("read_ms", []).append(1e3 * j["read_s"])
                    extra["flops"] = j["train_flops_per_step"]
                    extra["params"] = j["params"]
                    extra.setdefault("gemm_candle", []).append(j["gemm_gflops"])
                    extra["backend"] = j.get("gemm_backend", "gemm-crate")
                    extra.setdefault("ours_clm_s", []).append(j["clm"]["median_s"])
                else:
                    # PyTorch reads the windows our scorer wrote (this round's or the
                    # last one's): same tokens, and its losses are checked against ours.
                    sdir = os.path.join(cdir, f"scored-r{rnd if rnd % 2 == 0 else rnd - 1}")
                    out, _ = run([*torch_side, "score", "--model", ckpt, "--set", sdir,
                                     "--windows", str(a.score_windows)], env)
                    j = json.loads(out)
                    r["torch_score"].append(j["tok_per_s"])
                    r["diff"].append(j["max_abs_diff_vs_set"])
                    out, _ = run([*torch_side, "train", "--model", ckpt, "--set", sdir,
                                     "--steps", str(a.steps)], env)
                    j = json.loads(out)
                    n = j["tokens_per_step"]
                    r["torch_clm"].append(n / j["clm"]["median_s"])
                    r["torch_slm"].append(n / j["slm"]["median_s"])
                    r["torch_slm_online"].append(n / j["slm_online"]["median_s"])
                    extra.setdefault("gemm_torch", []).append(j["gemm_gflops"])
        results[name] = (r, extra)

    memory = None
    if not a.skip_memory:
        memory = measure_memory(a, env, corpus)

    report(a, versions, results, memory)
    # Speed figures of a model that computes the wrong losses mean nothing.
    worst = max((max(r["diff"]) for r, _ in results.values() if r["diff"]), default=0.0)
    if worst > 1e-3:
        sys.exit(f"FAILED: our per-token losses differ from PyTorch's by up to {worst:.3g} nats")


def measure_memory(a, env, corpus):
    """Peak RSS of `scorer score` and `trainer train` on a set of 1x and 8x the size."""
    name = a.configs[0]
    cdir = os.path.join(a.work, name)
    ckpt = os.path.join(cdir, "checkpoint")
    mdir = os.path.join(a.work, "memory")
    shutil.rmtree(mdir, ignore_errors=True)
    os.makedirs(mdir)
    x8 = os.path.join(mdir, "corpus-8x")
    os.makedirs(x8)
    for k in range(8):
        shutil.copy(corpus, os.path.join(x8, f"copy{k}.jsonl"))
    # Peak RSS moves by +-10 MB between identical runs (2 MB transparent huge
    # pages, allocator segments): alternate the sizes and keep every repeat.
    out = {}
    for rep in range(a.memory_repeats):
        for label, src in (("1x", corpus), ("8x", x8)):
            log(f"memory {rep + 1}/{a.memory_repeats}: scorer score on {label}")
            sset = os.path.join(mdir, f"set-{label}")
            shutil.rmtree(sset, ignore_errors=True)
            _, err, rss = run_rss([SCORER, "score", "--model", ckpt, "--corpus", src, "--out", sset,
                                   "--batch-size", "8", "--threads", str(a.threads),
                                   "--shard-tokens", str(16 * 256)], env)
            windows = json.load(open(os.path.join(sset, "manifest.json")))["num_windows"]
            out.setdefault(f"scorer_{label}", []).append(rss)
            out[f"windows_{label}"] = windows
        for label in ("1x", "8x"):
            log(f"memory {rep + 1}/{a.memory_repeats}: trainer train on {label}")
            tdir = os.path.join(mdir, f"train-{label}")
            shutil.rmtree(tdir, ignore_errors=True)
            _, _, rss = run_rss([TRAINER, "train", "--data", os.path.join(mdir, f"set-{label}"),
                                 "--out", tdir, "--objective", "slm",
                                 "--init", ckpt, "--batch-size", "8", "--max-steps", "6",
                                 "--eval-every", "0", "--checkpoint-every", "0"], env)
            out.setdefault(f"trainer_{label}", []).append(rss)
    return out


def report(a, versions, results, memory):
    print()
    print(f"# candle (ours) vs PyTorch {versions} on this CPU: f32, {a.threads} threads, "
          f"batch 8 x 256, {a.rounds} alternating rounds, median (min..max over rounds)")
    print(f"CPU: {cpu_model()}")
    build = ("--features mkl" if a.mkl else
             "default features, MKL loaded at run time (RHO1_GEMM=mkl)" if a.mkl_runtime else
             "default features, built-in gemm crate (RHO1_GEMM=builtin)")
    print(f"our build: {build}")
    for name, (r, x) in results.items():
        h, i, layers, heads = CONFIGS[name]
        print(f"\n## {name}: hidden {h}, intermediate {i}, {layers} layers, {heads} heads, "
              f"vocab 8192 ({x['params'] / 1e6:.1f}M params)")
        rows = [
            ("scoring tok/s", "ours_score", "torch_score"),
            ("CLM training tok/s", "ours_clm", "torch_clm"),
            ("SLM training tok/s (precomputed ref)", "ours_slm", "torch_slm"),
            ("SLM ours vs PyTorch online-ref SLM", "ours_slm", "torch_slm_online"),
        ]
        print(f"| | ours | PyTorch | ours / PyTorch |\n|---|---|---|---|")
        for label, o, t in rows:
            ratio = [x / y for x, y in zip(r[o], r[t])]
            print(f"| {label} | {fmt(r[o])} | {fmt(r[t])} | {fmt(ratio, digits=2)} |")
        ours_ratio = [c / s for c, s in zip(r["ours_clm"], r["ours_slm"])]
        torch_online = [c / s for c, s in zip(r["torch_clm"], r["torch_slm_online"])]
        torch_pre = [c / s for c, s in zip(r["torch_clm"], r["torch_slm"])]
        print(f"\nSLM/CLM step time: ours {fmt(ours_ratio, digits=3)}; PyTorch precomputed "
              f"{fmt(torch_pre, digits=3)}; PyTorch online reference {fmt(torch_online, digits=3)}")
        print(f"reading ref losses + tokens of a batch: {fmt(x['read_ms'], ' ms', 3)} = "
              f"{fmt([100 * v for v in r['read_share']], '%', 3)} of an SLM step")
        gemm = max(statistics.median(x["gemm_candle"]), statistics.median(x.get("gemm_torch", [0])))
        ours_gf = [x["flops"] / s / 1e9 for s in x["ours_clm_s"]]
        torch_gf = [x["flops"] / (8 * 256 / v) / 1e9 for v in r["torch_clm"]]
        print(f"achieved GFLOP/s in a CLM step: ours {fmt(ours_gf, digits=1)}, PyTorch "
              f"{fmt(torch_gf, digits=1)}; machine f32 GEMM 1024^3: ours ({x['backend']}) "
              f"{statistics.median(x['gemm_candle']):.0f}, MKL {statistics.median(x.get('gemm_torch', [0])):.0f}; "
              f"ours = {100 * statistics.median(ours_gf) / gemm:.0f}% of the faster")
        if r["diff"]:
            print(f"PyTorch per-token CE vs our scorer's ref_loss on the same windows: max |diff| "
                  f"{max(r['diff']):.2e}")
    if memory:
        print("\n## peak resident memory (MB), first config")
        w1, w8 = memory["windows_1x"], memory["windows_8x"]
        print(f"median (min..max) of {a.memory_repeats} alternating runs each")
        print(f"| | 1x ({w1} windows) | 8x ({w8} windows) | 8x / 1x (medians) |\n|---|---|---|---|")
        for label, key in (("scorer score", "scorer"), ("trainer train (6 SLM steps)", "trainer")):
            v1, v8 = memory[f"{key}_1x"], memory[f"{key}_8x"]
            ratio = statistics.median(v8) / statistics.median(v1)
            print(f"| {label} | {fmt(v1)} | {fmt(v8)} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
