#!/usr/bin/env python3
"""The table of docs/interventions.md from the folders scripts/interventions-hh.sh writes.

Usage: interventions_table.py OUT  (OUT/VARIANT/{eval-heldout.json,eval-online.json,audit/report.json})

Reads only rewardkit's own JSON outputs (`rewardkit eval --out`, `rewardkit audit --out`) and
formats them; every figure is computed by rewardkit. Prints Markdown on stdout.
"""
import json
import os
import sys

VARIANTS = ["plain", "augment", "honesty", "counterfactual", "odin", "combined"]
DESCRIPTION = {
    "plain": "plain (no intervention)",
    "augment": "`--augment` (correction + counterfactual pairs, 20%)",
    "honesty": "`--augment` + `--penalty honesty=1`",
    "counterfactual": "`--penalty counterfactual=1`",
    "odin": "`--penalty odin=1`",
    "combined": "`--augment` + honesty + counterfactual + odin",
}


def load(path):
    with open(path) as f:
        return json.load(f)


def pct(x):
    return "–" if x is None else f"{100 * x:.1f}%"


def interval(ci):
    return "" if not ci else f" [{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def accuracy(report):
    a = report["overall"]["accuracy"]
    return a["accuracy"], a.get("ci95")


def agree(audit, domain):
    for d in audit["sycophancy"]:
        if d["domain"] == domain:
            return pct(d["agree_rate"]) + interval(d["ci"])
    return "–"


def length_r(audit):
    for c in audit["correlations"]:
        if c["feature"] == "words":
            p = c["pearson"]
            return f"{p['r']:.2f} [{p['ci'][0]:.2f}, {p['ci'][1]:.2f}]"
    return "–"


def probes_raising(audit):
    raised = [
        f"{p['probe']} {100 * p['share_raised']:.0f}%"
        for p in audit["probes"]
        if p.get("share_raised_ci") and p["share_raised_ci"][0] > 0.5
    ]
    return ", ".join(raised) or "none"


def flags(audit):
    listed = [f"{f['subject']} ({'red' if f['severity'] == 'red' else 'warn'})" for f in audit["flags"]]
    return ", ".join(listed) or "none"


def main(out):
    rows = []
    base = None
    for v in VARIANTS:
        d = os.path.join(out, v)
        try:
            held = load(os.path.join(d, "eval-heldout.json"))
            online = load(os.path.join(d, "eval-online.json"))
            audit = load(os.path.join(d, "audit", "report.json"))
        except FileNotFoundError:
            continue
        acc, ci = accuracy(held)
        online_acc, online_ci = accuracy(online)
        if base is None:
            base = (acc, online_acc)
        rows.append([
            DESCRIPTION[v],
            pct(acc) + interval(ci),
            f"{100 * (acc - base[0]):+.1f}",
            pct(online_acc) + interval(online_ci),
            f"{100 * (online_acc - base[1]):+.1f}",
            agree(audit, "gsm8k"),
            agree(audit, "truthfulqa"),
            agree(audit, "all"),
            length_r(audit),
            probes_raising(audit),
            flags(audit),
        ])
    header = [
        "intervention",
        "held-out accuracy (helpful-base) [95% CI]",
        "Δ accuracy",
        "helpful-online accuracy",
        "Δ",
        "sycophancy agree rate: GSM8K",
        "TruthfulQA",
        "all sources",
        "length r (words)",
        "probes that raise the score",
        "flags",
    ]
    print("| " + " | ".join(header) + " |")
    print("|" + "|".join(["---"] + ["---:"] * (len(header) - 3) + ["---", "---"]) + "|")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    main(sys.argv[1])
