//! Two audits side by side: what an intervention fixed and what it broke.
//!
//! [`compare`] pairs the checks of two [`AuditReport`]s — the same feature correlation, the
//! length-within-pairs gap, the same probe, the same sycophancy domain — and gives for each the
//! change B − A of the check's effect, with a 95% interval **of the difference** and a p-value.
//! Two overlapping intervals do not show that nothing changed, and two disjoint ones overstate
//! it; the interval of the difference is the one to read.
//!
//! Every measure compared is free of the score's scale (a correlation, a share of items), so a
//! model retrained with another loss or head compares fairly with the original:
//!
//! | check | measure | no bias at |
//! |---|---|---|
//! | correlation | Pearson r of the feature with the score | 0 |
//! | length_pairs | accuracy when the chosen response is longer − when it is shorter | 0 |
//! | probe | share of edited responses whose score the edit raised | 0 |
//! | sycophancy | share of decided items where the agreeing response wins | 0 |
//!
//! **Intervals** (MOVER, Zou & Donner 2008): from each side's own 95% interval `[l, u]` around
//! its estimate θ, the difference `d = θ_B − θ_A` has
//! `lower = d − √((θ_B − l_B)² + (u_A − θ_A)²)` and `upper = d + √((u_B − θ_B)² + (θ_A − l_A)²)`.
//! With Wilson intervals on both sides this is Newcombe's hybrid score interval for two
//! proportions (his method 10); with the audit's bootstrap intervals of r it is Zou's interval
//! for two correlations.
//!
//! **Significance**: a two-sided z-test of the difference on a scale where each side is close to
//! normal (Fisher's z = atanh r with standard error 1/√(n − 3) for a correlation, the proportion
//! itself with √(p(1 − p)/n) for a share), and, as in the audit itself, every check of one
//! comparison in one family, corrected with Holm at the first audit's `alpha`. A check is
//! `better` or `worse` only when it is significant after that correction.
//!
//! **Independence**: both the interval and the test treat the two audits as independent samples.
//! Two audits of the same data share their items, and two reward models of the same data err
//! together on them, so the true variance of the difference is smaller than assumed: on shared
//! items the comparison is conservative (wider intervals, fewer changes called). Audits with
//! different settings or data are compared all the same, with a note saying what differs.
//!
//! ```
//! use rewardkit_audit::compare::{compare, Change};
//! use rewardkit_audit::{AuditConfig, Plan};
//! use rewardkit_data::{PreferencePair, ScoreTable};
//!
//! let pairs: Vec<PreferencePair> = (0..60)
//!     .map(|i| {
//!         let short = format!("Answer {i}.");
//!         let long = format!("Answer {i}. {}", "More words here. ".repeat(i % 7 + 1));
//!         let (chosen, rejected) = if i % 2 == 0 { (long, short) } else { (short, long) };
//!         PreferencePair::new(format!("Question {i}?"), chosen, rejected)
//!     })
//!     .collect();
//! let config = AuditConfig { bootstrap: 200, ..Default::default() };
//! let plan = Plan::new(&pairs, Vec::new(), config).unwrap();
//! let audit = |name: &str, score: &dyn Fn(&str) -> f64| {
//!     let rows = plan.requests().iter().map(|(p, r)| (p.clone(), r.clone(), score(&r.render())));
//!     let table = ScoreTable::from_rows(name, rows);
//!     plan.analyze(&plan.score(&table, |_, _| {}).unwrap(), name.into(), None)
//! };
//! // Before: pays for length. After: pays for the answer's number only.
//! let before = audit("length", &|r| r.len() as f64);
//! let after = audit("digits", &|r| r.split(' ').nth(1).map_or(0, |w| w.len()) as f64);
//! let c = compare(&before, &after);
//! let chars = c.rows.iter().find(|r| r.subject == "chars").unwrap();
//! assert_eq!(chars.change, Change::Better);
//! assert!(chars.ci[1] < 0.0);
//! ```

use serde::{Deserialize, Serialize};

use crate::run::{AuditReport, Check, Flag, Severity};
use crate::stats::{holm, normal_cdf};

/// What a check did from the first audit to the second.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Change {
    /// Closer to no bias, significantly (Holm over the comparison).
    Better,
    /// Further from it, significantly.
    Worse,
    /// Not significant after the correction.
    Unchanged,
}

/// One side of a compared check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Side {
    pub value: f64,
    /// The audit's own 95% interval.
    pub ci: [f64; 2],
    /// Items behind the estimate.
    pub n: usize,
    /// The flag the audit raised on this check, if any.
    pub flag: Option<Severity>,
    /// Past a flag's threshold and significant alone, but not after Holm (the audit's `watch`).
    pub watch: bool,
}

/// A check present in both audits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ComparedCheck {
    pub check: Check,
    /// The feature, probe or domain.
    pub subject: String,
    /// What is compared (see the module's table).
    pub measure: String,
    pub a: Side,
    pub b: Side,
    /// `b.value − a.value`.
    pub difference: f64,
    /// 95% interval of the difference (MOVER).
    pub ci: [f64; 2],
    /// Two-sided, before the correction.
    pub p_value: f64,
    /// After Holm over every check of the comparison.
    pub significant: bool,
    pub change: Change,
}

/// An audit as the comparison names it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Audited {
    /// How tables name it; the scorer's name unless the caller sets another (a path, say).
    pub label: String,
    pub scorer: String,
    pub pairs: usize,
    pub flags: usize,
}

/// Two audits, check by check; `rewardkit audit --compare A B` prints it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    pub schema_version: u32,
    pub a: Audited,
    pub b: Audited,
    /// Family-wise level of the correction (the first audit's).
    pub alpha: f64,
    /// Checks of both audits, in the first audit's order.
    pub rows: Vec<ComparedCheck>,
    /// Flags of the first audit that the second does not raise.
    pub fixed: Vec<Flag>,
    /// Flags of the second audit that the first did not raise.
    pub new: Vec<Flag>,
    /// What differs between the audits (settings, data, checks present in one only).
    pub notes: Vec<String>,
}

/// An estimate on the scale of its interval and on the scale of its test.
struct Estimate {
    side: Side,
    /// The estimate on a scale where it is close to normal, and its standard error there.
    test: (f64, f64),
}

/// MOVER interval of `b − a` from each estimate's own interval (Zou & Donner 2008).
pub fn mover_difference(a: f64, ci_a: [f64; 2], b: f64, ci_b: [f64; 2]) -> [f64; 2] {
    let d = b - a;
    [
        d - ((b - ci_b[0]).powi(2) + (ci_a[1] - a).powi(2)).sqrt(),
        d + ((ci_b[1] - b).powi(2) + (a - ci_a[0]).powi(2)).sqrt(),
    ]
}

/// Two-sided p-value of a difference `d` with standard error `se`; a zero `se` gives 1 for no
/// difference and 0 for any.
fn two_sided(d: f64, se: f64) -> f64 {
    if se > 0.0 {
        // The lower tail, which keeps its precision far out (1 − Φ(z) is 0 beyond z ≈ 8.3).
        2.0 * normal_cdf(-(d / se).abs())
    } else if d == 0.0 {
        1.0
    } else {
        0.0
    }
}

/// A proportion `p` of `n` items on the test's scale.
fn proportion_test(p: f64, n: usize) -> (f64, f64) {
    (p, (p * (1.0 - p) / n.max(1) as f64).sqrt())
}

/// The flag, or watch entry, an audit raised on one check.
fn flag_of(report: &AuditReport, check: Check, subject: &str) -> (Option<Severity>, bool) {
    let find = |list: &[Flag]| {
        list.iter()
            .find(|f| f.check == check && f.subject == subject)
            .map(|f| f.severity)
    };
    (find(&report.flags), find(&report.watch).is_some())
}

/// Every check of one audit with its comparable estimate, keyed by (check, subject).
fn estimates(report: &AuditReport) -> Vec<(Check, String, &'static str, Estimate)> {
    let mut out = Vec::new();
    let mut push = |check: Check, subject: String, measure, value, ci, n, test| {
        let (flag, watch) = flag_of(report, check, &subject);
        let side = Side {
            value,
            ci,
            n,
            flag,
            watch,
        };
        out.push((check, subject, measure, Estimate { side, test }));
    };
    for fc in &report.correlations {
        let Some(p) = &fc.pearson else { continue };
        let se = if p.n > 3 {
            1.0 / ((p.n - 3) as f64).sqrt()
        } else {
            f64::INFINITY
        };
        let z = p.r.clamp(-1.0 + 1e-12, 1.0 - 1e-12).atanh();
        let subject = fc.feature.name().to_string();
        push(
            Check::Correlation,
            subject,
            "pearson r",
            p.r,
            p.ci,
            p.n,
            (z, se),
        );
    }
    let l = &report.length_pairs;
    if let (Some(a), Some(b), Some(ca), Some(cb)) = (
        l.accuracy_chosen_longer,
        l.accuracy_chosen_shorter,
        l.ci_chosen_longer,
        l.ci_chosen_shorter,
    ) {
        let (_, sa) = proportion_test(a, l.chosen_longer);
        let (_, sb) = proportion_test(b, l.chosen_shorter);
        push(
            Check::LengthPairs,
            "length".into(),
            "acc. longer − shorter",
            a - b,
            mover_difference(b, cb, a, ca),
            l.chosen_longer + l.chosen_shorter,
            (a - b, sa.hypot(sb)),
        );
    }
    for p in &report.probes {
        push(
            Check::Probe,
            p.probe.name().to_string(),
            "share raised",
            p.share_raised,
            p.share_raised_ci,
            p.n,
            proportion_test(p.share_raised, p.n),
        );
    }
    for d in &report.sycophancy {
        let (Some(rate), Some(ci)) = (d.agree_rate, d.ci) else {
            continue;
        };
        let decided = d.agree_wins + d.correct_wins;
        push(
            Check::Sycophancy,
            d.domain.clone(),
            "agree rate",
            rate,
            ci,
            decided,
            proportion_test(rate, decided),
        );
    }
    out
}

/// Compares audit `b` (after) with audit `a` (before); see the module's documentation.
pub fn compare(a: &AuditReport, b: &AuditReport) -> Comparison {
    let ea = estimates(a);
    let mut eb = estimates(b);
    let mut notes = settings_notes(a, b);
    let mut rows = Vec::new();
    let mut p_values = Vec::new();
    for (check, subject, measure, x) in ea {
        let Some(j) = eb
            .iter()
            .position(|(c, s, _, _)| *c == check && *s == subject)
        else {
            notes.push(format!("{} only in {}", key(check, &subject), a.scorer));
            continue;
        };
        let (_, _, _, y) = eb.remove(j);
        let difference = y.side.value - x.side.value;
        let p_value = two_sided(y.test.0 - x.test.0, x.test.1.hypot(y.test.1));
        p_values.push(p_value);
        rows.push(ComparedCheck {
            check,
            subject,
            measure: measure.into(),
            a: x.side,
            b: y.side,
            difference,
            ci: mover_difference(x.side.value, x.side.ci, y.side.value, y.side.ci),
            p_value,
            significant: false,
            change: Change::Unchanged,
        });
    }
    for (check, subject, _, _) in &eb {
        notes.push(format!("{} only in {}", key(*check, subject), b.scorer));
    }
    for (row, significant) in rows.iter_mut().zip(holm(&p_values, a.config.alpha)) {
        row.significant = significant;
        row.change = match (significant, row.b.value.abs() < row.a.value.abs()) {
            (false, _) => Change::Unchanged,
            (true, true) => Change::Better,
            (true, false) => Change::Worse,
        };
    }
    let raised_by = |r: &AuditReport, f: &Flag| {
        r.flags
            .iter()
            .any(|g| g.check == f.check && g.subject == f.subject)
    };
    Comparison {
        schema_version: 1,
        a: audited(a),
        b: audited(b),
        alpha: a.config.alpha,
        rows,
        fixed: a
            .flags
            .iter()
            .filter(|f| !raised_by(b, f))
            .cloned()
            .collect(),
        new: b
            .flags
            .iter()
            .filter(|f| !raised_by(a, f))
            .cloned()
            .collect(),
        notes,
    }
}

fn audited(r: &AuditReport) -> Audited {
    Audited {
        label: r.scorer.clone(),
        scorer: r.scorer.clone(),
        pairs: r.pairs,
        flags: r.flags.len(),
    }
}

/// `check/subject`, as the audit's summary writes a flag.
pub fn key(check: Check, subject: &str) -> String {
    let check = serde_json::to_value(check)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default();
    format!("{check}/{subject}")
}

/// What differs between the two audits' settings and data.
fn settings_notes(a: &AuditReport, b: &AuditReport) -> Vec<String> {
    let mut notes = Vec::new();
    if a.pairs != b.pairs || a.responses != b.responses {
        notes.push(format!(
            "the audits saw different data: {} pairs and {} responses, then {} and {}",
            a.pairs, a.responses, b.pairs, b.responses
        ));
    }
    let (Ok(serde_json::Value::Object(ca)), Ok(serde_json::Value::Object(cb))) = (
        serde_json::to_value(&a.config),
        serde_json::to_value(&b.config),
    ) else {
        return notes;
    };
    let differ: Vec<&str> = ca
        .iter()
        .filter(|(k, v)| cb.get(k.as_str()) != Some(v))
        .map(|(k, _)| k.as_str())
        .collect();
    if !differ.is_empty() {
        notes.push(format!(
            "the audits ran with different settings: {}",
            differ.join(", ")
        ));
    }
    notes
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditConfig, Plan};
    use rewardkit_data::{PreferencePair, Rng, ScoreTable};

    /// Newcombe (1998), "Interval estimation for the difference between independent
    /// proportions: comparison of eleven methods", Statistics in Medicine 17:873–890, Table II:
    /// method 10 (hybrid score, i.e. MOVER on Wilson intervals) gives, for 56/70 − 48/80,
    /// [0.0524, 0.3339] and, for 9/10 − 3/10, [0.1705, 0.8090].
    #[test]
    fn mover_on_wilson_intervals_is_newcombes_method_10() {
        use rewardkit_eval::stats::wilson_interval;
        for (k1, n1, k2, n2, want) in [
            (56, 70, 48, 80, [0.0524, 0.3339]),
            (9, 10, 3, 10, [0.1705, 0.8090]),
        ] {
            let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
            let ci = mover_difference(
                p2,
                wilson_interval(k2, n2).unwrap(),
                p1,
                wilson_interval(k1, n1).unwrap(),
            );
            assert!((ci[0] - want[0]).abs() < 6e-5, "{ci:?} vs {want:?}");
            assert!((ci[1] - want[1]).abs() < 6e-5, "{ci:?} vs {want:?}");
        }
    }

    #[test]
    fn far_out_p_values_keep_their_precision() {
        // scipy.stats.norm.sf: 2·sf(10) = 1.5239706e-23, 2·sf(1.96) = 0.04999579.
        let p = two_sided(10.0, 1.0);
        assert!((p / 1.5239706e-23 - 1.0).abs() < 1e-6, "{p}");
        assert!((two_sided(-1.96, 1.0) - 0.04999579).abs() < 1e-7);
        assert_eq!((two_sided(0.0, 0.0), two_sided(1.0, 0.0)), (1.0, 0.0));
    }

    fn pairs() -> Vec<PreferencePair> {
        (0..200)
            .map(|i| {
                let short = format!("Answer {i}.");
                let long = format!("Answer {i}. {}", "More words here. ".repeat(i % 7 + 1));
                let (chosen, rejected) = if i % 2 == 0 {
                    (long, short)
                } else {
                    (short, long)
                };
                PreferencePair::new(format!("Question {i}?"), chosen, rejected)
            })
            .collect()
    }

    /// A plan over [`pairs`] with 200 bootstrap resamples and `config`'s other settings.
    fn plan(config: AuditConfig) -> Plan {
        let config = AuditConfig {
            bootstrap: 200,
            ..config
        };
        Plan::new(&pairs(), Vec::new(), config).unwrap()
    }

    fn audit(plan: &Plan, name: &str, score: impl Fn(&str, usize) -> f64) -> AuditReport {
        let rows = plan
            .requests()
            .iter()
            .enumerate()
            .map(|(i, (p, r))| (p.clone(), r.clone(), score(&r.render(), i)));
        let table = ScoreTable::from_rows(name, rows);
        let scores = plan.score(&table, |_, _| {}).unwrap();
        plan.analyze(&scores, name.into(), None)
    }

    #[test]
    fn an_audit_compared_with_itself_changes_nothing() {
        let plan = plan(AuditConfig::default());
        let r = audit(&plan, "length", |r, _| r.len() as f64);
        let c = compare(&r, &r);
        assert!(!c.rows.is_empty());
        assert!(c.fixed.is_empty() && c.new.is_empty() && c.notes.is_empty());
        for row in &c.rows {
            assert_eq!(row.difference, 0.0);
            assert_eq!(row.p_value, 1.0);
            assert_eq!(row.change, Change::Unchanged);
            assert!(row.ci[0] <= 0.0 && row.ci[1] >= 0.0);
        }
    }

    #[test]
    fn removing_a_length_bias_is_better_and_its_flags_fixed() {
        let plan = plan(AuditConfig::default());
        let before = audit(&plan, "length", |r, _| r.len() as f64);
        let mut rng = Rng::new(7);
        let noise: Vec<f64> = (0..plan.requests().len()).map(|_| rng.normal()).collect();
        let after = audit(&plan, "noise", |_, i| noise[i]);
        let c = compare(&before, &after);
        let chars = c.rows.iter().find(|r| r.subject == "chars").unwrap();
        assert!(chars.a.value > 0.9 && chars.a.flag == Some(Severity::Red));
        assert_eq!(chars.b.flag, None);
        assert_eq!(chars.change, Change::Better);
        assert!(chars.significant && chars.p_value < 1e-6);
        // The interval of the difference holds the difference and lies below zero.
        assert!(chars.ci[0] < chars.difference && chars.difference < chars.ci[1]);
        assert!(chars.ci[1] < -0.5);
        assert!(c.fixed.iter().any(|f| f.subject == "chars"));
        assert!(c.new.is_empty());
        // And the other way round it is worse, with the interval mirrored.
        let back = compare(&after, &before);
        let chars_back = back.rows.iter().find(|r| r.subject == "chars").unwrap();
        assert_eq!(chars_back.change, Change::Worse);
        assert!((chars_back.ci[0] + chars.ci[1]).abs() < 1e-12);
        assert!(back.new.iter().any(|f| f.subject == "chars"));
    }

    #[test]
    fn different_settings_and_missing_checks_are_noted() {
        let plan_a = plan(AuditConfig::default());
        let plan_b = plan(AuditConfig {
            seed: 3,
            probes: vec![crate::Probe::Filler],
            ..Default::default()
        });
        let a = audit(&plan_a, "a", |r, _| r.len() as f64);
        let b = audit(&plan_b, "b", |r, _| r.len() as f64);
        let c = compare(&a, &b);
        assert!(c
            .notes
            .iter()
            .any(|n| n.contains("seed") && n.contains("probes")));
        assert!(c.notes.iter().any(|n| n == "probe/bold only in a"));
        assert!(c.rows.iter().any(|r| r.subject == "filler"));
        assert!(!c.rows.iter().any(|r| r.subject == "bold"));
    }

    #[test]
    fn a_report_survives_its_json() {
        let plan = plan(AuditConfig::default());
        let r = audit(&plan, "length", |r, _| r.len() as f64);
        let json = serde_json::to_string(&r).unwrap();
        let back: AuditReport = serde_json::from_str(&json).unwrap();
        // serde_json reads a float to within an ulp of what it wrote.
        fn close(a: &serde_json::Value, b: &serde_json::Value) -> bool {
            use serde_json::Value::{Array, Number, Object};
            match (a, b) {
                (Number(x), Number(y)) => {
                    let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
                    (x - y).abs() <= 1e-12 * x.abs().max(1.0)
                }
                (Array(x), Array(y)) => {
                    x.len() == y.len() && x.iter().zip(y).all(|(x, y)| close(x, y))
                }
                (Object(x), Object(y)) => {
                    x.len() == y.len()
                        && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| close(v, w)))
                }
                (x, y) => x == y,
            }
        }
        let (a, b) = (
            serde_json::to_value(&r).unwrap(),
            serde_json::to_value(&back).unwrap(),
        );
        assert!(close(&a, &b));
        assert_eq!(compare(&r, &back).rows.len(), compare(&r, &r).rows.len());
    }
}
