#!/usr/bin/env python3
"""Summarises bench/compare_pytorch.sh results: medians over reps, and rewardkit / PyTorch ratios.

usage: summarize.py RESULTS_DIR WARMUP_STEPS [MODELS_DIR]

With MODELS_DIR (the harness's model folders) and RESULTS_DIR/peak.jsonl (bench/peak.sh), also
each row's GFLOP/s and its share of this CPU's measured f32 gemm peak.
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


def positions_per_pair(out, warmup, m):
    """Positions computed per pair (padding included): {side: (train, score)}, or None."""
    path = f"{out}/{m}_torch_padding.json"
    rk_runs = sorted(d for d in glob.glob(f"{out}/{m}_rk_r*") if os.path.isdir(d))
    rk_pos = [rk_train_positions(d, warmup) for d in rk_runs]
    rk_eval = [json.load(open(d + ".eval.json"))["timing"] for d in rk_runs]
    if not os.path.exists(path) or None in rk_pos or "padded_tokens_per_s" not in rk_eval[0]:
        return None
    t = json.load(open(path))
    med = statistics.median
    return {
        "torch": (t["train"]["padded_tokens_per_pair"], t["eval"]["padded_tokens_per_pair"]),
        "rk": (med(p[0] for p in rk_pos), med(e["padded_tokens_per_s"] / e["pairs_per_s"] for e in rk_eval)),
    }


def flops_per_position(model_dir, length):
    """Forward FLOPs per position: 2 per weight of every matmul of the blocks, plus attention's
    4·length·hidden per block (QKᵀ and the weighted values over `length` keys)."""
    c = json.load(open(os.path.join(model_dir, "config.json")))
    h = c.get("hidden_size") or c["n_embd"]
    layers = c.get("num_hidden_layers") or c["n_layer"]
    inter = c.get("intermediate_size") or c.get("n_inner") or 4 * h
    heads = c.get("num_attention_heads") or c["n_head"]
    kv = h * c.get("num_key_value_heads", heads) // heads
    gated = c.get("model_type") in ("llama", "qwen2", "mistral")
    per_block = 2 * h * h + 2 * h * kv + (3 if gated else 2) * h * inter
    return layers * (2 * per_block + 4 * length * h)


def flops_table(out, warmup, rows, models_dir):
    """GFLOP/s of every row (training 3× the forward pass) and its share of the f32 peak."""
    peak_path = os.path.join(out, "peak.jsonl")
    if not models_dir or not os.path.exists(peak_path):
        return
    peaks = [json.loads(l) for l in open(peak_path)]
    peak = {d: max(p["gflops"] for p in peaks if p["dtype"] == d) for d in ("f32", "bf16")}
    lines = []
    for m, r in rows.items():
        pos = positions_per_pair(out, warmup, m)
        if pos is None:
            continue
        # (positions of, dtype, train rate, score rate); autocast runs the harness's batches.
        sides = [("torch", "f32", r["torch_train"], r["torch_eval"]),
                 ("torch", "bf16", r["bf16_train"], r["bf16_eval"]),
                 ("rk", "f32", r["rk_train"], r["rk_eval"])]
        cells = {}
        for side, dtype, train_rate, eval_rate in sides:
            for k, (rate, mult) in enumerate(((train_rate, 3), (eval_rate, 1))):
                if rate is None:
                    cells[(side, dtype, k)] = "—"
                    continue
                pp = pos[side][k]
                g = rate * pp * mult * flops_per_position(os.path.join(models_dir, m), pp / 2) / 1e9
                cells[(side, dtype, k)] = f"{g:.0f} ({100 * g / peak[dtype]:.0f}%)"
        lines.append(f"| {m} | " + " | ".join(cells[(side, dtype, k)] for k in (0, 1) for side, dtype, _, _ in sides) + " |")
    print(f"\nGFLOP/s and share of this CPU's measured gemm peak in the dtype of the matmuls (f32 {peak['f32']:.0f}, "
          f"bf16 {peak['bf16']:.0f} GFLOP/s; bench/peak.sh: "
          + "; ".join(f"{p['impl']} {p['dtype']} {p['gflops']:.0f}" for p in peaks)
          + "). FLOPs: 2 per matmul weight per position, plus attention's 4·L·hidden per block with L the mean "
          "padded length, the training step 3× the forward pass:\n")
    print("| model | train PyTorch f32 | train PyTorch bf16 | train rewardkit | score PyTorch f32 | score PyTorch bf16 | score rewardkit |")
    print("|---|---|---|---|---|---|---|")
    print("\n".join(lines))


def padding_table(out, warmup, rows):
    """Work per pair on both sides, and speed in positions computed per second."""
    lines = []
    for m, r in rows.items():
        pos = positions_per_pair(out, warmup, m)
        if pos is None:
            continue
        t = json.load(open(f"{out}/{m}_torch_padding.json"))
        (t_train_pp, t_eval_pp), (rk_train_pp, rk_eval_pp) = pos["torch"], pos["rk"]
        train_ratio = (r["rk_train"] * rk_train_pp) / (r["torch_train"] * t_train_pp)
        eval_ratio = (r["rk_eval"] * rk_eval_pp) / (r["torch_eval"] * t_eval_pp)
        lines.append(f"| {m} | {t_train_pp:.0f} / {rk_train_pp:.0f} | **{train_ratio:.2f}×** | "
                     f"{t_eval_pp:.0f} / {rk_eval_pp:.0f} | **{eval_ratio:.2f}×** | "
                     f"{t['eval_pairs_identical_after_truncation']} of {t['eval_pairs']} |")
    if lines:
        print("\nWork per pair: positions computed (padding included), PyTorch / rewardkit, and the speed ratio "
              "in positions per second against PyTorch f32 (rewardkit sorts by length, the harness pads random batches to the longest):\n")
        print("| model | train positions/pair | train positions/s ratio | score positions/pair | score positions/s ratio | PyTorch eval pairs identical after its truncation |")
        print("|---|---|---|---|---|---|")
        print("\n".join(lines))


def main(out, warmup, models_dir=None):
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
        bf16_runs = [json.load(open(f)) for f in sorted(glob.glob(f"{out}/{m}_torchbf16_r*.json"))]
        b_train = [r["train_pairs_per_s"] for r in bf16_runs]
        b_eval = [r["eval_pairs_per_s"] for r in bf16_runs]
        med = statistics.median
        # The ratio is against PyTorch's faster setting, f32 or bf16 autocast, per column.
        best_train = max([med(t_train)] + ([med(b_train)] if b_train else []))
        best_eval = max([med(t_eval)] + ([med(b_eval)] if b_eval else []))
        rows[m] = dict(
            reps=len(rk_runs),
            torch_train=med(t_train), rk_train=med(rk_train), train_ratio=med(rk_train) / best_train,
            torch_eval=med(t_eval), rk_eval=med(rk_eval), eval_ratio=med(rk_eval) / best_eval,
            bf16_train=med(b_train) if b_train else None, bf16_eval=med(b_eval) if b_eval else None,
            torch_rss=med(t_rss), rk_rss=med(rk_rss), rk_eval_rss=med(rk_eval_rss),
            torch_acc=med(t_acc), rk_acc=med(rk_acc),
            per_run=f"torch train {t_train} eval {t_eval}; torch bf16 autocast train {b_train} eval {b_eval}; "
                    f"rewardkit train {[round(x, 2) for x in rk_train]} eval {[round(x, 2) for x in rk_eval]}",
        )
    fmt = lambda x: "—" if x is None else f"{x:.2f}"
    print(f"# rewardkit vs PyTorch ({out})\n")
    print("Ratios are rewardkit against PyTorch's faster setting (f32, or bf16 autocast).\n")
    print("| model | reps | train pairs/s torch f32 | torch bf16 | rewardkit | ratio | score pairs/s torch f32 | torch bf16 | rewardkit | ratio | peak RSS MiB torch (train) | rewardkit train / score | eval acc torch / rewardkit |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for m, r in rows.items():
        print(f"| {m} | {r['reps']} | {r['torch_train']:.2f} | {fmt(r['bf16_train'])} | {r['rk_train']:.2f} | **{r['train_ratio']:.2f}×** | "
              f"{r['torch_eval']:.2f} | {fmt(r['bf16_eval'])} | {r['rk_eval']:.2f} | **{r['eval_ratio']:.2f}×** | {r['torch_rss']:.0f} | "
              f"{r['rk_rss']:.0f} / {r['rk_eval_rss']:.0f} | {r['torch_acc']:.3f} / {r['rk_acc']:.3f} |")
    print()
    for m, r in rows.items():
        print(f"- {m}: {r['per_run']}")
    padding_table(out, warmup, rows)
    flops_table(out, warmup, rows, models_dir)
    print("\nScoring: 32 pairs (64 sequences) per forward pass on both sides; sequences/s = 2 × pairs/s.")
    print("Accuracy after 25 steps differs by design (different data order and head init); it is shown as a sanity check.")


if __name__ == "__main__":
    main(sys.argv[1], int(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else None)
