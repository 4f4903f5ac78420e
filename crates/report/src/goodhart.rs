//! Goodhart reports for people: the best-of-n plot (proxy and gold against √KL, one colour per
//! selector), and `rewardkit demo`'s `report.md` and terminal summary.

use std::fmt::Write;

use rewardkit_goodhart::analysis::{Analysis, SelectorCurve};
use rewardkit_goodhart::story::{
    DemoReport, LabelStats, ModelSummary, StoryConfig, SycophancyStory,
};

use crate::audit::audit_flags_text;
use crate::svg::Plot;
use crate::tables::new_table;

/// One colour per selector, in order (cycled).
const COLORS: [&str; 10] = [
    "#d1495b", "#2e86ab", "#66a182", "#8d6a9f", "#edae49", "#00798c", "#a05195", "#6b4226",
    "#3d5a80", "#444444",
];

/// A tick step giving 4–8 ticks over `span`.
fn step(span: f64) -> f64 {
    let raw = span / 5.0;
    let mag = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * mag)
        .find(|&s| span / s <= 8.0)
        .unwrap_or(10.0 * mag)
}

/// `lo..hi` widened to whole steps, with a little room.
fn padded(lo: f64, hi: f64) -> (f64, f64, f64) {
    let span = (hi - lo).max(1e-6);
    let dy = step(span * 1.1);
    ((lo / dy).floor() * dy, (hi / dy).ceil() * dy, dy)
}

/// One curve pair of a Goodhart plot: gold (solid, left axis) and a proxy score (dashed, right
/// axis) against √KL, with gold's peak.
pub(crate) struct Series {
    pub label: String,
    pub gold: Vec<(f64, f64)>,
    pub proxy: Vec<(f64, f64)>,
    pub peak: (f64, f64),
    /// A label written above the peak dot.
    pub peak_label: Option<String>,
}

/// What a Goodhart plot shows besides its series.
pub(crate) struct Frame<'a> {
    pub title: &'a str,
    pub x_label: &'a str,
    /// Labels along the top axis at their x (e.g. n of best-of-n), thinned where they crowd.
    pub top: Vec<(f64, String)>,
    /// Lines under the legend.
    pub notes: &'a [&'a str],
}

/// Draws `series` (the first on top, in the first colour) against √KL on two y axes: gold on
/// the left, the proxy's scale on the right; the legend and notes right of the plot.
pub(crate) fn curves_svg(series: &[Series], frame: &Frame) -> String {
    let all = || series.iter().flat_map(|c| c.gold.iter().chain(&c.proxy));
    let x_hi = all().map(|p| p.0).fold(0.0, f64::max).max(0.1);
    let range = |pts: &dyn Fn(&Series) -> &Vec<(f64, f64)>| {
        series
            .iter()
            .flat_map(|c| pts(c).iter().map(|p| p.1))
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let (g_lo, g_hi) = range(&|c| &c.gold);
    let (p_lo, p_hi) = range(&|c| &c.proxy);
    if !g_lo.is_finite() || !p_lo.is_finite() {
        return Plot::new(400.0, 200.0, (0.0, 1.0), (0.0, 1.0)).finish();
    }
    let (g_lo, g_hi, dy) = padded(g_lo, g_hi);
    let (p_lo, p_hi, dp) = padded(p_lo, p_hi);
    // The proxy's scale mapped onto the gold axis.
    let to_gold = |v: f64| g_lo + (v - p_lo) / (p_hi - p_lo) * (g_hi - g_lo);

    let (width, height, right) = (960.0, 560.0, 300.0);
    let mut plot =
        Plot::new(width, height, (0.0, x_hi), (g_lo, g_hi)).margins([72.0, right, 56.0, 64.0]);
    plot.axes(step(x_hi), dy, frame.x_label, "gold (solid)", frame.title);
    // Right axis: the proxy's scale.
    let mut t = p_lo;
    while t <= p_hi + 1e-9 {
        plot.text(x_hi, to_gold(t), 6.0, "start", &format!("{t:.2}"), 11.0);
        t += dp;
    }
    // Top axis, skipping labels too close to the previous one (and the last always shown).
    let gap = 0.045 * x_hi;
    let mut last_x = f64::NEG_INFINITY;
    let count = frame.top.len();
    for (i, (x, text)) in frame.top.iter().enumerate() {
        let crowds_last = i + 2 == count && frame.top[count - 1].0 - x < gap;
        if x - last_x >= gap && !crowds_last {
            plot.label(*x, g_hi, -8.0, text, 10.0);
            last_x = *x;
        }
    }
    // The first series last, so that its peak and label are on top.
    for (i, c) in series.iter().enumerate().rev() {
        let color = COLORS[i % COLORS.len()];
        let proxy: Vec<(f64, f64)> = c.proxy.iter().map(|&(x, v)| (x, to_gold(v))).collect();
        plot.line(&c.gold, color, false);
        plot.line(&proxy, color, true);
        plot.point(c.peak.0, c.peak.1, 4.5, color);
        if let Some(label) = &c.peak_label {
            plot.label(c.peak.0, c.peak.1, -10.0, label, 11.0);
        }
    }
    // The legend, right of the plot area (x beyond the data maps into the margin).
    let per_px = x_hi / (width - right - 64.0);
    let lx = x_hi + 48.0 * per_px;
    let line_h = (g_hi - g_lo) / (height - 72.0 - 56.0) * 18.0;
    let mut y = g_hi - line_h;
    for (i, c) in series.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        plot.rect(
            (lx, y - 0.3 * line_h),
            (lx + 12.0 * per_px, y + 0.3 * line_h),
            color,
        );
        plot.text(lx, y, 18.0, "start", &c.label, 12.0);
        y -= line_h;
    }
    y -= 0.5 * line_h;
    for line in frame.notes {
        plot.text(lx, y, 0.0, "start", line, 11.0);
        y -= 0.8 * line_h;
    }
    plot.finish()
}

/// Best-of-n curves against √KL: gold of every selector (solid, left axis) and the proxy's
/// score at each selector's pick (dashed, right axis), each selector in its colour; n along the
/// top; each gold peak (the sweet spot) marked with a dot, the plain proxy's labelled.
pub fn goodhart_svg(analysis: &Analysis, title: &str) -> String {
    let series: Vec<Series> = analysis
        .curves
        .iter()
        .enumerate()
        .map(|(i, c)| Series {
            label: c.label.clone(),
            gold: c.points.iter().map(|p| (p.sqrt_kl, p.gold)).collect(),
            proxy: c.points.iter().map(|p| (p.sqrt_kl, p.proxy)).collect(),
            peak: (c.gold_peak.sqrt_kl, c.gold_peak.gold),
            peak_label: (i == 0).then(|| format!("{} peaks: n = {}", c.label, c.gold_peak.n)),
        })
        .collect();
    let top = analysis.curves.first().map_or(Vec::new(), |c| {
        c.points
            .iter()
            .map(|p| (p.sqrt_kl, p.n.to_string()))
            .collect()
    });
    curves_svg(
        &series,
        &Frame {
            title,
            x_label: "√KL(best-of-n ‖ policy)  (nats^½)",
            top,
            notes: &[
                "solid: gold (left axis)",
                "dashed: the proxy's score of the pick",
                "(right axis)",
                "dots: where gold peaks",
                "top: n of best-of-n",
            ],
        },
    )
}

fn pct(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{:.1}%", 100.0 * v)
    }
}

pub(crate) fn model_row(m: &ModelSummary) -> Vec<String> {
    vec![
        m.name.clone(),
        m.train_pairs.to_string(),
        pct(m.label_accuracy),
        pct(m.gold_accuracy),
        pct(m.prefers_longer),
        pct(m.prefers_agreeing),
        format!("{:.0}", m.train_seconds),
    ]
}

pub(crate) const MODEL_HEADER: [&str; 7] = [
    "model",
    "train pairs",
    "acc. vs labels",
    "acc. vs gold",
    "prefers longer",
    "prefers agreeing",
    "train s",
];

const INTERVENTION_HEADER: [&str; 11] = [
    "intervention",
    "train pairs",
    "acc. vs labels",
    "acc. vs gold",
    "Δ vs gold",
    "agrees [95% CI]",
    "prefers longer",
    "length r",
    "BoN gold",
    "BoN agrees",
    "audit flags",
];

/// One row per reward model of the sycophancy story (the plain proxy first): held-out accuracy,
/// its change against the plain proxy, the agree rate on new questions with a wrong claim, the
/// length preference, and best-of-n at the favourite n (gold, and the share of picks agreeing
/// with a wrong user on the new questions' pool).
fn intervention_rows(s: &SycophancyStory) -> Vec<Vec<String>> {
    let plain_gold = s
        .interventions
        .first()
        .map_or(f64::NAN, |p| p.model.gold_accuracy);
    s.interventions
        .iter()
        .map(|i| {
            let m = &i.model;
            vec![
                i.name.clone(),
                m.train_pairs.to_string(),
                pct(m.label_accuracy),
                pct(m.gold_accuracy),
                format!("{:+.1}", 100.0 * (m.gold_accuracy - plain_gold)),
                i.agree_new_questions.display(),
                pct(m.prefers_longer),
                format!("{:.2}", m.length_r),
                format!("{:.3}", i.gold_at_favourite),
                pct(i.agree_at_favourite),
                format!("{} red, {} warn", i.audit.red.len(), i.audit.warnings.len()),
            ]
        })
        .collect()
}

const MITIGATION_HEADER: [&str; 7] = [
    "selector",
    "gold n=1",
    "gold peak (n)",
    "fitted n*",
    "gold at favourite n",
    "gain",
    "fall after peak",
];

fn mitigation_row(a: &Analysis, c: &SelectorCurve) -> Vec<String> {
    let n_star = c
        .gold_fit
        .as_ref()
        .and_then(|f| f.n_star)
        .map_or("–".into(), |n| format!("{n:.1}"));
    vec![
        c.label.clone(),
        format!("{:.3}", c.points.first().map_or(f64::NAN, |p| p.gold)),
        format!("{:.3} ({})", c.gold_peak.gold, c.gold_peak.n),
        n_star,
        format!("{:.3}", c.gold_at_favourite),
        if c.label == a.curves[0].label {
            "–".into()
        } else {
            format!("{:+.3}", c.gain_at_favourite)
        },
        format!("{:.3}", c.gold_fall),
    ]
}

/// Gold of every selector at each n (columns: selectors).
fn curve_rows(a: &Analysis) -> (Vec<String>, Vec<Vec<String>>) {
    let mut header = vec!["n".to_string(), "√KL".into(), "proxy score".into()];
    header.extend(a.curves.iter().map(|c| c.label.clone()));
    let rows = a.curves[0]
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let mut row = vec![
                p.n.to_string(),
                format!("{:.2}", p.sqrt_kl),
                format!("{:.3}", p.proxy),
            ];
            row.extend(a.curves.iter().map(|c| {
                c.points
                    .get(i)
                    .map_or("–".into(), |q| format!("{:.3}", q.gold))
            }));
            row
        })
        .collect();
    (header, rows)
}

/// `rewardkit demo`'s terminal summary: the story, the models, the audit's flags, the curves
/// and the mitigations.
pub fn demo_text<C: StoryConfig>(r: &DemoReport<C>) -> String {
    let mut s = String::new();
    for line in r.story() {
        let _ = writeln!(s, "{line}");
    }
    let mut t = new_table(&MODEL_HEADER);
    for m in r.models() {
        t.add_row(model_row(m));
    }
    let _ = writeln!(s, "\nReward models (held-out pairs)\n{t}");
    let _ = writeln!(s, "\nAudit of the proxy\n{}", audit_flags_text(&r.audit));
    let (header, rows) = curve_rows(&r.analysis);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    let mut t = new_table(&header);
    for row in rows {
        t.add_row(row);
    }
    let _ = writeln!(
        s,
        "Best-of-n over {} prompts × {} samples: gold of each selector's pick (proxy score: the proxy's score of its own pick)\n{t}",
        r.analysis.prompts, r.analysis.samples_per_prompt
    );
    let mut t = new_table(&MITIGATION_HEADER);
    for c in &r.analysis.curves {
        t.add_row(mitigation_row(&r.analysis, c));
    }
    let _ = writeln!(
        s,
        "\nMitigations (favourite n = {}, where the proxy's own score is highest)\n{t}",
        r.analysis.favourite_n
    );
    if r.sycophancy.interventions.len() > 1 {
        let mut t = new_table(&INTERVENTION_HEADER);
        for row in intervention_rows(&r.sycophancy) {
            t.add_row(row);
        }
        let _ = writeln!(
            s,
            "\nInterventions (each retrained from scratch; best-of-n at n = {})\n{t}",
            r.sycophancy.favourite_n
        );
    }
    s
}

pub(crate) fn md_table(s: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(s, "| {} |", header.join(" | "));
    let align: Vec<&str> = (0..header.len())
        .map(|i| if i == 0 { "---" } else { "---:" })
        .collect();
    let _ = writeln!(s, "|{}|", align.join("|"));
    for row in rows {
        let _ = writeln!(s, "| {} |", row.join(" | "));
    }
    s.push('\n');
}

/// `report.md` of `rewardkit demo`.
pub fn demo_markdown<C: StoryConfig>(r: &DemoReport<C>) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# Goodhart's law in the built-in world (seed {})\n",
        r.config.seed()
    );
    for line in r.story() {
        let _ = writeln!(s, "{}\n", line.trim_start());
    }
    let _ = writeln!(s, "![best-of-n curves](goodhart.svg)\n");

    let _ = writeln!(s, "## Labels\n");
    let label_row = |name: &str, l: &LabelStats| {
        vec![
            name.to_string(),
            l.total().to_string(),
            l.longer.to_string(),
            l.agreeing.to_string(),
            l.flattery.to_string(),
            l.correctness.to_string(),
            l.noise.to_string(),
            l.coin.to_string(),
        ]
    };
    md_table(
        &mut s,
        &[
            "labeler",
            "pairs",
            "longer",
            "agreeing",
            "flattery",
            "correctness",
            "noise",
            "coin",
        ],
        &[
            label_row("biased (proxy)", &r.labels),
            label_row("unbiased (control)", &r.control_labels),
        ],
    );

    let _ = writeln!(s, "## Reward models\n");
    let m = r.config.model();
    let _ = writeln!(
        s,
        "Tiny BERT ({} hidden, {} layers, {} heads, {} pooling) trained from scratch; accuracy on {} held-out pairs of fresh policy samples. *Prefers longer* / *agreeing*: among pairs of equal correctness, how often the model scores the longer / agreeing response higher (50% = indifferent).\n",
        m.hidden_size,
        m.layers,
        m.heads,
        m.pooling,
        r.config.eval_pairs()
    );
    let rows: Vec<Vec<String>> = r.models().into_iter().map(model_row).collect();
    md_table(&mut s, &MODEL_HEADER, &rows);
    if !r.rounds.is_empty() {
        let _ = writeln!(s, "Iterative retraining:\n");
        let rows: Vec<Vec<String>> = r
            .rounds
            .iter()
            .map(|x| {
                vec![
                    x.round.to_string(),
                    x.new_pairs.to_string(),
                    pct(x.pick_gold),
                    pct(x.pick_lost),
                ]
            })
            .collect();
        md_table(
            &mut s,
            &[
                "round",
                "gold pairs added",
                "previous proxy's picks correct",
                "picks that lost to a random sample",
            ],
            &rows,
        );
    }

    let _ = writeln!(s, "## Audit of the proxy\n");
    if r.audit.flags.is_empty() {
        let _ = writeln!(s, "No flags.\n");
    }
    for f in &r.audit.flags {
        let _ = writeln!(s, "- **{:?}** `{}`: {}", f.severity, f.subject, f.message);
    }
    let _ = writeln!(s, "\nThe full audit: [audit/report.md](audit/report.md).\n");

    let a = &r.analysis;
    let _ = writeln!(
        s,
        "## Best-of-n\n\n{} prompts × {} samples; the unbiased best-of-n estimator (no resampling). Columns after *proxy score* (the proxy's score of its own pick): gold of each selector's pick.\n",
        a.prompts, a.samples_per_prompt
    );
    let (header, rows) = curve_rows(a);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    md_table(&mut s, &header, &rows);
    let _ = writeln!(
        s,
        "## Mitigations\n\nGold at n = {} (where the proxy's own score is highest, what an optimiser that trusts it would pick), and the gain over the plain proxy there. *Fitted n\\**: the peak of `R(d) = d(α − βd)` fitted to gold.\n",
        a.favourite_n
    );
    let rows: Vec<Vec<String>> = a.curves.iter().map(|c| mitigation_row(a, c)).collect();
    md_table(&mut s, &MITIGATION_HEADER, &rows);
    sycophancy_markdown(&mut s, &r.sycophancy);

    let t = &r.timings;
    let _ = writeln!(s, "## Time\n");
    md_table(
        &mut s,
        &["stage", "seconds"],
        &[
            ("labels", t.labels),
            ("training (proxy, ensemble, control)", t.training),
            ("held-out accuracy", t.held_out),
            ("audit", t.audit),
            ("iterative retraining", t.retraining),
            ("interventions", t.interventions),
            ("scoring the pool", t.pool_scoring),
            ("curves and fits", t.analysis),
            ("total", t.total),
        ]
        .iter()
        .map(|(k, v)| vec![k.to_string(), format!("{v:.1}")])
        .collect::<Vec<_>>(),
    );
    s
}

/// The sycophancy pipeline's steps and the interventions, for `report.md`.
fn sycophancy_markdown(s: &mut String, y: &SycophancyStory) {
    if y.best_of_n.is_empty() {
        return;
    }
    let _ = writeln!(
        s,
        "## Sycophancy, step by step\n\nThe labels' agreement bias decided {} labels. On questions the world never asks (answers the proxy cannot have memorised), each with a wrong user claim, the proxy's audit finds it preferring the agreeing response; best-of-n among the base policy's answers to {} such prompts then picks agreeing answers more often as n grows, and gold falls:\n",
        y.labels_by_agreement, y.wrong_claim_prompts
    );
    let rows: Vec<Vec<String>> = y
        .best_of_n
        .iter()
        .map(|p| vec![p.n.to_string(), pct(p.agree), format!("{:.3}", p.gold)])
        .collect();
    md_table(s, &["n", "picks agreeing with the user", "gold"], &rows);
    if y.interventions.len() > 1 {
        let _ = writeln!(
            s,
            "## Interventions\n\nThe proxy retrained from scratch on the same labels with one change each (`docs/interventions.md`). Accuracy on the held-out pairs (Δ: against the plain proxy, in points); *agrees*: how often the agreeing response wins on the new questions with a wrong claim; *length r*: Pearson's r of the score with words over the held-out responses; *BoN*: best-of-n at n = {} (gold on the main pool; the share of picks agreeing with the user on the new questions' pool); *audit flags*: each model's own audit on the proxy's pairs and items (the subjects are in report.json, `sycophancy.interventions[].audit`).\n",
            y.favourite_n
        );
        let rows = intervention_rows(y);
        md_table(s, &INTERVENTION_HEADER, &rows);
        for i in &y.interventions {
            let _ = writeln!(s, "- *{}*: {}", i.name, i.description);
        }
        s.push('\n');
    }
}

/// `report.md` of `rewardkit goodhart curves`: what was measured, the selectors at the proxy's
/// favourite n, and the curves behind the plot.
pub fn analysis_markdown(a: &Analysis, title: &str, gold: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# {title}\n");
    let _ = writeln!(
        s,
        "{} prompts × {} samples; gold: {gold}. Curves are the unbiased best-of-n estimator over all n-subsets of each prompt's samples; KL = log n − (n−1)/n; fits R(d) = d(α − βd), d = √KL, of the change from n = 1.\n",
        a.prompts, a.samples_per_prompt
    );
    let _ = writeln!(
        s,
        "## Selectors\n\nGold at n = {} (where the proxy's own score is highest, what an optimiser that trusts it would pick: {:.3} with the plain proxy), and each selector's gain there. *Fitted n\\**: the peak of `R(d) = d(α − βd)` fitted to gold.\n",
        a.favourite_n, a.baseline_gold_at_favourite
    );
    let rows: Vec<Vec<String>> = a.curves.iter().map(|c| mitigation_row(a, c)).collect();
    md_table(&mut s, &MITIGATION_HEADER, &rows);
    let _ = writeln!(s, "## Curves\n");
    let (header, rows) = curve_rows(a);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    md_table(&mut s, &header, &rows);
    let _ = writeln!(s, "![best-of-n](goodhart.svg)");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewardkit_goodhart::analysis::{analyze, PoolScores, PromptScores, Selector};
    use rewardkit_goodhart::combine::Combine;

    /// Two prompts of 8 samples; member 0 over-rates the last samples, member 1 does not.
    fn analysis() -> Analysis {
        let prompt = |shift: f64| PromptScores {
            members: vec![
                (0..8).map(|i| f64::from(i) + shift).collect(),
                (0..8).map(|i| f64::from(i % 5) + shift).collect(),
            ],
            gold: vec![0.0, 0.2, 0.4, 0.6, 0.8, 0.5, 0.2, 0.0],
            logp: None,
            ref_logp: None,
        };
        let pool = PoolScores {
            prompts: vec![prompt(0.0), prompt(0.5)],
        };
        let selectors = [
            Selector::Proxy { member: 0 },
            Selector::ensemble(Combine::Min),
        ];
        analyze(&pool, &selectors, &[1, 2, 4, 8]).unwrap()
    }

    #[test]
    fn plot_has_a_gold_and_a_proxy_line_per_selector_and_marks_the_peak() {
        let a = analysis();
        let svg = goodhart_svg(&a, "test <plot>");
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        assert_eq!(svg.matches("<polyline").count(), 4);
        assert_eq!(svg.matches("stroke-dasharray").count(), 2);
        // One peak dot per selector; the proxy's peak is labelled with its n.
        assert_eq!(svg.matches("<circle").count(), 2);
        let peak = format!("proxy peaks: n = {}", a.curves[0].gold_peak.n);
        assert!(svg.contains(&peak), "{peak}");
        assert!(svg.contains("test &lt;plot&gt;"));
        assert!(svg.contains("ensemble min"));
    }

    #[test]
    fn tables_list_every_selector_and_n() {
        let a = analysis();
        let (header, rows) = curve_rows(&a);
        assert_eq!(header.len(), 3 + 2);
        assert_eq!(rows.len(), 4);
        assert_eq!(rows[3][0], "8");
        let row = mitigation_row(&a, &a.curves[1]);
        assert_eq!(row[0], "ensemble min");
        assert_eq!(row[5], format!("{:+.3}", a.curves[1].gain_at_favourite));
        assert_eq!(mitigation_row(&a, &a.curves[0])[5], "–");
    }
}
