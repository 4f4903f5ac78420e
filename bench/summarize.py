#!/usr/bin/env python3
"""Summarises bench/compare_pytorch.sh results: medians over reps, and rewardkit / PyTorch ratios.

usage: summarize.py RESULTS_DIR WARMUP_STEPS
"""
import glob
import json
import os
import statistics
import sys


def rk_train_rate(run, warmup):
    # Steady state: pairs over steps warmup+1.. / wall time of those steps (one log line per step).
    steps = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if '"kind":"train"' in l]
    steady = [s for s in steps if s["step"] > warmup]
    pairs = 8 * len(steady)
    wall = sum(8 / s["pairs_per_s"] for s in steady)
    return pairs / wall


def rk_train_positions(run, warmup):
    # Positions computed (padding included) and real tokens per pair over the steady steps.
    steps = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if '"kind":"train"' in l]
    steady = [s for s in steps if s["step"] > warmup and "padded_tokens_per_s" in s]
    if not steady:
        return None
    secs = [8 / s["pairs_per_s"] for s in steady]
    pairs = 8 * len(steady)
    padded = sum(s["padded_tokens_per_s"] * t for s, t in zip(steady, secs))
    real = sum(s["tokens_per_s"] * t for s, t in zip(steady, secs))
    return padded / pairs, real / pairs


def padding_table(out, warmup, rows):
    """Work per pair on both sides, and speed in positions computed per second."""
    lines = []
    for m, r in rows.items():
        path = f"{out}/{m}_torch_padding.json"
        rk_runs = sorted(d for d in glob.glob(f"{out}/{m}_rk_r*") if os.path.isdir(d))
        rk_pos = [rk_train_positions(d, warmup) for d in rk_runs]
        rk_eval = [json.load(open(d + ".eval.json"))["timing"] for d in rk_runs]
        if not os.path.exists(path) or None in rk_pos or "padded_tokens_per_s" not in rk_eval[0]:
            continue
        t = json.load(open(path))
        med = statistics.median
        rk_train_pp = med(p[0] for p in rk_pos)
        rk_eval_pp = med(e["padded_tokens_per_s"] / e["pairs_per_s"] for e in rk_eval)
        t_train_pp, t_eval_pp = t["train"]["padded_tokens_per_pair"], t["eval"]["padded_tokens_per_pair"]
        train_ratio = (r["rk_train"] * rk_train_pp) / (r["torch_train"] * t_train_pp)
        eval_ratio = (r["rk_eval"] * rk_eval_pp) / (r["torch_eval"] * t_eval_pp)
        lines.append(f"| {m} | {t_train_pp:.0f} / {rk_train_pp:.0f} | **{train_ratio:.2f}×** | "
                     f"{t_eval_pp:.0f} / {rk_eval_pp:.0f} | **{eval_ratio:.2f}×** | "
                     f"{t['eval_pairs_identical_after_truncation']} of {t['eval_pairs']} |")
    if lines:
        print("\nWork per pair: positions computed (padding included), PyTorch / rewardkit, and the speed ratio "
              "in positions per second (rewardkit sorts by length, the harness pads random batches to the longest):\n")
        print("| model | train positions/pair | train positions/s ratio | score positions/pair | score positions/s ratio | PyTorch eval pairs identical after its truncation |")
        print("|---|---|---|---|---|---|")
        print("\n".join(lines))


def main(out, warmup):
    rows = {}
    for m in ("minilm", "gpt2-small-6l"):
        torch_runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{m}_torch_r*.json"))]
        rk_runs = sorted(d for d in glob.glob(f"{out}/{m}_rk_r*") if os.path.isdir(d))
        if not torch_runs or not rk_runs:
            continue
        rk_train = [rk_train_rate(d, warmup) for d in rk_runs]
        rk_eval = [json.load(open(d + ".eval.json"))["timing"]["pairs_per_s"] for d in rk_runs]
        rk_acc = [json.load(open(d + ".eval.json"))["overall"]["accuracy"]["accuracy"] for d in rk_runs]
        rk_rss = [int(open(d + ".train.rss").read().split()[-1]) / 1024 for d in rk_runs]
        rk_eval_rss = [int(open(d + ".eval.rss").read().split()[-1]) / 1024 for d in rk_runs]
        t_train = [r["train_pairs_per_s"] for r in torch_runs]
        t_eval = [r["eval_pairs_per_s"] for r in torch_runs]
        t_rss = [r["peak_rss_mib"] for r in torch_runs]
        t_acc = [r["eval_accuracy"] for r in torch_runs]
        med = statistics.median
        rows[m] = dict(
            reps=len(rk_runs),
            torch_train=med(t_train), rk_train=med(rk_train), train_ratio=med(rk_train) / med(t_train),
            torch_eval=med(t_eval), rk_eval=med(rk_eval), eval_ratio=med(rk_eval) / med(t_eval),
            torch_rss=med(t_rss), rk_rss=med(rk_rss), rk_eval_rss=med(rk_eval_rss),
            torch_acc=med(t_acc), rk_acc=med(rk_acc),
            per_run=f"torch train {t_train} eval {t_eval}; rewardkit train {[round(x, 2) for x in rk_train]} eval {[round(x, 2) for x in rk_eval]}",
        )
    print(f"# rewardkit vs PyTorch ({out})\n")
    print("| model | reps | train pairs/s torch | rewardkit | ratio | score pairs/s torch | rewardkit | ratio | peak RSS MiB torch (train) | rewardkit train / score | eval acc torch / rewardkit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for m, r in rows.items():
        print(f"| {m} | {r['reps']} | {r['torch_train']:.2f} | {r['rk_train']:.2f} | **{r['train_ratio']:.2f}×** | "
              f"{r['torch_eval']:.2f} | {r['rk_eval']:.2f} | **{r['eval_ratio']:.2f}×** | {r['torch_rss']:.0f} | "
              f"{r['rk_rss']:.0f} / {r['rk_eval_rss']:.0f} | {r['torch_acc']:.3f} / {r['rk_acc']:.3f} |")
    print()
    for m, r in rows.items():
        print(f"- {m}: {r['per_run']}")
    padding_table(out, warmup, rows)
    print("\nScoring: 32 pairs (64 sequences) per forward pass on both sides; sequences/s = 2 × pairs/s.")
    print("Accuracy after 25 steps differs by design (different data order and head init); it is shown as a sanity check.")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]))
