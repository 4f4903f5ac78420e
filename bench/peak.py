#!/usr/bin/env python3
"""The matrix-multiply rate PyTorch reaches on this machine, for bench/peak.sh: an n × n × n
product (torch.matmul: oneDNN/MKL underneath) in float32 and bfloat16, best of REPS after one
warm-up, on THREADS threads. One JSON line per dtype, as crates/model/examples/gemm_peak.rs.

usage: peak.py N REPS THREADS
"""
import json
import sys
import time

import torch

n, reps, threads = (int(x) for x in sys.argv[1:4])
torch.set_num_threads(threads)
for name, dtype in (("f32", torch.float32), ("bf16", torch.bfloat16)):
    a = torch.randn(n, n).to(dtype)
    b = torch.randn(n, n).to(dtype)
    a @ b  # warm-up
    best = float("inf")
    for _ in range(max(reps, 1)):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    print(json.dumps({"impl": f"torch {torch.__version__}", "dtype": name, "n": n,
                      "threads": threads, "gflops": round(2 * n**3 / best / 1e9, 1)}))
