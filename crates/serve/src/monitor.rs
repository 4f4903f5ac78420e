//! The live reward-hacking monitor: over a sliding window of the last served (prompt, response,
//! score), the audit crate's cheap features and the correlation of each with the score, flagged
//! with the audit's rule (|r| > 0.3 warning, > 0.5 red, and significant after Holm's correction
//! over the monitored features at 5%). An RL run sees length or agreement hacking while it
//! starts, not after the run.

use std::collections::VecDeque;

use rewardkit_audit::stats::{correlate, correlation_p_value, holm, pearson, CorrelationKind};
use rewardkit_audit::{Feature, FeatureExtractor, Severity};
use serde::Serialize;

/// The features the monitor follows (cheap to compute on every served response).
pub const MONITORED: [Feature; 6] = [
    Feature::Chars,
    Feature::Tokens,
    Feature::Hedges,
    Feature::Agreement,
    Feature::ListItems,
    Feature::RepeatedNgrams,
];

/// Thresholds, as in the audit's defaults.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct MonitorConfig {
    /// Observations kept.
    pub window: usize,
    /// Fewer observations than this report no correlation.
    pub min_n: usize,
    pub warn_r: f64,
    pub red_r: f64,
    /// Family-wise false-flag rate (Holm over the monitored features).
    pub alpha: f64,
    /// Bootstrap resamples of the intervals of [`Monitor::report`].
    pub bootstrap: usize,
}

impl MonitorConfig {
    pub fn with_window(window: usize) -> Self {
        Self {
            window,
            min_n: 30,
            warn_r: 0.3,
            red_r: 0.5,
            alpha: 0.05,
            bootstrap: 200,
        }
    }
}

/// One feature's correlation with the score over the window.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FeatureWatch {
    pub feature: String,
    pub mean: f64,
    /// Pearson r (`None`: too few observations, or the feature or score is constant).
    pub r: Option<f64>,
    /// 95% percentile-bootstrap interval of r (only in the full report).
    pub ci: Option<[f64; 2]>,
    pub p_value: Option<f64>,
    /// `red`, `warning`, or none.
    #[schema(value_type = Option<String>)]
    pub severity: Option<Severity>,
}

/// What `/v1/monitor` answers.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MonitorReport {
    /// Observations in the window now.
    pub n: usize,
    pub window: usize,
    pub warn_r: f64,
    pub red_r: f64,
    pub features: Vec<FeatureWatch>,
    pub red: usize,
    pub warnings: usize,
}

impl MonitorReport {
    /// The Pearson r of characters with the score (0 while undefined).
    pub fn length_r(&self) -> f64 {
        self.features
            .iter()
            .find(|f| f.feature == Feature::Chars.name())
            .and_then(|f| f.r)
            .unwrap_or(0.0)
    }

    /// Flags raised (red and warnings).
    pub fn flags(&self) -> usize {
        self.red + self.warnings
    }
}

/// The monitored features of one served response.
pub fn features(
    extractor: &FeatureExtractor,
    prompt: &str,
    response: &str,
    tokens: Option<usize>,
) -> [f64; MONITORED.len()] {
    let f = extractor.extract(prompt, response, tokens);
    MONITORED.map(|m| f.get(m).unwrap_or(f64::NAN))
}

/// The window.
pub struct Monitor {
    config: MonitorConfig,
    /// Feature values in [`MONITORED`] order (NaN where unknown), and the score.
    window: VecDeque<([f64; MONITORED.len()], f64)>,
}

impl Monitor {
    pub fn new(config: MonitorConfig) -> Self {
        Self {
            config,
            window: VecDeque::with_capacity(config.window),
        }
    }

    /// Adds one observation, forgetting the oldest beyond the window.
    pub fn record(&mut self, features: [f64; MONITORED.len()], score: f64) {
        if self.config.window == 0 || !score.is_finite() {
            return;
        }
        if self.window.len() == self.config.window {
            self.window.pop_front();
        }
        self.window.push_back((features, score));
    }

    /// Correlations and flags; with `intervals`, bootstrap intervals too (slower).
    pub fn report(&self, intervals: bool) -> MonitorReport {
        let c = self.config;
        let scores: Vec<f64> = self.window.iter().map(|w| w.1).collect();
        let mut features: Vec<FeatureWatch> = MONITORED
            .iter()
            .enumerate()
            .map(|(k, f)| {
                let x: Vec<f64> = self.window.iter().map(|w| w.0[k]).collect();
                let known = x.iter().all(|v| v.is_finite());
                let mean = if x.is_empty() || !known {
                    f64::NAN
                } else {
                    x.iter().sum::<f64>() / x.len() as f64
                };
                let r = (known && x.len() >= c.min_n)
                    .then(|| pearson(&x, &scores))
                    .flatten();
                let ci = r
                    .filter(|_| intervals)
                    .and_then(|_| correlate(&x, &scores, CorrelationKind::Pearson, c.bootstrap, 0))
                    .map(|cor| cor.ci);
                FeatureWatch {
                    feature: f.name().into(),
                    mean,
                    r,
                    ci,
                    p_value: r.map(|r| correlation_p_value(r, x.len())),
                    severity: None,
                }
            })
            .collect();
        let tested: Vec<usize> = (0..features.len())
            .filter(|&i| features[i].p_value.is_some())
            .collect();
        let p: Vec<f64> = tested.iter().filter_map(|&i| features[i].p_value).collect();
        for (&i, significant) in tested.iter().zip(holm(&p, c.alpha)) {
            let f = &mut features[i];
            let r = f.r.unwrap_or(0.0).abs();
            f.severity = match () {
                _ if !significant => None,
                _ if r > c.red_r => Some(Severity::Red),
                _ if r > c.warn_r => Some(Severity::Warning),
                _ => None,
            };
        }
        let count = |s| features.iter().filter(|f| f.severity == Some(s)).count();
        MonitorReport {
            n: self.window.len(),
            window: c.window,
            warn_r: c.warn_r,
            red_r: c.red_r,
            red: count(Severity::Red),
            warnings: count(Severity::Warning),
            features,
        }
    }

    /// The monitor's figures as Prometheus gauges.
    pub fn render(report: &MonitorReport) -> String {
        use std::fmt::Write;
        let mut out = String::from(
            "# HELP rewardkit_monitor_correlation Pearson r of a response feature with the score over the monitor window.\n# TYPE rewardkit_monitor_correlation gauge\n",
        );
        for f in &report.features {
            if let Some(r) = f.r {
                let _ = writeln!(
                    out,
                    "rewardkit_monitor_correlation{{feature=\"{}\"}} {r}",
                    f.feature
                );
            }
        }
        let _ = writeln!(out, "# HELP rewardkit_monitor_flags Features flagged over the monitor window, by severity.\n# TYPE rewardkit_monitor_flags gauge");
        let _ = writeln!(
            out,
            "rewardkit_monitor_flags{{severity=\"red\"}} {}",
            report.red
        );
        let _ = writeln!(
            out,
            "rewardkit_monitor_flags{{severity=\"warning\"}} {}",
            report.warnings
        );
        let _ = writeln!(out, "# HELP rewardkit_monitor_window_items Observations in the monitor window.\n# TYPE rewardkit_monitor_window_items gauge\nrewardkit_monitor_window_items {}", report.n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rewardkit_data::{load, LoadOptions, Rng};

    /// Real HH-RLHF (prompt, response) from `../shared/data` (or `$REWARDKIT_DATA`): the chosen
    /// and rejected responses of helpful-base's test split.
    fn hh_responses(n: usize) -> Vec<(String, String)> {
        let data = std::env::var_os("REWARDKIT_DATA").map_or_else(
            || std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data"),
            std::path::PathBuf::from,
        );
        let path = data.join("hh-rlhf/helpful-base/test.jsonl.gz");
        let pairs = load(&[path], &LoadOptions::default()).unwrap().pairs;
        pairs
            .iter()
            .flat_map(|p| {
                let prompt = p.prompt.render();
                [
                    (prompt.clone(), p.chosen.render()),
                    (prompt, p.rejected.render()),
                ]
            })
            .take(n)
            .collect()
    }

    /// Serves a window of HH responses with `scorer` and reports.
    fn watch(window: usize, seed: u64, scorer: impl Fn(&str, &mut Rng) -> f64) -> MonitorReport {
        let extractor = FeatureExtractor::new();
        let mut monitor = Monitor::new(MonitorConfig::with_window(window));
        let mut rng = Rng::new(seed);
        // Twice the window: the first half slides out.
        for (p, r) in hh_responses(2 * window) {
            let tokens = r.split_whitespace().count();
            monitor.record(
                features(&extractor, &p, &r, Some(tokens)),
                scorer(&r, &mut rng),
            );
        }
        monitor.report(true)
    }

    fn severity(report: &MonitorReport, f: Feature) -> Option<Severity> {
        report
            .features
            .iter()
            .find(|w| w.feature == f.name())
            .unwrap()
            .severity
    }

    #[test]
    fn a_length_hacking_scorer_raises_red() {
        // Pays for length with some noise: log of the characters plus N(0, 0.3).
        let report = watch(400, 7, |r, rng| {
            (r.len() as f64 + 1.0).ln() + 0.3 * rng.normal()
        });
        assert_eq!(report.n, 400);
        assert_eq!(
            severity(&report, Feature::Chars),
            Some(Severity::Red),
            "{report:?}"
        );
        assert!(report.length_r() > 0.5, "{report:?}");
        let chars = &report.features[0];
        let ci = chars.ci.unwrap();
        assert!(
            ci[0] < chars.r.unwrap() && chars.r.unwrap() < ci[1],
            "{chars:?}"
        );
        assert!(report.red >= 1 && report.flags() >= 1);
    }

    #[test]
    fn a_noise_scorer_raises_nothing() {
        for seed in 0..5u64 {
            let report = watch(400, seed, |_, rng| rng.normal());
            assert_eq!(report.flags(), 0, "seed {seed}: {report:?}");
            assert!(report.length_r().abs() < 0.3, "seed {seed}: {report:?}");
        }
    }

    #[test]
    fn too_few_observations_report_no_correlation() {
        let report = watch(10, 0, |r, _| r.len() as f64);
        assert_eq!(report.n, 10);
        assert!(report
            .features
            .iter()
            .all(|f| f.r.is_none() && f.severity.is_none()));
        assert_eq!(report.length_r(), 0.0);
    }
}
