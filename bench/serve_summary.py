"""Table of bench/serve.sh's runs: sequences/s, p50/p99 latency, peak RSS, CPU s per 1,000
sequences, and rewardkit / PyTorch ratios. Usage: python3 bench/serve_summary.py OUT_DIR"""

import re
import sys
from pathlib import Path

ITEMS = 8  # queries per request (bench/serve.sh)


def seconds(text):
    v, unit = re.match(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(v) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def parse(path):
    t = path.read_text()
    reqs = int(re.search(r"(\d+) requests in", t).group(1))
    dur = seconds(re.search(r"requests in ([\d.]+\w+),", t).group(1))
    non2xx = int(m.group(1)) if (m := re.search(r"Non-2xx or 3xx responses: (\d+)", t)) else 0
    lat = dict(re.findall(r"^\s+(50|99)%\s+([\d.]+\w+)", t, re.M))
    ticks, hz, load = re.search(r"cpu_ticks (\d+) hz (\d+) load ([\d.]+)", t).groups()
    ok = (reqs - non2xx) * ITEMS
    return {
        "seq_s": ok / dur,
        "p50": seconds(lat["50"]) * 1e3,
        "p99": seconds(lat["99"]) * 1e3,
        "cpu_per_1k": (int(ticks) / int(hz)) / max(ok, 1) * 1000,
        "refused": non2xx / max(reqs, 1),
        "load": float(load),
    }


def main(out):
    out = Path(out)
    rows = ["| models | concurrency | rewardkit seq/s | PyTorch seq/s | ratio | p50 ms rk / pt | p99 ms rk / pt | CPU s per 1k seq rk / pt | load |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for k in (1, 3):
        for c in (1, 8, 64):
            rk, pt = out / f"rk_m{k}_c{c}.wrk", out / f"torch_m{k}_c{c}.wrk"
            if not (rk.exists() and pt.exists()):
                continue
            a, b = parse(rk), parse(pt)
            ratio = f"**{a['seq_s'] / b['seq_s']:.2f}x**" if b["seq_s"] > 0 else "n/a"
            rows.append(f"| {k} | {c} | {a['seq_s']:.1f} | {b['seq_s']:.1f} | {ratio} | "
                        f"{a['p50']:.0f} / {b['p50']:.0f} | {a['p99']:.0f} / {b['p99']:.0f} | "
                        f"{a['cpu_per_1k']:.1f} / {b['cpu_per_1k']:.1f} | {a['load']:.1f} / {b['load']:.1f} |")
    rss = {p.stem: int(p.read_text().split()[-1]) / 1024 for p in out.glob("*.rss") if p.read_text().strip()}
    rows.append("")
    rows.append("Peak RSS (MB): " + ", ".join(f"{k} {v:.0f}" for k, v in sorted(rss.items())))
    rows.append(f"Requests of {ITEMS} queries; a run where one side completed nothing shows 0 and no ratio.")
    ov = out / "rk_overload_m1_c64.wrk"
    if ov.exists():
        o = parse(ov)
        rows.append(f"Overload (rewardkit, --max-concurrent-requests 16, concurrency 64): {o['seq_s']:.1f} seq/s answered, "
                    f"{o['refused']:.0%} of requests refused with 429, p50 {o['p50']:.0f} ms, p99 {o['p99']:.0f} ms.")
    print("\n".join(rows))


if __name__ == "__main__":
    main(sys.argv[1])
