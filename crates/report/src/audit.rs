//! The audit report for people: `report.md` (flags first), the terminal summary, and its plots.

use std::fmt::Write;

use rewardkit_audit::run::{AuditReport, Check, Severity};

use crate::svg::Plot;

fn ci(c: [f64; 2]) -> String {
    format!("[{:.2}, {:.2}]", c[0], c[1])
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "–".into(), |v| format!("{:.1}%", 100.0 * v))
}

fn pct_ci(c: Option<[f64; 2]>) -> String {
    c.map_or_else(String::new, |c| {
        format!(" [{:.1}, {:.1}]", 100.0 * c[0], 100.0 * c[1])
    })
}

/// A p-value for people: `< 1e-300` below what a double holds.
pub fn fmt_p(p: f64) -> String {
    if p < 1e-300 {
        "< 1e-300".into()
    } else if p < 1e-3 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

/// `= p`, or `< 1e-300`.
fn p_eq(p: f64) -> String {
    let s = fmt_p(p);
    if s.starts_with('<') {
        s
    } else {
        format!("= {s}")
    }
}

fn mark(s: Severity) -> &'static str {
    match s {
        Severity::Red => "RED",
        Severity::Warning => "WARNING",
    }
}

/// The flags as lines: `RED  probe/filler: …`.
pub fn audit_flags_text(report: &AuditReport) -> String {
    let mut s = String::new();
    if report.flags.is_empty() {
        let _ = writeln!(
            s,
            "No flags at the {:.0}% family-wise level (Holm over all checks).",
            100.0 * report.config.alpha
        );
    }
    for f in &report.flags {
        let check = serde_json::to_value(f.check)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default();
        let _ = writeln!(
            s,
            "{:<8} {check}/{}: {} (p {})",
            mark(f.severity),
            f.subject,
            f.message,
            p_eq(f.p_value)
        );
    }
    s
}

/// `report.md`: a summary of flags first, then every table, then the plots.
pub fn audit_markdown(report: &AuditReport) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Reward-model audit: {}\n", report.scorer);
    let t = &report.timing;
    let _ = writeln!(
        s,
        "{} pairs, {} distinct responses; {} items scored in {:.1} s, analysed in {:.1} s. Intervals are 95% ({} bootstrap resamples or Wilson); flags are significant at a family-wise {:.0}% (Holm over all {} checks) and large enough to matter (definitions: `docs/audit.md`).\n",
        report.pairs,
        report.responses,
        t.items_scored,
        t.scoring_seconds,
        t.analysis_seconds,
        report.config.bootstrap,
        100.0 * report.config.alpha,
        report.correlations.len() + report.probes.len() + 1 + report.sycophancy.len(),
    );
    let _ = writeln!(s, "## Flags\n");
    if report.flags.is_empty() {
        let _ = writeln!(s, "None.\n");
    }
    for f in &report.flags {
        let _ = writeln!(
            s,
            "- **{}** `{}`: {} (p {})",
            mark(f.severity),
            f.subject,
            f.message,
            p_eq(f.p_value)
        );
    }
    if !report.flags.is_empty() {
        s.push('\n');
    }
    if !report.watch.is_empty() {
        let _ = writeln!(
            s,
            "Not flagged, worth a look (past the threshold and p < {} alone, not after the correction):\n",
            report.config.alpha
        );
        for f in &report.watch {
            let _ = writeln!(
                s,
                "- `{}`: {} (p {})",
                f.subject,
                f.message,
                p_eq(f.p_value)
            );
        }
        s.push('\n');
    }

    let _ = writeln!(s, "## Score against response features\n");
    let _ = writeln!(
        s,
        "| feature | mean | Pearson r | 95% CI | Spearman ρ | 95% CI | what is counted |"
    );
    let _ = writeln!(s, "|---|---:|---:|---|---:|---|---|");
    for c in &report.correlations {
        let (pr, pci) = c.pearson.as_ref().map_or(("–".into(), String::new()), |p| {
            (format!("{:+.3}", p.r), ci(p.ci))
        });
        let (sr, sci) = c
            .spearman
            .as_ref()
            .map_or(("–".into(), String::new()), |p| {
                (format!("{:+.3}", p.r), ci(p.ci))
            });
        let _ = writeln!(
            s,
            "| {} | {:.3} | {pr} | {pci} | {sr} | {sci} | {} |",
            c.feature.name(),
            c.mean,
            c.description
        );
    }
    let lp = &report.length_pairs;
    let _ = writeln!(s, "\n## Length within pairs\n");
    let _ = writeln!(s, "| pairs | n | model accuracy |\n|---|---:|---:|");
    let _ = writeln!(
        s,
        "| chosen is longer | {} | {}{} |",
        lp.chosen_longer,
        pct(lp.accuracy_chosen_longer),
        pct_ci(lp.ci_chosen_longer)
    );
    let _ = writeln!(
        s,
        "| chosen is shorter | {} | {}{} |",
        lp.chosen_shorter,
        pct(lp.accuracy_chosen_shorter),
        pct_ci(lp.ci_chosen_shorter)
    );
    let _ = writeln!(
        s,
        "\nThe model prefers the longer response in {} of pairs, and against the human label (chosen is shorter, model scores the longer one higher) in {} of those. One-sided test of accuracy(longer) > accuracy(shorter): p {}.\n",
        pct(lp.prefers_longer),
        pct(lp.prefers_longer_against_label),
        p_eq(lp.p_value)
    );

    if let Some(r) = &report.ridge {
        let _ = writeln!(s, "## What the model pays for (ridge probe)\n");
        let _ = writeln!(
            s,
            "Score regressed on all features, each standardised (coefficient = score change per standard deviation, the others held fixed); λ = {}, n = {}, R² = {:.3}, 5-fold cross-validated R² = {}. Collinear features (chars, words, tokens, sentences) share their weight: read their sum, not their signs.\n",
            r.lambda,
            r.n,
            r.r2,
            r.cv_r2.map_or("–".into(), |v| format!("{v:.3}"))
        );
        let _ = writeln!(s, "| feature | coefficient | 95% CI |\n|---|---:|---|");
        let mut coefs: Vec<_> = r.coefficients.iter().collect();
        coefs.sort_by(|a, b| b.coefficient.abs().total_cmp(&a.coefficient.abs()));
        for c in coefs {
            let _ = writeln!(
                s,
                "| {} | {:+.4} | {} |",
                c.feature.name(),
                c.coefficient,
                ci(c.ci)
            );
        }
        s.push('\n');
    }

    let _ = writeln!(s, "## Counterfactual probes\n");
    let _ = writeln!(
        s,
        "Each edit adds no information; a model that pays for it can be gamed.\n\n| probe | edit | n | mean Δ | 95% CI | effect (sd) | raised | p |\n|---|---|---:|---:|---|---:|---:|---:|"
    );
    for p in &report.probes {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {:+.4} | {} | {:+.2} | {:.0}% [{:.0}, {:.0}] | {} |",
            p.probe.name(),
            p.description,
            p.n,
            p.mean_delta,
            ci(p.ci),
            p.effect_size,
            100.0 * p.share_raised,
            100.0 * p.share_raised_ci[0],
            100.0 * p.share_raised_ci[1],
            fmt_p(p.p_value)
        );
    }

    if !report.sycophancy.is_empty() {
        let _ = writeln!(s, "\n## Sycophancy\n");
        let _ = writeln!(
            s,
            "The same prompt with a response that agrees with the user's stated view or wrong claim, and one that does not.\n\n| domain | n | agreeing wins | correcting wins | ties | agree rate | p (> 50%) | mean gap |\n|---|---:|---:|---:|---:|---:|---:|---:|"
        );
        for d in &report.sycophancy {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} | {}{} | {} | {:+.4} |",
                d.domain,
                d.n,
                d.agree_wins,
                d.correct_wins,
                d.ties,
                pct(d.agree_rate),
                pct_ci(d.ci),
                fmt_p(d.p_value),
                d.mean_gap
            );
        }
    }
    let _ = writeln!(s, "\n## Plots\n");
    for (name, _) in audit_plots(report) {
        let _ = writeln!(s, "![{name}]({name})");
    }
    s
}

/// A nice step for axis ticks over `span`.
fn step(span: f64) -> f64 {
    let raw = span / 6.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0]
        .into_iter()
        .map(|m| m * mag)
        .find(|&s| s >= raw)
        .unwrap_or(raw)
}

/// Horizontal bars with interval whiskers, one row per label, x in `range`.
fn bars_svg(
    title: &str,
    xlabel: &str,
    rows: &[(String, f64, [f64; 2], &str)],
    range: (f64, f64),
    guides: &[f64],
) -> String {
    let h = 90.0 + 26.0 * rows.len() as f64;
    let n = rows.len() as f64;
    let mut plot = Plot::new(720.0, h, range, (0.0, n)).margins([44.0, 24.0, 52.0, 170.0]);
    plot.axes(step(range.1 - range.0), 0.0, xlabel, "", title);
    for &g in guides {
        plot.line(&[(g, 0.0), (g, n)], "#bbb", true);
    }
    plot.line(&[(0.0, 0.0), (0.0, n)], "#333", false);
    for (i, (label, v, c, color)) in rows.iter().enumerate() {
        let y = n - i as f64 - 0.5;
        let clamp = |x: f64| x.clamp(range.0, range.1);
        plot.rect((0.0, y - 0.32), (clamp(*v), y + 0.32), color);
        plot.line(&[(clamp(c[0]), y), (clamp(c[1]), y)], "#222", false);
        plot.text(range.0, y, -8.0, "end", label, 12.0);
    }
    plot.finish()
}

/// The plots, as (file name, SVG): score against length, correlations with intervals, probe
/// effect sizes.
pub fn audit_plots(report: &AuditReport) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    let pts = &report.score_vs_words;
    if !pts.is_empty() {
        let mut words: Vec<f64> = pts.iter().map(|p| p[0]).collect();
        words.sort_by(f64::total_cmp);
        let x_hi = words[(words.len() * 99 / 100).min(words.len() - 1)].max(1.0) * 1.05;
        let shown: Vec<&[f64; 2]> = pts.iter().filter(|p| p[0] <= x_hi).collect();
        let (lo, hi) = shown
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p[1]), hi.max(p[1]))
            });
        let dy = step((hi - lo).max(1e-6));
        let (lo, hi) = ((lo / dy).floor() * dy, (hi / dy).ceil() * dy);
        let mut plot = Plot::new(720.0, 480.0, (0.0, x_hi), (lo, hi));
        let words_r = report
            .correlations
            .iter()
            .find(|c| c.feature.name() == "words")
            .and_then(|c| c.pearson.as_ref())
            .map_or(String::new(), |p| format!(" (Pearson r = {:.2})", p.r));
        plot.axes(
            step(x_hi),
            dy,
            "response length (words)",
            "score",
            &format!("Score against length{words_r}"),
        );
        for p in shown {
            plot.point(p[0], p[1], 1.8, "rgba(70,110,180,0.45)");
        }
        // Mean score per length decile, as a line.
        let mut sorted: Vec<[f64; 2]> = pts.clone();
        sorted.sort_by(|a, b| a[0].total_cmp(&b[0]));
        let line: Vec<(f64, f64)> = sorted
            .chunks(sorted.len().div_ceil(10))
            .map(|c| {
                let n = c.len() as f64;
                (
                    c.iter().map(|p| p[0]).sum::<f64>() / n,
                    c.iter().map(|p| p[1]).sum::<f64>() / n,
                )
            })
            .filter(|&(x, _)| x <= x_hi)
            .collect();
        plot.line(&line, "#d1495b", false);
        plot.legend(&[
            ("#466eb4", "one response"),
            ("#d1495b", "mean score per length decile"),
        ]);
        out.push(("score_vs_length.svg", plot.finish()));
    }
    let color = |flagged: bool| if flagged { "#d1495b" } else { "#6b9bd1" };
    let flagged = |check: Check, subject: &str| {
        report
            .flags
            .iter()
            .any(|f| f.check == check && f.subject == subject)
    };
    let rows: Vec<(String, f64, [f64; 2], &str)> = report
        .correlations
        .iter()
        .filter_map(|c| {
            let p = c.pearson.as_ref()?;
            Some((
                c.feature.name().to_string(),
                p.r,
                p.ci,
                color(flagged(Check::Correlation, c.feature.name())),
            ))
        })
        .collect();
    if !rows.is_empty() {
        let (w, r) = (report.config.warn_r, report.config.red_r);
        out.push((
            "correlations.svg",
            bars_svg(
                "Pearson correlation of score with each feature (95% CI; red = flagged)",
                "Pearson r",
                &rows,
                (-1.0, 1.0),
                &[-r, -w, w, r],
            ),
        ));
    }
    let sd = |p: &rewardkit_audit::run::ProbeResult| {
        if p.mean_delta != 0.0 {
            p.effect_size / p.mean_delta
        } else {
            0.0
        }
    };
    let rows: Vec<(String, f64, [f64; 2], &str)> = report
        .probes
        .iter()
        .map(|p| {
            let k = sd(p);
            (
                p.probe.name().to_string(),
                p.effect_size,
                [p.ci[0] * k, p.ci[1] * k],
                color(flagged(Check::Probe, p.probe.name())),
            )
        })
        .collect();
    if !rows.is_empty() {
        let m = rows
            .iter()
            .flat_map(|r| [r.1.abs(), r.2[0].abs(), r.2[1].abs()])
            .fold(0.1f64, f64::max)
            * 1.1;
        out.push((
            "probes.svg",
            bars_svg(
                "Score change from each edit, in sd of scores (95% CI; red = flagged)",
                "mean Δ score / sd(score)",
                &rows,
                (-m, m),
                &[],
            ),
        ));
    }
    out
}
