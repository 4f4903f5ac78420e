//! The audit's sanity cases, on real HH-RLHF pairs and the real sycophancy sources in
//! `../shared/data`: a length scorer is flagged on length and by the filler and repetition probes;
//! a "great question" bonus is caught by the flattery probe and the sycophancy audit; a noise
//! scorer is flagged on nothing in (nearly) all seeds.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use std::convert::Infallible;
use std::path::PathBuf;

use rewardkit_audit::run::{AuditReport, Check, Severity};
use rewardkit_audit::{AuditConfig, Plan, PromptFormat, SycophancySources};
use rewardkit_data::{load, LoadOptions, PreferencePair, Scorer, StableHasher, Text};

fn shared(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/data")
        .join(rel)
}

fn pairs(n: usize) -> Vec<PreferencePair> {
    let data = load(
        &[shared("hh-rlhf/helpful-online/test.jsonl.gz")],
        &LoadOptions::default(),
    )
    .unwrap();
    data.pairs.into_iter().take(n).collect()
}

fn config(seed: u64) -> AuditConfig {
    AuditConfig {
        seed,
        bootstrap: 200,
        probe_samples: 120,
        sycophancy: SycophancySources {
            anthropic: Some(shared("sycophancy/anthropic_150.json")),
            gsm8k: Some(shared("gsm8k/test.jsonl")),
            truthfulqa: Some(shared("truthfulqa/TruthfulQA.csv")),
            max_items: 100,
            format: PromptFormat::Auto,
        },
        ..Default::default()
    }
}

/// A scorer from a closure over the response text.
struct FnScorer<F: Fn(&str) -> f64>(&'static str, F);

impl<F: Fn(&str) -> f64> Scorer for FnScorer<F> {
    type Error = Infallible;
    fn score_batch(&self, items: &[(&Text, &Text)]) -> Result<Vec<f64>, Infallible> {
        Ok(items.iter().map(|(_, r)| (self.1)(&r.render())).collect())
    }
    fn name(&self) -> String {
        self.0.into()
    }
}

/// Standard normal noise, a fixed function of (seed, text).
fn noise(seed: u64, text: &str) -> f64 {
    let mut h = StableHasher::new(seed);
    h.str(text);
    let u1 = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    h.str("second");
    let u2 = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    (-2.0 * (1.0 - u1).ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

fn audit<S: Scorer>(plan: &Plan, scorer: &S) -> AuditReport {
    let scores = plan.score(scorer, |_, _| {}).unwrap();
    plan.analyze(&scores, scorer.name(), None)
}

fn flagged(report: &AuditReport, check: Check, subject: &str) -> Option<Severity> {
    report
        .flags
        .iter()
        .find(|f| f.check == check && f.subject == subject)
        .map(|f| f.severity)
}

#[test]
fn a_length_scorer_is_red_on_length_and_caught_by_filler_and_repetition() {
    let plan = Plan::from_sources(&pairs(400), config(0)).unwrap();
    let report = audit(&plan, &FnScorer("length", |r| r.chars().count() as f64));
    let chars = report
        .correlations
        .iter()
        .find(|c| c.feature.name() == "chars")
        .unwrap();
    let r = chars.pearson.as_ref().unwrap().r;
    assert!(r > 0.999, "r = {r}");
    assert_eq!(
        flagged(&report, Check::Correlation, "chars"),
        Some(Severity::Red)
    );
    assert_eq!(
        flagged(&report, Check::Correlation, "words"),
        Some(Severity::Red)
    );
    assert_eq!(
        flagged(&report, Check::Probe, "filler"),
        Some(Severity::Red)
    );
    assert_eq!(
        flagged(&report, Check::Probe, "repeat_sentence"),
        Some(Severity::Red)
    );
    assert_eq!(
        flagged(&report, Check::LengthPairs, "length"),
        Some(Severity::Red)
    );
    let filler = report
        .probes
        .iter()
        .find(|p| p.probe.name() == "filler")
        .unwrap();
    assert_eq!(filler.share_raised, 1.0);
    // The ridge probe puts its weight on length.
    let ridge = report.ridge.as_ref().unwrap();
    let top = ridge
        .coefficients
        .iter()
        .max_by(|a, b| a.coefficient.abs().total_cmp(&b.coefficient.abs()))
        .unwrap();
    assert!(
        matches!(top.feature.name(), "chars" | "words" | "tokens"),
        "{top:?}"
    );
    assert!(ridge.r2 > 0.95, "{}", ridge.r2);
}

#[test]
fn a_great_question_bonus_is_caught_by_the_flattery_probe_and_the_sycophancy_audit() {
    // 400 GSM8K and TruthfulQA items (Anthropic has 150): a third of the agreeing responses get
    // the bonus, the rest are coin flips, so agreeing wins ~2/3; at n = 400 that is significant
    // after the Holm correction with a wide margin (z ≈ 4 beyond the threshold), for any noise.
    let mut c = config(1);
    c.sycophancy.max_items = 400;
    let plan = Plan::from_sources(&pairs(300), c).unwrap();
    let scorer = FnScorer("great-question", |r| {
        noise(7, r)
            + if r.to_lowercase().contains("great question") {
                3.0
            } else {
                0.0
            }
    });
    let report = audit(&plan, &scorer);
    // One of the five openers in lexicons/probe_openers.txt lacks "great question" ("Excellent
    // question!", "You're so smart…", "I love this question!" …): the bonus still wins most.
    let opener = report
        .probes
        .iter()
        .find(|p| p.probe.name() == "flattering_opener")
        .unwrap();
    assert!(opener.share_raised > 0.5, "{opener:?}");
    assert!(
        flagged(&report, Check::Probe, "flattering_opener").is_some(),
        "{:#?}",
        report.flags
    );
    // One agreeing template in three says "Great question!", so agreeing wins ~2/3 of GSM8K and
    // TruthfulQA items.
    for domain in ["gsm8k", "truthfulqa"] {
        assert_eq!(
            flagged(&report, Check::Sycophancy, domain),
            Some(Severity::Red),
            "{domain}: {:#?}",
            report.sycophancy
        );
    }
    // Anthropic items have plain answers and no bonus: not flagged.
    assert!(report
        .flags
        .iter()
        .all(|f| !f.subject.starts_with("anthropic/")));
}

/// The false-flag rate: a noise scorer audited with 100 seeds. Holm over all checks at 5% keeps
/// the family-wise rate at most 5%; we allow 10% for the sampling error of 100 audits (binomial
/// sd 2.2 points). Measured: see the assertion message.
#[test]
fn noise_scorer_false_flag_rate() {
    let pairs = pairs(300);
    let mut flagged_audits = 0;
    let mut flags = Vec::new();
    for seed in 0..100 {
        let mut c = config(seed);
        c.bootstrap = 100;
        c.probe_samples = 60;
        c.sycophancy.max_items = 60;
        let plan = Plan::from_sources(&pairs, c).unwrap();
        let report = audit(&plan, &FnScorer("noise", move |r| noise(seed, r)));
        if !report.flags.is_empty() {
            flagged_audits += 1;
            flags.extend(report.flags.iter().map(|f| f.subject.clone()));
        }
    }
    let rate = flagged_audits as f64 / 100.0;
    eprintln!("false-flag rate over 100 seeds: {rate} ({flags:?})");
    assert!(rate <= 0.10, "false-flag rate {rate}: {flags:?}");
}
