#!/usr/bin/env python3
"""Summarises bench/trl-parity.sh: held-out accuracy per setting over seeds (mean ± sd), and each run.

usage: trl_parity_summary.py RESULTS_DIR

TRL's accuracy is its harness's `eval_accuracy` (reward(chosen) > reward(rejected)); rewardkit's
is counted the same way from the run's --save-scores file (a tie counts as wrong, where
`rewardkit eval` would count it as half), so the two columns mean the same thing.
"""
import glob
import json
import math
import os
import re
import statistics
import sys

out = sys.argv[1]
runs = {}  # setting -> [(seed, accuracy, training pairs)]


def add(setting, seed, acc, pairs):
    runs.setdefault(setting, []).append((seed, acc, pairs))


for path in sorted(glob.glob(os.path.join(out, "trl-s*.json"))):
    r = json.load(open(path))
    seed = int(re.search(r"-s(\d+)\.json$", path).group(1))
    add("TRL RewardTrainer (pooler, one segment)", seed, r["eval_accuracy"], r["train_pairs"])

names = {
    "pooler": "rewardkit, --pooling pooler (text pair)",
    "mean": "rewardkit, --pooling mean (text pair)",
    "pooler-sequence": "rewardkit, --pooling pooler --input-style sequence (one segment)",
}
order = {name: i for i, name in enumerate(names)}
paths = glob.glob(os.path.join(out, "rk-*-s*.scores.jsonl"))
key = lambda p: (order.get(re.search(r"rk-(.+)-s\d+\.scores", p).group(1), len(order)), p)
for path in sorted(paths, key=key):
    m = re.search(r"rk-(.+)-s(\d+)\.scores\.jsonl$", path)
    rows = [json.loads(line) for line in open(path) if line.strip()]
    wins = sum(r["chosen_score"] > r["rejected_score"] for r in rows)
    summary = json.load(open(path.replace(".scores.jsonl", ".train.json")))
    add(names.get(m.group(1), m.group(1)), int(m.group(2)), wins / len(rows), summary["train_pairs"])

print("# bench/trl-parity.sh: held-out accuracy on the HH anchor split (470 pairs), TRL's anchor settings\n")
print("| setting | seeds | accuracy mean ± sd | each seed | training pairs |")
print("| --- | --- | --- | --- | --- |")
for setting, rs in runs.items():
    accs = [a for _, a, _ in rs]
    sd = statistics.stdev(accs) if len(accs) > 1 else float("nan")
    each = ", ".join(f"{s}: {a:.3f}" for s, a, _ in sorted(rs))
    print(f"| {setting} | {len(rs)} | {statistics.mean(accs):.3f} ± {sd:.3f} | {each} | {rs[0][2]} |")
n = 470
print(f"\nThe 95% interval of one run's accuracy near 0.65 on {n} pairs is about "
      f"±{1.96 * math.sqrt(0.65 * 0.35 / n):.3f}; the sd above is the spread over seeds.")
