//! Plain-text tables for people (JSON is for machines: every command has `--json`).

use std::fmt::Write;

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{CellAlignment, Table};

use rewardkit_data::{DataStats, Distribution};
use rewardkit_eval::{EvalReport, PairReport};
use rewardkit_tokenize::TokenLengthStats;

/// A number with 3 decimals, or `–` when absent.
pub fn fmt_num(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{v:.3}"))
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".to_string(), |v| format!("{:.1}%", 100.0 * v))
}

/// A table with the project's style: borders only, every column but the first right-aligned.
pub(crate) fn new_table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY);
    t.set_header(header.to_vec());
    for i in 1..header.len() {
        if let Some(c) = t.column_mut(i) {
            c.set_cell_alignment(CellAlignment::Right);
        }
    }
    t
}

fn dist_row(name: &str, d: &Option<Distribution>) -> Vec<String> {
    match d {
        None => vec![name.to_string(), "–".into()],
        Some(d) => {
            let f = |v: f64| format!("{v:.0}");
            vec![
                name.to_string(),
                f(d.min),
                f(d.p10),
                f(d.median),
                format!("{:.1}", d.mean),
                f(d.p90),
                f(d.p99),
                f(d.max),
            ]
        }
    }
}

/// The human-readable form of `rewardkit data stats`.
pub fn stats_table(stats: &DataStats, tokens: Option<&TokenLengthStats>) -> String {
    let mut out = String::new();
    let load = &stats.load;
    for f in &load.files {
        let _ = writeln!(
            out,
            "{}: {} rows, format {}, {} pairs kept",
            f.path, f.rows, f.format, f.pairs
        );
    }
    let _ = writeln!(
        out,
        "\nrows read {} = pairs {} + dropped {}   (ties: {} among pairs kept, {} among rows read)",
        load.rows_read,
        load.pairs,
        load.dropped_total(),
        load.ties,
        load.tie_rows
    );
    if load.soft_labels > 0 {
        let _ = writeln!(
            out,
            "soft labels: {} pairs kept with 0.5 < p(chosen better) < 1 (the others are hard labels or ties)",
            load.soft_labels
        );
    }
    for (reason, n) in &load.dropped {
        let _ = writeln!(
            out,
            "  dropped {n:>6}  {}: {}",
            reason.name(),
            reason.describe()
        );
    }
    let shown = load.dropped_rows.iter().take(10);
    for d in shown {
        let _ = writeln!(out, "    {}: {}", d.location, d.detail);
    }
    if load.dropped_rows.len() > 10 {
        let _ = writeln!(
            out,
            "    … and {} more (all are listed with --json)",
            load.dropped_rows.len() - 10
        );
    }
    if !load.notes.is_empty() {
        let _ = writeln!(out, "  {} values read leniently:", load.notes.len());
        for n in load.notes.iter().take(5) {
            let _ = writeln!(out, "    {}: {}", n.location, n.note);
        }
        if load.notes.len() > 5 {
            let _ = writeln!(
                out,
                "    … and {} more (all are listed with --json)",
                load.notes.len() - 5
            );
        }
    }
    if stats.subsets.len() > 1 || stats.subsets.keys().any(|k| !k.is_empty()) {
        let _ = writeln!(out, "\nsubsets:");
        for (name, n) in &stats.subsets {
            let name = if name.is_empty() { "(none)" } else { name };
            let _ = writeln!(out, "  {n:>8}  {name}");
        }
    }
    if stats.sources.keys().any(|k| !k.is_empty()) {
        let total: u64 = stats.sources.values().sum();
        let _ = writeln!(out, "\nsources (pairs no labeller judged: `data augment`):");
        for (name, n) in &stats.sources {
            let name = if name.is_empty() { "labelled" } else { name };
            let share = 100.0 * *n as f64 / total.max(1) as f64;
            let _ = writeln!(out, "  {n:>8}  {share:>5.1}%  {name}");
        }
    }
    let header = [
        "length", "min", "p10", "median", "mean", "p90", "p99", "max",
    ];
    let mut t = new_table(&header);
    t.add_row(dist_row("prompt chars", &stats.chars.prompt));
    t.add_row(dist_row("chosen chars", &stats.chars.chosen));
    t.add_row(dist_row("rejected chars", &stats.chars.rejected));
    t.add_row(dist_row("prompt words", &stats.words.prompt));
    t.add_row(dist_row("chosen words", &stats.words.chosen));
    t.add_row(dist_row("rejected words", &stats.words.rejected));
    if let Some(tok) = tokens {
        t.add_row(dist_row("prompt tokens", &tok.prompt));
        t.add_row(dist_row("chosen tokens", &tok.chosen));
        t.add_row(dist_row("rejected tokens", &tok.rejected));
        t.add_row(dist_row("input tokens", &tok.sequence));
    }
    let _ = writeln!(out, "\n{t}");
    let b = &stats.pick_longer;
    let _ = writeln!(
        out,
        "\npick-the-longer baseline: accuracy {} over {} non-tie pairs (chosen longer {}, rejected longer {}, same length {})",
        pct(b.accuracy),
        b.pairs,
        b.chosen_longer,
        b.rejected_longer,
        b.same_length
    );
    if let Some(tok) = tokens {
        let _ = writeln!(
            out,
            "truncation at max length {}: {} of {} pairs ({} sequences); responses cut in {} pairs",
            tok.max_length,
            tok.pairs_truncated,
            load.pairs,
            tok.sequences_truncated,
            tok.pairs_response_truncated
        );
    }
    out
}

fn eval_row(name: &str, r: &PairReport) -> Vec<String> {
    let a = &r.accuracy;
    let ci = a.ci95.map_or_else(
        || "–".into(),
        |[lo, hi]| format!("{:.1}–{:.1}%", 100.0 * lo, 100.0 * hi),
    );
    vec![
        name.to_string(),
        r.pairs.to_string(),
        pct(a.accuracy),
        ci,
        fmt_num(r.gap.mean),
        fmt_num(r.calibration.ece),
        fmt_num(r.calibration.brier),
        fmt_num(r.calibration.log_loss),
        fmt_num(r.calibration.temperature.temperature),
        fmt_num(r.calibration.temperature.ece),
        r.ties.n.to_string(),
    ]
}

/// The human-readable form of `rewardkit eval`.
pub fn eval_table(report: &EvalReport, scorer: &str) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "scorer: {scorer}");
    let header = [
        "subset", "pairs", "accuracy", "95% CI", "gap", "ECE", "Brier", "log loss", "T", "ECE@T",
        "ties",
    ];
    let mut t = new_table(&header);
    t.add_row(eval_row("overall", &report.overall));
    for (name, r) in &report.subsets {
        t.add_row(eval_row(name, r));
    }
    let _ = writeln!(out, "{t}");
    let cal = &report.overall.calibration;
    let mut rel = new_table(&["confidence", "pairs", "mean conf", "accuracy", "gap"]);
    for bin in &cal.reliability {
        let gap = match (bin.accuracy, bin.confidence) {
            (Some(a), Some(c)) => format!("{:+.3}", a - c),
            _ => "–".into(),
        };
        rel.add_row(vec![
            format!(
                "[{:.1}, {:.1}{}",
                bin.lower,
                bin.upper,
                if bin.upper >= 1.0 { "]" } else { ")" }
            ),
            bin.n.to_string(),
            fmt_num(bin.confidence),
            fmt_num(bin.accuracy),
            gap,
        ]);
    }
    let _ = writeln!(out, "\nreliability (overall):\n{rel}");
    if let Some(note) = &cal.temperature.note {
        let _ = writeln!(out, "temperature: {note}");
    }
    let g = &report.overall.gap;
    let _ = writeln!(
        out,
        "reward gap: mean {} · std {} · median {}",
        fmt_num(g.mean),
        fmt_num(g.std),
        fmt_num(g.median)
    );
    if report.overall.ties.n > 0 {
        let _ = writeln!(
            out,
            "labelled ties: {} (left out of accuracy); mean |gap| on them {}",
            report.overall.ties.n,
            fmt_num(report.overall.ties.mean_abs_gap)
        );
    }
    if let Some(s) = &report.overall.calibration.soft_labels {
        let _ = writeln!(
            out,
            "soft labels: {} pairs; cross-entropy against the labels {} (the labels' own entropy {}), mean |σ(gap) − p| {}",
            s.soft,
            fmt_num(Some(s.cross_entropy)),
            fmt_num(Some(s.label_entropy)),
            fmt_num(Some(s.mean_abs_error))
        );
    }
    out
}

/// The Bradley-Terry gradient's weight per pair, σ(−Δ), in tenths: the first logging window
/// against the last, as text bars. Early on most pairs sit near 0.5 (the model is unsure); later
/// the confidently right pairs (near 0) stop contributing and the gradient comes from the pairs
/// the model still gets wrong.
pub fn grad_weight_histogram(first: &[usize; 10], last: &[usize; 10]) -> String {
    let share = |h: &[usize; 10], i: usize| h[i] as f64 / h.iter().sum::<usize>().max(1) as f64;
    let bar = |f: f64| "█".repeat((f * 40.0).round() as usize);
    let mut s = String::from(
        "σ(−Δ) per pair (the weight of each pair in the BT gradient), first vs last log window:\n",
    );
    for i in 0..10 {
        let (a, b) = (share(first, i), share(last, i));
        let _ = writeln!(
            s,
            "  {:.1}–{:.1}  first {:>5.1}% {:<40}  last {:>5.1}% {}",
            i as f64 / 10.0,
            (i + 1) as f64 / 10.0,
            100.0 * a,
            bar(a),
            100.0 * b,
            bar(b)
        );
    }
    s
}
