//! Each metric against values worked out by hand. The decimal digits were computed with Python's
//! `math` module from the definitions in the crate docs (independently of this code); the
//! worked-out arithmetic is in the comments.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use rewardkit_eval::{
    brier, calibration_of, evaluate, fit_temperature, log_loss, stats, Accuracy, Metric,
    PairMetrics, ScoredPair,
};

/// Five non-tie pairs with gaps 2, −1, 0, 0.5, 2.5 and one labelled tie with gap 0.8.
fn pairs() -> Vec<ScoredPair> {
    let mut v = vec![
        ScoredPair::new(2.0, 0.0),
        ScoredPair::new(0.0, 1.0),
        ScoredPair::new(1.0, 1.0), // equal scores: counted as wrong
        ScoredPair::new(0.5, 0.0),
        ScoredPair {
            subset: Some("b".into()),
            ..ScoredPair::new(3.0, 0.5)
        },
        ScoredPair {
            tie: true,
            ..ScoredPair::new(1.0, 0.2)
        },
    ];
    for p in &mut v[..4] {
        p.subset = Some("a".into());
    }
    v
}

fn close(a: f64, b: f64, tol: f64) {
    assert!((a - b).abs() <= tol, "{a} vs {b}");
}

#[test]
fn accuracy_ties_in_score_lose_and_labelled_ties_are_apart() {
    let r = evaluate(&pairs()).overall;
    assert_eq!(r.pairs, 6);
    // Right: gaps 2, 0.5, 2.5 → 3 of 5; the labelled tie is not counted.
    assert_eq!((r.accuracy.n, r.accuracy.correct), (5, 3));
    assert_eq!(r.accuracy.accuracy, Some(0.6));
    // Wilson 95% for 3/5.
    let [lo, hi] = r.accuracy.ci95.unwrap();
    close(lo, 0.230_724_281_276_012_8, 1e-12);
    close(hi, 0.882_379_225_767_352, 1e-12);
    assert_eq!(r.ties.n, 1);
    close(r.ties.mean_abs_gap.unwrap(), 0.8, 1e-12);
}

#[test]
fn wilson_interval_textbook_value() {
    // 8 of 10: the Wilson score interval is 0.490–0.943.
    let [lo, hi] = stats::wilson_interval(8, 10).unwrap();
    close(lo, 0.490_162_471_536_641_8, 1e-12);
    close(hi, 0.943_317_848_545_624_8, 1e-12);
    assert_eq!(stats::wilson_interval(0, 0), None);
    assert_eq!(stats::wilson_interval(0, 5).unwrap()[0], 0.0);
}

#[test]
fn reward_gap_mean_std_median() {
    let g = evaluate(&pairs()).overall.gap;
    // mean (2 − 1 + 0 + 0.5 + 2.5) / 5 = 0.8; squared deviations 1.44 + 3.24 + 0.64 + 0.09 +
    // 2.89 = 8.3, / 4 = 2.075, sqrt = 1.44049; median of −1, 0, 0.5, 2, 2.5 = 0.5.
    close(g.mean.unwrap(), 0.8, 1e-12);
    close(g.std.unwrap(), 1.440_486_029_088_793_3, 1e-12);
    close(g.median.unwrap(), 0.5, 1e-12);
}

#[test]
fn calibration_ece_brier_log_loss_by_hand() {
    let c = evaluate(&pairs()).overall.calibration;
    assert_eq!(c.n, 5);
    // Confidences σ(|Δ|): 0.8808 (bin 8, right), 0.7311 (bin 7, wrong), 0.5 (bin 5, wrong),
    // 0.6225 (bin 6, right), 0.9241 (bin 9, right): one pair per bin, so
    // ECE = (0.1192 + 0.7311 + 0.5 + 0.3775 + 0.0759) / 5.
    close(c.ece.unwrap(), 0.360_732_069_894_302_3, 1e-12);
    // Brier = mean (1 − σ(Δ))²; log loss = mean log(1 + e^−Δ).
    close(c.brier.unwrap(), 0.189_389_480_415_964_1, 1e-12);
    close(c.log_loss.unwrap(), 0.537_260_719_518_759_4, 1e-12);
    let counts: Vec<usize> = c.reliability.iter().map(|b| b.n).collect();
    assert_eq!(counts, [1, 1, 1, 1, 1]);
    assert_eq!(c.reliability[0].lower, 0.5);
    assert_eq!(c.reliability[2].accuracy, Some(0.0)); // bin [0.7, 0.8): the −1 gap
    close(
        c.reliability[2].confidence.unwrap(),
        0.731_058_578_630_004_9,
        1e-12,
    );
}

#[test]
fn brier_and_log_loss_edge_values() {
    // Δ = 0: Brier 0.25, log loss ln 2. Large gaps do not overflow.
    close(brier(&[0.0]).unwrap(), 0.25, 1e-15);
    close(log_loss(&[0.0]).unwrap(), std::f64::consts::LN_2, 1e-15);
    close(log_loss(&[-1000.0]).unwrap(), 1000.0, 1e-9);
    close(log_loss(&[1000.0]).unwrap(), 0.0, 1e-12);
    assert_eq!(brier(&[]), None);
}

#[test]
fn temperature_has_closed_form_on_a_small_case() {
    // Gaps 1, −1, 1: d/da of mean log(1 + e^(−aΔ)) is (σ(a) − 2σ(−a)) / 3, zero at σ(a) = 2/3,
    // so a = ln 2 and T = 1 / ln 2.
    let t = fit_temperature(&[1.0, -1.0, 1.0]).unwrap();
    close(t, 1.0 / std::f64::consts::LN_2, 1e-10);
    // Scaling all gaps by k scales T by k.
    let t5 = fit_temperature(&[5.0, -5.0, 5.0]).unwrap();
    close(t5, 5.0 / std::f64::consts::LN_2, 1e-9);
    // No finite temperature when the scores rank no better than chance, or perfectly.
    assert!(fit_temperature(&[1.0, -2.0]).is_err());
    assert!(fit_temperature(&[1.0, 2.0]).is_err());
    // After scaling, the log loss is no worse than before.
    let gaps = [2.0, -1.0, 0.0, 0.5, 2.5];
    let c = calibration_of(&gaps);
    assert!(c.temperature.log_loss.unwrap() <= c.log_loss.unwrap());
}

#[test]
fn per_subset_reports_and_clear() {
    let report = evaluate(&pairs());
    assert_eq!(report.subsets.len(), 2);
    assert_eq!(report.subsets["a"].accuracy.accuracy, Some(0.5)); // gaps 2, −1, 0, 0.5
    assert_eq!(report.subsets["b"].accuracy.accuracy, Some(1.0));
    // Pairs without a subset are in `overall` only (the tie here).
    assert_eq!(report.overall.pairs, 6);
    let mut acc = Accuracy::default();
    acc.update_all(&pairs());
    assert_eq!(acc.compute().correct, 3);
    acc.clear();
    assert_eq!(acc.compute().n, 0);
    assert_eq!(acc.compute().accuracy, None);
}

#[test]
fn sigmoid_and_softplus_are_stable() {
    close(stats::sigmoid(0.0), 0.5, 0.0);
    close(stats::sigmoid(-800.0), 0.0, 1e-300);
    close(stats::sigmoid(800.0), 1.0, 0.0);
    close(stats::softplus(800.0), 800.0, 1e-12);
    close(stats::softplus(0.0), std::f64::consts::LN_2, 1e-15);
}

/// Soft labels: the cross-entropy against each pair's label, its floor and the mean distance,
/// against the formulas in f64 written out here; absent when every label is hard.
#[test]
fn soft_label_figures_follow_their_formulas() {
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    let report = |pairs: &[ScoredPair]| {
        let mut m = PairMetrics::default();
        m.update_all(pairs);
        m.compute()
    };
    let hard = report(&pairs());
    assert!(hard.calibration.soft_labels.is_none());
    let labelled = [(2.0, Some(0.8)), (-1.0, Some(0.6)), (0.5, None)];
    let scored: Vec<ScoredPair> = labelled
        .iter()
        .map(|&(g, p)| ScoredPair {
            p_chosen: p,
            ..ScoredPair::new(g, 0.0)
        })
        .chain([ScoredPair {
            tie: true,
            p_chosen: Some(0.5),
            ..ScoredPair::new(3.0, 0.0)
        }])
        .collect();
    let s = report(&scored).calibration.soft_labels.unwrap();
    let ps: Vec<(f64, f64)> = labelled
        .iter()
        .map(|&(g, p)| (g, p.unwrap_or(1.0)))
        .collect();
    let ce: f64 = ps
        .iter()
        .map(|&(g, p)| -p * sigmoid(g).ln() - (1.0 - p) * (1.0 - sigmoid(g)).ln())
        .sum::<f64>()
        / 3.0;
    let h = |p: f64| {
        if p > 0.0 && p < 1.0 {
            -p * p.ln() - (1.0 - p) * (1.0 - p).ln()
        } else {
            0.0
        }
    };
    let floor: f64 = ps.iter().map(|&(_, p)| h(p)).sum::<f64>() / 3.0;
    let err: f64 = ps.iter().map(|&(g, p)| (sigmoid(g) - p).abs()).sum::<f64>() / 3.0;
    assert_eq!(s.soft, 2); // the tie is left out, as everywhere in calibration
    assert!(
        (s.cross_entropy - ce).abs() < 1e-12,
        "{} vs {ce}",
        s.cross_entropy
    );
    assert!((s.label_entropy - floor).abs() < 1e-12);
    assert!((s.mean_abs_error - err).abs() < 1e-12);
    assert!(s.cross_entropy > s.label_entropy);
}
