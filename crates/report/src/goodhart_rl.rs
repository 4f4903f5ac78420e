//! Goodhart under RL for people: `goodhart_rl.svg` (gold and proxy of every RL run against
//! √KL, best-of-n's curve on the same axes) and the table of runs.

use rewardkit_goodhart::analysis::SelectorCurve;
use rewardkit_goodhart::rl::{RlFit, RlRunSummary};

use crate::goodhart::{curves_svg, Frame, Series};

/// Gold (solid, left axis) and the change of the proxy score since the start (dashed, right
/// axis) of every RL run against √KL(π ‖ π_ref), smoothed as the summaries were; best-of-n's
/// curve of the same proxy (`bon`, its proxy also as the change from n = 1) on the same axes;
/// each gold peak a dot, labelled with its step.
pub fn goodhart_rl_svg(runs: &[RlRunSummary], bon: Option<&SelectorCurve>, title: &str) -> String {
    let mut series: Vec<Series> = runs
        .iter()
        .map(|r| {
            let p0 = r.start.proxy;
            Series {
                label: r.run.clone(),
                gold: r.points.iter().map(|p| (p.sqrt_kl, p.gold)).collect(),
                proxy: r.points.iter().map(|p| (p.sqrt_kl, p.proxy - p0)).collect(),
                peak: (r.gold_peak.sqrt_kl, r.gold_peak.gold),
                peak_label: Some(format!("step {}", r.gold_peak.step)),
            }
        })
        .collect();
    if let Some(c) = bon {
        let p0 = c.points.first().map_or(0.0, |p| p.proxy);
        series.push(Series {
            label: format!("best-of-n ({})", c.label),
            gold: c.points.iter().map(|p| (p.sqrt_kl, p.gold)).collect(),
            proxy: c.points.iter().map(|p| (p.sqrt_kl, p.proxy - p0)).collect(),
            peak: (c.gold_peak.sqrt_kl, c.gold_peak.gold),
            peak_label: Some(format!("n = {}", c.gold_peak.n)),
        });
    }
    curves_svg(
        &series,
        &Frame {
            title,
            x_label: "√KL(policy ‖ reference)  (nats^½)",
            top: Vec::new(),
            notes: &[
                "solid: gold (left axis)",
                "dashed: proxy score − its start",
                "(right axis; each run its own reward)",
                "dots: where gold peaks",
            ],
        },
    )
}

fn fit_cells(fit: Option<&RlFit>) -> [String; 3] {
    match fit {
        Some(f) => [
            format!("{:.3}", f.alpha),
            format!("{:.3}", f.beta),
            f.d_star.map_or("–".into(), |d| format!("{d:.2}")),
        ],
        None => ["–".into(), "–".into(), "–".into()],
    }
}

/// The header of [`rl_rows`].
pub const RL_HEADER: [&str; 13] = [
    "run",
    "β",
    "steps",
    "KL end",
    "proxy start → end",
    "gold start",
    "gold peak (step, √KL)",
    "gold end",
    "fall after peak",
    "max drawdown",
    "gold fit α",
    "gold fit β",
    "fitted peak √KL",
];

/// One row per run: KL, proxy and gold at start and end, the gold peak and fall, the RL fit of
/// gold.
pub fn rl_rows(runs: &[RlRunSummary]) -> Vec<Vec<String>> {
    runs.iter()
        .map(|r| {
            let mut row = vec![
                r.run.clone(),
                format!("{}", r.beta),
                r.steps.to_string(),
                format!("{:.2}", r.end.kl),
                format!("{:.2} → {:.2}", r.start.proxy, r.end.proxy),
                format!("{:.3}", r.start.gold),
                format!(
                    "{:.3} ({}, {:.2})",
                    r.gold_peak.gold, r.gold_peak.step, r.gold_peak.sqrt_kl
                ),
                format!("{:.3}", r.end.gold),
                format!("{:.3}", r.gold_fall),
                format!("{:.3}", r.max_drawdown),
            ];
            row.extend(fit_cells(r.gold_fit.as_ref()));
            row
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewardkit_goodhart::rl::{summarize, RlCurveRow};

    fn runs() -> Vec<RlRunSummary> {
        let mut rows = Vec::new();
        for step in 0..20 {
            let d = 0.2 * step as f64;
            for (run, beta, fall) in [("proxy β=0", 0.0, 0.08), ("control", 0.0, 0.0)] {
                rows.push(RlCurveRow {
                    run: run.into(),
                    beta,
                    step,
                    kl: d * d,
                    proxy: d,
                    gold: 0.6 + 0.1 * d - fall * d * d,
                });
            }
        }
        summarize(&rows, 1).unwrap()
    }

    #[test]
    fn plot_has_two_lines_per_run_and_a_labelled_peak_each() {
        let runs = runs();
        let svg = goodhart_rl_svg(&runs, None, "rl <test>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert_eq!(svg.matches("stroke-dasharray").count(), 2);
        assert_eq!(svg.matches("<circle").count(), 2);
        assert!(svg.contains("rl &lt;test&gt;") && svg.contains("control"));
        // Proxy β=0 peaks where 0.1 − 0.16·d = 0, d = 0.625: between steps 3 (0.6) and 4 (0.8).
        assert_eq!(runs[0].gold_peak.step, 3);
        assert!(svg.contains("step 3") && svg.contains("step 19"));
    }

    #[test]
    fn rows_show_every_run() {
        let rows = rl_rows(&runs());
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.len() == RL_HEADER.len()));
        assert_eq!(rows[0][0], "proxy β=0");
        assert_eq!(rows[0][2], "20");
        assert_eq!(rows[1][8], "0.000");
    }
}
