#!/usr/bin/env python3
"""Side by side with the official PyTorch modules (../shared/bench/pytorch-reference), in one
interleaved run (ours, theirs, ours, theirs, ...), same thread count; prints the ratio of
medians (ours / PyTorch) and, for the DiT, the ratio of peak RSS of the two processes.

Setup (once): see ../shared/bench/pytorch-reference/README.md (an export of the official
repository in $LONGCAT_REF and a venv with torch 2.6; pass its python as --python).
Usage: scripts/bench_vs_pytorch.py --python VENV/bin/python [--rounds 2] [--only dit,attn,bsa,vae]
Build ours first: cargo build --release -p longcat-cli
"""
import argparse
import os
import re
import statistics
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REF_DIR = os.path.join(ROOT, "..", "shared", "bench", "pytorch-reference")

ap = argparse.ArgumentParser()
ap.add_argument("--python", required=True, help="python of the venv with torch")
ap.add_argument("--bin", default=os.path.join(ROOT, "target", "release", "longcat"))
ap.add_argument("--rounds", type=int, default=2)
ap.add_argument("--threads", type=int, default=2)
ap.add_argument("--only", default="attn,bsa,dit,vae")
args = ap.parse_args()
only = set(args.only.split(","))

env = dict(os.environ)
env["PERF_THREADS"] = str(args.threads)
env["RAYON_NUM_THREADS"] = str(args.threads)
env["PYTHONPATH"] = REF_DIR
if "LONGCAT_REF" not in env:
    sys.exit("set LONGCAT_REF to an export of the official repository (see the reference README)")


def run_with_rss(cmd):
    rfd, wfd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.dup2(wfd, 1)
        os.dup2(wfd, 2)
        os.close(rfd)
        os.execvpe(cmd[0], cmd, env)
    os.close(wfd)
    chunks = []
    with os.fdopen(rfd) as f:
        for line in f:
            chunks.append(line)
    _, status, usage = os.wait4(pid, 0)
    out = "".join(chunks)
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out}")
    return out, usage.ru_maxrss * 1024


def grab(pattern, text, what):
    m = re.search(pattern, text, re.M)
    if not m:
        sys.exit(f"could not find {what} in:\n{text}")
    return float(m.group(1))


py = [args.python]
ours = [args.bin, "bench"]
results = {}  # name -> {"ours": [...], "torch": [...], "ours_rss": [...], "torch_rss": [...]}


def add(name, side, value, rss=None):
    r = results.setdefault(name, {})
    r.setdefault(side, []).append(value)
    if rss is not None:
        r.setdefault(side + "_rss", []).append(rss)


for rnd in range(args.rounds):
    print(f"round {rnd + 1}/{args.rounds}", flush=True)
    if "attn" in only:
        out, _ = run_with_rss(ours + ["attention", "--tokens", "16384", "--heads", "2", "--head-dim", "64", "--reps", "3"])
        add("dense attention 16k, 2 heads, d64 (vs SDPA)", "ours", grab(r"^flash .*?([\d.]+) ms", out, "flash time"))
        out, _ = run_with_rss(py + [os.path.join(REF_DIR, "py_attn.py"), "--reps", "3"])
        add("dense attention 16k, 2 heads, d64 (vs SDPA)", "torch", grab(r"RESULT pytorch attn sdpa .*median_ms ([\d.]+)", out, "sdpa"))
        add("BSA 0.875 vs PyTorch dense SDPA (16k, 2 heads, d64)", "torch", grab(r"RESULT pytorch attn sdpa .*median_ms ([\d.]+)", out, "sdpa"))
    if "bsa" in only:
        out, _ = run_with_rss(ours + ["bsa", "--sparsity", "0.875", "--sparse-only", "--reps", "3"])
        add("BSA 0.875 vs PyTorch dense SDPA (16k, 2 heads, d64)", "ours", grab(r"^bsa sparsity 0.875\s+([\d.]+) ms", out, "bsa time"))
    if "dit" in only:
        out, rss = run_with_rss(ours + ["dit", "--reps", "1"])
        add("DiT mid forward", "ours", grab(r"^dit mid.*?tokens\s+([\d.]+) ms", out, "dit mid"), rss)
        out, rss = run_with_rss(py + [os.path.join(REF_DIR, "py_dit.py"), "mid", "--warmup", "1", "--reps", "1"])
        add("DiT mid forward", "torch", grab(r"RESULT pytorch dit mid .*median_ms ([\d.]+)", out, "py dit"), rss)
    if "vae" in only:
        out, _ = run_with_rss(ours + ["vae", "--reps", "3"])
        add("VAE decode (latent 2x8x8, base_dim 96)", "ours", grab(r"^vae decode.*?([\d.]+) ms", out, "vae decode"))
        out, _ = run_with_rss(py + [os.path.join(REF_DIR, "py_vae.py"), "--warmup", "1", "--reps", "3"])
        add("VAE decode (latent 2x8x8, base_dim 96)", "torch", grab(r"RESULT pytorch vae .*median_ms ([\d.]+)", out, "py vae"))

print()
print(f"{args.rounds} interleaved rounds, {args.threads} threads each side; ratio = median(ours) / median(PyTorch)")
print("| work | ours (ms) | PyTorch (ms) | ratio | peak RSS ours / PyTorch |")
print("| --- | --- | --- | --- | --- |")
for name, r in results.items():
    if "ours" not in r or "torch" not in r:
        continue
    mo, mt = statistics.median(r["ours"]), statistics.median(r["torch"])
    rss = ""
    if "ours_rss" in r and "torch_rss" in r:
        a, b = max(r["ours_rss"]), max(r["torch_rss"])
        rss = f"{a / 2**20:.0f} / {b / 2**20:.0f} MiB = {a / b:.2f}"
    print(f"| {name} | {mo:.1f} | {mt:.1f} | {mo / mt:.2f} | {rss} |")
