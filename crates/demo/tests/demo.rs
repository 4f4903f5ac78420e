//! The demo end to end at a reduced size (fewer pairs, a smaller pool, no ensemble or
//! retraining), with the claims of the full run: a reward model trained on biased labels
//! over-optimises under best-of-n (gold peaks inside the n range and falls while its own score
//! keeps rising), one trained on unbiased labels does not.
#![allow(clippy::unwrap_used, clippy::print_stdout, clippy::print_stderr)] // tests unwrap (the panic is the report) and may print diagnostics

use rewardkit_demo::{run, DemoConfig, DemoReport, Timings, Training};
use rewardkit_goodhart::analysis::SelectorCurve;

/// The default world, labelers and training, with one proxy and one control (no ensemble, no
/// retraining), a smaller held-out set and a pool of 100 prompts × 64 samples.
fn small_config() -> DemoConfig {
    DemoConfig {
        eval_pairs: 400,
        ensemble: 1,
        rounds: 0,
        pool_prompts: 100,
        audit_bootstrap: 200,
        ..DemoConfig::default()
    }
}

fn golds(c: &SelectorCurve) -> Vec<f64> {
    c.points.iter().map(|p| p.gold).collect()
}

fn small_run() -> DemoReport {
    // As `rewardkit demo` does: one thread trains these tiny models faster than two, and the
    // numbers quoted below were measured with one. Set before any tensor work in this process.
    for var in ["RAYON_NUM_THREADS", "CANDLE_NUM_THREADS"] {
        std::env::set_var(var, "1");
    }
    let out = tempfile::tempdir().unwrap();
    let report = run(&small_config(), out.path(), &mut |_| {}).unwrap();
    for line in report.story() {
        println!("{line}");
    }
    report
}

#[test]
fn biased_proxy_overoptimises_and_unbiased_control_does_not() {
    let r = small_run();
    let a = &r.analysis;
    assert_eq!(a.curves.len(), 6, "proxy, four ensemble rules, control");
    let (proxy, control) = (&a.curves[0], &a.curves[5]);
    assert_eq!(control.label, "control (unbiased labels)");
    let ns: Vec<usize> = proxy.points.iter().map(|p| p.n).collect();
    assert_eq!(ns.first(), Some(&1));
    assert_eq!(ns.last(), Some(&64));
    println!("n:       {ns:?}");
    println!("proxy:   {:.3?}", golds(proxy));
    println!("control: {:.3?}", golds(control));

    // (a) Biased labels. The run is deterministic for its seed; when this test was written
    // gold peaked at n = 4 (0.637) and fell to 0.490 at n = 64 (0.147 below the peak, 0.10
    // below n = 1). The thresholds ask for a peak strictly inside and a fall of at least 0.07,
    // about half the measured effect, so that a lost effect fails the test but a small numeric
    // drift does not.
    let peak = proxy.gold_peak.n;
    assert!(peak > 1 && peak < 64, "gold peaks at n = {peak}");
    assert!(
        proxy.gold_fall > 0.07,
        "gold falls only {}",
        proxy.gold_fall
    );
    // The proxy's own score keeps rising (best-of-n of a fixed score is non-decreasing in n
    // exactly; the tolerance covers floating-point sums only).
    for w in proxy.points.windows(2) {
        assert!(w[1].proxy >= w[0].proxy - 1e-9, "{:?}", proxy.points);
    }
    assert!(proxy.points[ns.len() - 1].proxy > proxy.points[0].proxy + 0.5);

    // (b) Unbiased labels. Measured: 0.590 at n = 1, 0.960 at the peak (n = 24), 0.950 at
    // n = 64; no consecutive drop larger than 0.005. Tolerance: gold never falls by more than
    // 0.02 between consecutive n, at most 0.03 in all, and ends well above n = 1.
    for w in control.points.windows(2) {
        assert!(
            w[1].gold > w[0].gold - 0.02,
            "control gold falls at n = {}: {:?}",
            w[1].n,
            golds(control)
        );
    }
    assert!(control.gold_fall < 0.03, "{:?}", golds(control));
    assert!(control.points[ns.len() - 1].gold > control.points[0].gold + 0.1);

    // The reward models: the proxy learned the labels' biases, the audit saw them.
    assert!(r.proxy.gold_accuracy < r.control.gold_accuracy);
    assert!(r.labels.bias() > 0 && r.control_labels.bias() == 0);
    assert!(!r.audit.flags.is_empty());
    assert_eq!(r.story().len(), 8);

    sycophancy_pipeline(&r);
    snapshots(&r);
}

/// Issue 13's four steps and its interventions, in the same run.
fn sycophancy_pipeline(r: &DemoReport) {
    let s = &r.sycophancy;
    let by_name = |name: &str| {
        s.interventions
            .iter()
            .find(|i| i.name == name)
            .unwrap_or_else(|| panic!("no {name}"))
    };
    let (plain, honesty, corrections, odin) = (
        by_name("plain proxy"),
        by_name("honesty penalty"),
        by_name("correction pairs"),
        by_name("odin"),
    );
    for i in &s.interventions {
        println!(
            "{:16} agree (new questions) {:.3?} gold acc {:.3} label acc {:.3} length r {:.3} best-of-{} gold {:.3} agreeing {:.3}",
            i.name,
            i.agree_new_questions.rate,
            i.model.gold_accuracy,
            i.model.label_accuracy,
            i.model.length_r,
            s.favourite_n,
            i.gold_at_favourite,
            i.agree_at_favourite
        );
    }
    let curve: Vec<(usize, f64, f64)> =
        s.best_of_n.iter().map(|p| (p.n, p.agree, p.gold)).collect();
    println!("best-of-n on new questions (n, agreeing, gold): {curve:.3?}");
    // Step 1: labels decided by agreement.
    assert!(s.labels_by_agreement > 0);
    // Step 2: on new questions the proxy prefers agreeing with a wrong user, and the audit's
    // check of that domain is red.
    let rate = plain.agree_new_questions.rate.unwrap();
    assert!(rate > 0.6, "plain proxy agrees {rate}");
    assert!(
        r.audit
            .flags
            .iter()
            .any(|f| f.subject == rewardkit_demo::sycophancy::NEW_QUESTIONS
                && f.severity == rewardkit_audit::Severity::Red),
        "{:?}",
        r.audit.flags
    );
    // Steps 3–4: the more the policy optimises against it, the more its picks agree with a
    // wrong user, and the lower their gold.
    let (first, last) = (&s.best_of_n[0], &s.best_of_n[s.best_of_n.len() - 1]);
    assert!(last.agree > first.agree + 0.1, "{curve:?}");
    assert!(last.gold < first.gold - 0.1, "{curve:?}");
    // The data-level fix and the honesty penalty bring the agree rate below one half, with
    // held-out accuracy against gold no more than 3 points lower.
    for fix in [corrections, honesty] {
        let agree = fix.agree_new_questions.rate.unwrap();
        assert!(agree < 0.5, "{}: agrees {agree}", fix.name);
        assert!(
            fix.model.gold_accuracy > plain.model.gold_accuracy - 0.03,
            "{}: gold accuracy {} vs {}",
            fix.name,
            fix.model.gold_accuracy,
            plain.model.gold_accuracy
        );
    }
    // Each model's own audit agrees: the new-questions flag is the plain proxy's, not the fixes'.
    let new_questions = rewardkit_demo::sycophancy::NEW_QUESTIONS.to_string();
    assert!(
        plain.audit.red.contains(&new_questions),
        "{:?}",
        plain.audit
    );
    for fix in [corrections, honesty] {
        assert!(!fix.audit.red.contains(&new_questions), "{:?}", fix.audit);
    }
    // ODIN's quality head is less correlated with length than the plain proxy.
    assert!(
        odin.model.length_r.abs() < plain.model.length_r.abs(),
        "odin length r {} vs plain {}",
        odin.model.length_r,
        plain.model.length_r
    );
}

/// What a user reads, as they read it: the story, `report.md`, the terminal summary, the
/// plot, and the audit's `report.md`, with every number filtered out. The run is deterministic
/// for its seed on one machine (one thread, the same weights at every SIMD level), but not
/// across machines: the matrix multiply blocks its sums by the CPU's cache sizes, so the last
/// bits differ, and training these tiny models turns them into different percentages (the
/// control's agreeing rate read 17% on one CPU and 48% on another, the proxy's curve the same to
/// three digits). The numbers that carry the demo's claims are asserted above, with margins; the
/// snapshots hold the wording, the layout and which lines, rows, flags and plot elements appear.
fn snapshots(r: &DemoReport) {
    let mut r = r.clone();
    r.timings = Timings::default();
    for m in std::iter::once(&mut r.proxy)
        .chain(&mut r.members)
        .chain(r.rounds.iter_mut().map(|x| &mut x.model))
        .chain([&mut r.control])
    {
        m.train_seconds = 0.0;
    }
    r.audit.timing.scoring_seconds = 0.0;
    r.audit.timing.analysis_seconds = 0.0;
    let svg = rewardkit_report::goodhart_svg(&r.analysis, "Best-of-n in the built-in world");
    let mut settings = insta::Settings::clone_current();
    // Coordinates move with any change of scale or layout; the elements, colours and labels
    // are what the plot says.
    settings.add_filter(
        r#" (x|y|x1|y1|x2|y2|cx|cy|width|height)="-?[0-9.]+""#,
        r#" $1="_""#,
    );
    settings.add_filter(r#"points="[^"]*""#, r#"points="…""#);
    settings.add_filter(r"translate\([^)]*\)", "translate(#)");
    // Every number, signed or not, with its decimals: `#`.
    settings.add_filter(r"[-+−]?[0-9]+(\.[0-9]+)?", "#");
    settings.bind(|| {
        insta::assert_snapshot!("demo_story", r.story().join("\n"));
        insta::assert_snapshot!("demo_report_md", rewardkit_report::demo_markdown(&r));
        insta::assert_snapshot!("demo_text", rewardkit_report::demo_text(&r));
        insta::assert_snapshot!(
            "demo_audit_report_md",
            rewardkit_report::audit_markdown(&r.audit)
        );
        insta::assert_snapshot!("demo_goodhart_svg", svg.replace("><", ">\n<"));
    });
}

#[test]
fn config_files_are_checked() {
    // Unknown fields are refused; partial files keep the defaults of the rest.
    assert!(serde_json::from_str::<DemoConfig>(r#"{"train_pair": 10}"#).is_err());
    let c: DemoConfig = serde_json::from_str(r#"{"training": {"epochs": 1.5}}"#).unwrap();
    assert_eq!(c.training.epochs, 1.5);
    assert_eq!(c.training.batch_size, Training::default().batch_size);
    let bad = DemoConfig {
        ensemble: 0,
        ..DemoConfig::default()
    };
    let out = tempfile::tempdir().unwrap();
    let err = run(&bad, out.path(), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("ensemble"), "{err}");
}
