#!/usr/bin/env python3
"""Independent reference implementation of `rewardkit eval --scores` metrics, in plain Python.

Reads a score file (JSONL: chosen_score, rejected_score, optional tie) and prints JSON with the
overall accuracy, ECE, Brier, log loss and fitted temperature, computed from the definitions in
the README (not from rewardkit's code). The CLI tests compare rewardkit's output with this.

usage: python3 scripts/reference_metrics.py SCORES.jsonl
"""
import json
import math
import sys


def sigmoid(x):
    return 1 / (1 + math.exp(-x)) if x >= 0 else math.exp(x) / (1 + math.exp(x))


def log_loss(gaps):
    # -log sigmoid(g) = log(1 + exp(-g))
    return sum(max(-g, 0) + math.log1p(math.exp(-abs(g))) for g in gaps) / len(gaps)


def ece(gaps):
    bins = [[0, 0.0, 0] for _ in range(10)]  # count, sum of confidence, right
    for g in gaps:
        c = sigmoid(abs(g))
        b = min(int(c * 10), 9)
        bins[b][0] += 1
        bins[b][1] += c
        bins[b][2] += g > 0
    return sum(n / len(gaps) * abs(r / n - s / n) for n, s, r in bins if n)


def temperature(gaps):
    # The loss mean -log sigmoid(a g) is convex in a = 1/T; its minimum is where the derivative
    # mean(-g * sigmoid(-a g)) crosses zero. Bisection on log a.
    slope = lambda a: sum(-g * sigmoid(-a * g) for g in gaps) / len(gaps)
    if slope(0) >= 0 or all(g > 0 for g in gaps):
        return None  # optimum at T = infinity (mean gap <= 0) or T -> 0 (separable)
    lo, hi = -30.0, 30.0
    for _ in range(100):
        mid = (lo + hi) / 2
        if slope(math.exp(mid)) < 0:
            lo = mid
        else:
            hi = mid
    return 1 / math.exp((lo + hi) / 2)


def main(path):
    gaps = []
    with open(path) as fh:
        for line in fh:
            if not line.strip():
                continue
            row = json.loads(line)
            if row.get("tie"):
                continue
            gaps.append(row["chosen_score"] - row["rejected_score"])
    n = len(gaps)
    out = {
        "n": n,
        "accuracy": sum(g > 0 for g in gaps) / n,
        "ece": ece(gaps),
        "brier": sum((1 - sigmoid(g)) ** 2 for g in gaps) / n,
        "log_loss": log_loss(gaps),
        "temperature": temperature(gaps),
    }
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main(sys.argv[1])
