#!/usr/bin/env python3
"""How much of the PyTorch baseline's work is padding, replayed from its own code and data order.

The harness (../shared/baselines/trl_reward_baseline.py, --variant torch) draws random batches of
8 pairs (a DataLoader with its seeded generator) and pads the 16 sequences of each to the longest;
it scores 32 pairs (64 sequences) per forward pass in file order. rewardkit sorts by length
(training: within windows of 50 batches; scoring: within each 64 pairs), so it computes fewer
padded positions per pair. This script counts, for the PyTorch side, the positions of the steady
training steps and of the steady scoring batches (the ones the harness times), and how many eval
pairs are identical after its right-side truncation (their two scores tie: counted wrong).

usage: padding.py RESULTS_DIR MODEL_DIR [--seed 42 --steps 25 --warmup 5 --max-length 128]
(run with the bench venv's python; prints JSON)
"""
import argparse
import json
import os
import sys

import torch
from transformers import AutoTokenizer

BASE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "shared", "baselines")
sys.path.insert(0, os.path.normpath(BASE))
from trl_reward_baseline import load_jsonl, tokenize_pairs  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("model")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--batch-pairs", type=int, default=8)
    ap.add_argument("--eval-batch-pairs", type=int, default=32)
    ap.add_argument("--max-length", type=int, default=128)
    a = ap.parse_args()
    tok = AutoTokenizer.from_pretrained(a.model)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    train = tokenize_pairs(load_jsonl(os.path.join(a.results, "train.jsonl")), tok, a.max_length)
    evals = tokenize_pairs(load_jsonl(os.path.join(a.results, "eval.jsonl")), tok, a.max_length)

    # The harness's batch order: the same DataLoader arguments, the same seeded generator.
    g = torch.Generator().manual_seed(a.seed)
    loader = torch.utils.data.DataLoader(range(len(train)), batch_size=a.batch_pairs, shuffle=True,
                                         generator=g, collate_fn=list)
    real = padded = pairs = 0
    step = 0
    while step < a.steps:
        for idx in loader:
            step += 1
            if step > a.warmup:
                lens = [len(train[i][k]) for i in idx for k in ("chosen_ids", "rejected_ids")]
                real += sum(lens)
                padded += len(lens) * max(lens)
                pairs += len(idx)
            if step >= a.steps:
                break

    e_real = e_padded = e_pairs = 0
    for b, i in enumerate(range(0, len(evals), a.eval_batch_pairs)):
        chunk = evals[i:i + a.eval_batch_pairs]
        lens = [len(e[k]) for k in ("chosen_ids", "rejected_ids") for e in chunk]
        if b > 0:  # the harness times batches after the first
            e_real += sum(lens)
            e_padded += len(lens) * max(lens)
            e_pairs += len(chunk)
    identical = sum(e["chosen_ids"] == e["rejected_ids"] for e in evals)
    print(json.dumps({
        "train": {"pairs": pairs, "real_tokens_per_pair": real / pairs, "padded_tokens_per_pair": padded / pairs},
        "eval": {"pairs": e_pairs, "real_tokens_per_pair": e_real / e_pairs, "padded_tokens_per_pair": e_padded / e_pairs},
        "eval_pairs_identical_after_truncation": identical,
        "eval_pairs": len(evals),
    }))


if __name__ == "__main__":
    main()
