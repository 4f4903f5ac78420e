"""The table of scripts/labels.sh: mean ± sd over seeds of each variant's held-out evaluation
(the `final_eval` of `rewardkit train --json`). Usage: labels_table.py OUT > table.md; also
writes OUT/table.json with every seed's figures."""

import json
import statistics
import sys
from pathlib import Path

out = Path(sys.argv[1])
ROWS = [
    ("alpaca", "soft", "AlpacaEval, p_chosen as the target (default)"),
    ("alpaca", "hard", "AlpacaEval, --hard-labels"),
    ("pandalm", "skip", "PandaLM, ties skipped (default)"),
    ("pandalm", "train", "PandaLM, --ties train"),
]


def figures(summary):
    e = summary["final_eval"]
    return {
        "accuracy": e["accuracy"]["accuracy"],
        "ece": e["calibration"]["ece"],
        "log_loss": e["calibration"]["log_loss"],
        "mean_gap": e["gap"]["mean"],
        "ties_mean_abs_gap": e["ties"]["mean_abs_gap"],
        "soft_cross_entropy": (e["calibration"].get("soft_labels") or {}).get("cross_entropy"),
        "label_entropy": (e["calibration"].get("soft_labels") or {}).get("label_entropy"),
        "soft_mean_abs_error": (e["calibration"].get("soft_labels") or {}).get("mean_abs_error"),
        "held_out": e["pairs"],
        "held_out_ties": e["ties"]["n"],
        "train_pairs": summary["train_pairs"],
        "trained_ties": summary["trained_ties"],
        "skipped_ties": summary["skipped_ties"],
        "soft_labels": summary["soft_labels"],
        "seconds": summary["seconds"],
    }


def cell(values, digits=3):
    values = [v for v in values if v is not None]
    if not values:
        return "–"
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.stdev(values):.{digits}f}"


table = {}
print("| data, variant | seeds | training set | held out | accuracy | ECE | log-loss | mean gap | ties' mean abs gap | cross-entropy vs labels (floor) | mean abs(σ(Δ) − p) |")
print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
for data, variant, name in ROWS:
    runs = sorted((out / data).glob(f"{variant}-s*/summary.json"))
    if not runs:
        continue
    fs = [figures(json.loads(r.read_text())) for r in runs]
    table[f"{data}/{variant}"] = {r.parent.name: f for r, f in zip(runs, fs)}
    f0 = fs[0]
    # The pairs the run could draw from (an AlpacaEval run sees only its STEPS × 8).
    trained = f"{f0['train_pairs']} ({f0['trained_ties']} ties, {f0['soft_labels']} soft)"
    held = f"{f0['held_out']} ({f0['held_out_ties']} ties)"
    col = lambda k: cell([f[k] for f in fs])
    print(
        f"| {name} | {len(fs)} | {trained} | {held} | {col('accuracy')} | {col('ece')} | "
        f"{col('log_loss')} | {col('mean_gap')} | {col('ties_mean_abs_gap')} | "
        f"{col('soft_cross_entropy')} ({cell([f['label_entropy'] for f in fs[:1]])}) | "
        f"{col('soft_mean_abs_error')} |"
    )
(out / "table.json").write_text(json.dumps(table, indent=2) + "\n")
