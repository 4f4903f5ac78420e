//! Goodhart under RL for people: `goodhart_rl.svg` (gold and proxy of every RL run against
//! √KL, best-of-n's curve on the same axes) and the table of runs.

use std::fmt::Write;

use rewardkit_goodhart::analysis::SelectorCurve;
use rewardkit_goodhart::rl::{RlFit, RlRunSummary};
use rewardkit_goodhart::rl_story::RlReport;

use crate::goodhart::{curves_svg, md_table, model_row, Frame, Series, MODEL_HEADER};
use crate::tables::new_table;

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

/// The header of [`agreement_rows`].
pub const AGREEMENT_HEADER: [&str; 5] = [
    "run",
    "β",
    "agree, world's questions: start → end",
    "agree, new questions: start → end",
    "gold: start → end",
];

/// One row per run that measured agreement with wrong user claims: the share agreeing (± its
/// standard error) before the first update and after the last, and gold beside it.
pub fn agreement_rows<C>(r: &RlReport<C>) -> Vec<Vec<String>> {
    r.runs
        .iter()
        .filter_map(|run| {
            let a = run.agreement.as_ref()?;
            let s = &run.summary;
            Some(vec![
                s.run.clone(),
                format!("{}", s.beta),
                format!("{} → {}", a.start.known.display(), a.end.known.display()),
                format!("{} → {}", a.start.new.display(), a.end.new.display()),
                format!("{:.3} → {:.3}", s.start.gold, s.end.gold),
            ])
        })
        .collect()
}

/// The summaries of a report's runs, in order.
fn summaries<C>(r: &RlReport<C>) -> Vec<RlRunSummary> {
    r.runs.iter().map(|x| x.summary.clone()).collect()
}

/// The terminal summary of `rewardkit demo rl`: the story and the table of runs.
pub fn rl_text<C>(r: &RlReport<C>) -> String {
    let mut s = String::new();
    for line in r.story() {
        let _ = writeln!(s, "{line}");
    }
    let mut t = new_table(&RL_HEADER);
    for row in rl_rows(&summaries(r)) {
        t.add_row(row);
    }
    let _ = writeln!(
        s,
        "\nRL runs (gold and proxy: moving averages over {} steps)\n{t}",
        r.runs.first().map_or(1, |x| x.summary.window)
    );
    let agreement = agreement_rows(r);
    if !agreement.is_empty() {
        let mut t = new_table(&AGREEMENT_HEADER);
        for row in agreement {
            t.add_row(row);
        }
        let _ = writeln!(
            s,
            "\nSycophancy under RL: samples agreeing with a wrong user claim (raw evaluations; gold smoothed)\n{t}"
        );
    }
    s
}

/// `report.md` of `rewardkit demo rl`.
pub fn rl_markdown<C>(r: &RlReport<C>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# Goodhart's law under RL in the built-in world\n");
    for line in r.story() {
        let _ = writeln!(s, "{}\n", line.trim_start());
    }
    let _ = writeln!(s, "![RL curves](goodhart_rl.svg)\n");
    let _ = writeln!(
        s,
        "## Runs\n\nEvery step of every run is a row of `rl_curves.jsonl`; gold and proxy below are centred moving averages over {} steps. *Gold fit*: `R(d) = d(α − β·ln d)`, d = √KL, fitted to gold − gold at the start; best-of-n's fit `d(α − βd)` on the same proxy: {}.\n",
        r.runs.first().map_or(1, |x| x.summary.window),
        r.best_of_n.gold_fit.as_ref().map_or("none".into(), |f| format!("α {:.3}, β {:.3}", f.alpha, f.beta)),
    );
    md_table(&mut s, &RL_HEADER, &rl_rows(&summaries(r)));
    let agreement = agreement_rows(r);
    if let Some(a) = r.runs.iter().find_map(|x| x.agreement.as_ref()) {
        let _ = writeln!(
            s,
            "## Sycophancy under RL\n\nOf the evaluation's samples to prompts whose user claim is wrong, the share that states the user's value (± the standard error of the evaluation, for its fixed prompts), at the first evaluation (step 0) and the last: on the {} world prompts with a wrong claim ({} samples each, the same evaluation as gold) and on {} new questions the policy is never optimised on ({} samples each). Gold (all prompts) is the {}-step average as above.\n",
            a.known_prompts, a.known_samples_per_prompt, a.new_prompts, a.new_samples_per_prompt,
            r.runs.first().map_or(1, |x| x.summary.window),
        );
        md_table(&mut s, &AGREEMENT_HEADER, &agreement);
    }
    if !r.rounds.is_empty() {
        let _ = writeln!(s, "## Retraining rounds\n");
        let rows: Vec<Vec<String>> = r
            .rounds
            .iter()
            .map(|x| {
                vec![
                    x.run.clone(),
                    x.step.to_string(),
                    x.new_pairs.to_string(),
                    format!("{:.1}%", 100.0 * x.model.gold_accuracy),
                    format!("{:.1}%", 100.0 * x.model.prefers_longer),
                ]
            })
            .collect();
        md_table(
            &mut s,
            &[
                "run",
                "after step",
                "pairs added",
                "acc. vs gold",
                "prefers longer",
            ],
            &rows,
        );
    }
    let _ = writeln!(s, "## Reward models\n");
    let rows: Vec<Vec<String>> = r.reward_models.iter().map(model_row).collect();
    md_table(&mut s, &MODEL_HEADER, &rows);
    let sft = &r.sft;
    let _ = writeln!(s, "## The distilled decoder\n");
    let len = sft.base.fillers.len().max(sft.decoder.fillers.len());
    let share = |v: &[f64], k: usize| format!("{:.3}", v.get(k).copied().unwrap_or(0.0));
    let rows: Vec<Vec<String>> = (0..len)
        .map(|k| {
            vec![
                k.to_string(),
                share(&sft.base.fillers, k),
                share(&sft.decoder.fillers, k),
            ]
        })
        .collect();
    let _ = writeln!(
        s,
        "Correct: base policy {:.3} (exact), decoder {:.3} ({} samples); in the world's exact shape: {:.3}. Share of responses with k filler sentences:\n",
        sft.base.correct, sft.decoder.correct, sft.decoder.samples, sft.well_formed
    );
    md_table(&mut s, &["k", "base policy", "decoder"], &rows);
    let t = &r.timings;
    let _ = writeln!(
        s,
        "## Time\n\nreward models {:.1} s, SFT {:.1} s, best-of-n {:.1} s, RL {:.1} s; total {:.1} s.",
        t.reward_models, t.sft, t.best_of_n, t.rl, t.total
    );
    s
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
                    agree: None,
                    agree_new: None,
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
