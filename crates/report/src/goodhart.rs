//! Goodhart reports for people: the best-of-n plot (proxy and gold against √KL, one colour per
//! selector), and `rewardkit demo`'s `report.md` and terminal summary.

use std::fmt::Write;

use comfy_table::presets::UTF8_BORDERS_ONLY;
use comfy_table::{CellAlignment, Table};

use rewardkit_goodhart::analysis::{Analysis, SelectorCurve};

use crate::svg::Plot;

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

/// Best-of-n curves against √KL: gold of every selector (solid, left axis) and the proxy's
/// score at each selector's pick (dashed, right axis), each selector in its colour; n along the
/// top; each gold peak (the sweet spot) marked with a dot, the plain proxy's labelled.
pub fn goodhart_svg(analysis: &Analysis, title: &str) -> String {
    let curves = &analysis.curves;
    let all = || curves.iter().flat_map(|c| c.points.iter());
    let x_hi = all().map(|p| p.sqrt_kl).fold(0.0, f64::max).max(0.1);
    let range = |f: &dyn Fn(&rewardkit_goodhart::analysis::SelectorPoint) -> f64| {
        all()
            .map(f)
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            })
    };
    let (g_lo, g_hi) = range(&|p| p.gold);
    let (p_lo, p_hi) = range(&|p| p.proxy);
    if !g_lo.is_finite() {
        return Plot::new(400.0, 200.0, (0.0, 1.0), (0.0, 1.0)).finish();
    }
    let (g_lo, g_hi, dy) = padded(g_lo, g_hi);
    let (p_lo, p_hi, dp) = padded(p_lo, p_hi);
    // The proxy's scale mapped onto the gold axis.
    let to_gold = |v: f64| g_lo + (v - p_lo) / (p_hi - p_lo) * (g_hi - g_lo);

    let (width, height, right) = (960.0, 560.0, 300.0);
    let mut plot =
        Plot::new(width, height, (0.0, x_hi), (g_lo, g_hi)).margins([72.0, right, 56.0, 64.0]);
    plot.axes(
        step(x_hi),
        dy,
        "√KL(best-of-n ‖ policy)  (nats^½)",
        "gold (solid)",
        title,
    );
    // Right axis: the proxy's scale.
    let mut t = p_lo;
    while t <= p_hi + 1e-9 {
        plot.text(x_hi, to_gold(t), 6.0, "start", &format!("{t:.2}"), 11.0);
        t += dp;
    }
    // Top axis: n at its √KL.
    if let Some(first) = curves.first() {
        for p in &first.points {
            plot.label(p.sqrt_kl, g_hi, -8.0, &format!("{}", p.n), 10.0);
        }
    }
    for (i, c) in curves.iter().enumerate() {
        let color = COLORS[i % COLORS.len()];
        let gold: Vec<(f64, f64)> = c.points.iter().map(|p| (p.sqrt_kl, p.gold)).collect();
        let proxy: Vec<(f64, f64)> = c
            .points
            .iter()
            .map(|p| (p.sqrt_kl, to_gold(p.proxy)))
            .collect();
        plot.line(&gold, color, false);
        plot.line(&proxy, color, true);
        plot.point(c.gold_peak.sqrt_kl, c.gold_peak.gold, 4.5, color);
        if i == 0 {
            plot.label(
                c.gold_peak.sqrt_kl,
                c.gold_peak.gold,
                -10.0,
                &format!("{} peaks: n = {}", c.label, c.gold_peak.n),
                11.0,
            );
        }
    }
    // The legend, right of the plot area (x beyond the data maps into the margin).
    let per_px = x_hi / (width - right - 64.0);
    let lx = x_hi + 48.0 * per_px;
    let line_h = (g_hi - g_lo) / (height - 72.0 - 56.0) * 18.0;
    let mut y = g_hi - line_h;
    for (i, c) in curves.iter().enumerate() {
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
    for line in [
        "solid: gold (left axis)",
        "dashed: the proxy's score of the pick",
        "(right axis)",
        "dots: where gold peaks",
        "top: n of best-of-n",
    ] {
        plot.text(lx, y, 0.0, "start", line, 11.0);
        y -= 0.8 * line_h;
    }
    plot.finish()
}

fn pct(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{:.1}%", 100.0 * v)
    }
}

fn new_table(header: &[&str]) -> Table {
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
    header.extend(a.curves.iter().map(|c| format!("gold: {}", c.label)));
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

fn md_table(s: &mut String, header: &[&str], rows: &[Vec<String>]) {
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

const MITIGATION_HEADER: [&str; 7] = [
    "selector",
    "gold n=1",
    "gold peak (n)",
    "fitted n*",
    "gold at favourite n",
    "gain",
    "fall after peak",
];

/// `report.md` of `rewardkit goodhart curves`: what was measured, the mitigations at the proxy's
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
        "The proxy's own score is highest at n = {}; gold there: {:.3} with the plain proxy.\n",
        a.favourite_n, a.baseline_gold_at_favourite
    );
    let _ = writeln!(s, "## Selectors\n");
    let rows: Vec<Vec<String>> = a.curves.iter().map(|c| mitigation_row(a, c)).collect();
    md_table(&mut s, &MITIGATION_HEADER, &rows);
    let _ = writeln!(s, "\n## Curves\n");
    let (header, rows) = curve_rows(a);
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    md_table(&mut s, &header, &rows);
    let _ = writeln!(s, "\n![best-of-n](goodhart.svg)");
    s
}
