#!/usr/bin/env python3
"""Runs the PyTorch harness (../shared/baselines/trl_reward_baseline.py) under bf16 autocast,
`torch.autocast("cpu", dtype=torch.bfloat16)`: what a PyTorch user on a CPU with AVX512-BF16
would pick (matmuls in bf16, f32 master weights and reductions). The harness's own flags
follow; its --out-json gets `"autocast": "bf16"` added.

usage: autocast.py HARNESS [harness flags...]
"""
import json
import runpy
import sys

import torch

harness = sys.argv[1]
sys.argv = [harness] + sys.argv[2:]
with torch.autocast("cpu", dtype=torch.bfloat16):
    runpy.run_path(harness, run_name="__main__")
if "--out-json" in sys.argv:
    path = sys.argv[sys.argv.index("--out-json") + 1]
    result = json.load(open(path))
    result["autocast"] = "bf16"
    json.dump(result, open(path, "w"), indent=1)
