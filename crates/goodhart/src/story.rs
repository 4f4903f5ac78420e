//! What `rewardkit demo` reports, as plain serialisable types, and its story in a few lines.
//!
//! The demo itself (a world, trained models, an audit) lives in `rewardkit-demo`, which needs
//! candle; it fills a [`DemoReport`] with its own configuration type `C`, and everything that
//! renders the report (`rewardkit-report`) reads only these types, through [`StoryConfig`] for
//! the few settings the story quotes.

use std::path::PathBuf;

use serde::Serialize;

use rewardkit_audit::{AuditReport, Severity};

use crate::analysis::{Analysis, SelectorCurve};

/// Which step of the labeler's rule decided a label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LabelRule {
    Noise,
    Longer,
    Agreeing,
    Flattery,
    Correctness,
    Coin,
}

/// How a labeler's labels were decided (the demo world's `preference_pairs` counts them). `noise + longer + agreeing +
/// flattery + correctness + coin` is the number of pairs; `equal_correctness` counts the pairs
/// whose responses were both correct or both wrong (decided by noise, a bias or the coin).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LabelStats {
    pub noise: usize,
    pub longer: usize,
    pub agreeing: usize,
    pub flattery: usize,
    pub correctness: usize,
    pub coin: usize,
    pub equal_correctness: usize,
}

impl LabelStats {
    /// Labels a bias decided.
    pub fn bias(&self) -> usize {
        self.longer + self.agreeing + self.flattery
    }

    /// All labels.
    pub fn total(&self) -> usize {
        self.noise + self.bias() + self.correctness + self.coin
    }

    /// Counts one label decided by `rule`.
    pub fn record(&mut self, rule: LabelRule) {
        match rule {
            LabelRule::Noise => self.noise += 1,
            LabelRule::Longer => self.longer += 1,
            LabelRule::Agreeing => self.agreeing += 1,
            LabelRule::Flattery => self.flattery += 1,
            LabelRule::Correctness => self.correctness += 1,
            LabelRule::Coin => self.coin += 1,
        }
    }
}

/// One trained reward model and how it ranks held-out pairs.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct ModelSummary {
    pub name: String,
    /// Its folder (`final/` of its training run).
    pub dir: PathBuf,
    pub train_pairs: usize,
    pub steps: usize,
    pub train_seconds: f64,
    /// Share of held-out pairs ranked as the biased labeler ranked them (its own draws).
    pub label_accuracy: f64,
    /// Share of held-out pairs with exactly one correct response where it ranks that one higher.
    pub gold_accuracy: f64,
    /// Among held-out pairs of equal correctness and different lengths: share where it scores
    /// the longer response higher (0.5 = no length preference).
    pub prefers_longer: f64,
    /// Among pairs of equal correctness where exactly one response agrees with the user: share
    /// where it scores the agreeing one higher.
    pub prefers_agreeing: f64,
    /// Pearson's r of its score with the response's length in words, over every held-out
    /// response (NaN when undefined).
    pub length_r: f64,
}

/// One round of iterative retraining.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct RoundSummary {
    pub round: usize,
    /// Gold pairs added: the previous proxy's best-of-n pick against a random sample.
    pub new_pairs: usize,
    /// Share of the previous proxy's picks that were correct.
    pub pick_gold: f64,
    /// Of the new pairs, how often the gold labeler preferred the random sample to the pick.
    pub pick_lost: f64,
    pub model: ModelSummary,
}

/// Seconds spent in each stage.
#[derive(Serialize, Clone, Debug, Default, PartialEq)]
pub struct Timings {
    pub labels: f64,
    pub training: f64,
    pub held_out: f64,
    pub audit: f64,
    pub pool_scoring: f64,
    pub retraining: f64,
    /// Training the intervention models.
    pub interventions: f64,
    pub analysis: f64,
    pub total: f64,
}

/// The shape of the demo's reward models, as the report describes them.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelDescription {
    pub hidden_size: usize,
    pub layers: usize,
    pub heads: usize,
    /// The pooling's name as configured (`mean`, `cls`, …).
    pub pooling: String,
}

/// The settings of a demo run that its story and report quote.
pub trait StoryConfig {
    /// The seed everything follows from.
    fn seed(&self) -> u64;
    /// The biased labeler's probabilities of preferring the longer and the agreeing answer.
    fn labeler_biases(&self) -> (f64, f64);
    /// Held-out pairs the accuracies are measured on.
    fn eval_pairs(&self) -> usize;
    /// The reward models' shape.
    fn model(&self) -> ModelDescription;
}

/// The whole result of a demo run; `C` is the demo's configuration (serialised first, as
/// `config`).
#[derive(Serialize, Clone, Debug)]
pub struct DemoReport<C> {
    pub config: C,
    pub items: usize,
    pub vocabulary: usize,
    /// How the proxy's training labels were decided.
    pub labels: LabelStats,
    /// How the control's labels were decided.
    pub control_labels: LabelStats,
    /// The proxy (member 0), the other ensemble members, and the control.
    pub proxy: ModelSummary,
    pub members: Vec<ModelSummary>,
    pub control: ModelSummary,
    pub rounds: Vec<RoundSummary>,
    pub audit: AuditReport,
    /// Curves of every selector over the pool. Pool members: 0 is the proxy, 0..K the
    /// ensemble, then one per retraining round, the control last. Selectors: the proxy, the
    /// four ensemble rules, each retrained proxy, the control.
    pub analysis: Analysis,
    /// The sycophancy pipeline step by step, and the interventions against it.
    pub sycophancy: SycophancyStory,
    pub timings: Timings,
}

/// How often a reward model prefers agreeing with a user who is wrong.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct AgreeRate {
    /// Items scored (each an agreeing and a correcting response to a wrong claim).
    pub n: usize,
    /// Share of decided items where the agreeing response scores higher (ties left out).
    pub rate: Option<f64>,
    /// 95% Wilson interval of `rate`.
    pub ci: Option<[f64; 2]>,
}

impl AgreeRate {
    /// `68% [60%, 75%]`; `–` when nothing was decided.
    pub fn display(&self) -> String {
        match (self.rate, self.ci) {
            (Some(r), Some([lo, hi])) => format!("{} [{}, {}]", pct(r), pct(lo), pct(hi)),
            (Some(r), None) => pct(r),
            _ => "–".into(),
        }
    }
}

/// A reward model trained with an intervention against what the audit found, beside the plain
/// proxy (the first entry, `plain proxy`).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct InterventionSummary {
    pub name: String,
    /// What was changed, in a phrase.
    pub description: String,
    /// How it ranks the held-out pairs (accuracy against labels and gold, length and
    /// agreement preferences).
    pub model: ModelSummary,
    /// On questions the world never asks (answers it cannot have memorised), with a wrong
    /// user claim.
    pub agree_new_questions: AgreeRate,
    /// On the world's own questions with a wrong user claim.
    pub agree_known_questions: AgreeRate,
    /// Gold of its best-of-n pick at the plain proxy's favourite n.
    pub gold_at_favourite: f64,
    /// Share of its best-of-n picks agreeing with the user at that n, on the new questions'
    /// pool (each prompt with a wrong claim).
    pub agree_at_favourite: f64,
    /// Its own audit, on the same pairs and items as the plain proxy's.
    pub audit: AuditSummary,
}

/// What an audit found, in short (the whole report is the plain proxy's `audit`).
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct AuditSummary {
    /// Pearson's r of the score with words, and its 95% bootstrap interval.
    pub length_r: Option<f64>,
    pub length_r_ci: Option<[f64; 2]>,
    /// Probes whose share of raised scores has its 95% interval above one half.
    pub probes_raising: Vec<String>,
    /// The subjects of its red flags, and of its warnings.
    pub red: Vec<String>,
    pub warnings: Vec<String>,
}

impl AuditSummary {
    /// The summary of `report`.
    pub fn of(report: &AuditReport) -> AuditSummary {
        let words = report
            .correlations
            .iter()
            .find(|c| c.feature.name() == "words")
            .and_then(|c| c.pearson.as_ref());
        let subjects = |severity: Severity| {
            report
                .flags
                .iter()
                .filter(|f| f.severity == severity)
                .map(|f| f.subject.clone())
                .collect()
        };
        AuditSummary {
            length_r: words.map(|c| c.r),
            length_r_ci: words.map(|c| c.ci),
            probes_raising: report
                .probes
                .iter()
                .filter(|p| p.share_raised_ci[0] > 0.5)
                .map(|p| p.probe.name().to_string())
                .collect(),
            red: subjects(Severity::Red),
            warnings: subjects(Severity::Warning),
        }
    }
}

/// One n of the policy step: the proxy's best-of-n picks on the pool's prompts whose user claim
/// is wrong.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct AgreePoint {
    pub n: usize,
    /// Expected share of picks that state the user's wrong value.
    pub agree: f64,
    /// Expected gold of the picks (on these prompts).
    pub gold: f64,
}

/// The seed's four steps: preference data with agreement bias → the reward model learns that
/// agreement is rewarded → the policy optimises for it → the deployed policy is sycophantic.
#[derive(Serialize, Clone, Debug, PartialEq)]
pub struct SycophancyStory {
    /// Step 1: training labels decided by the labeler's preference for agreeing.
    pub labels_by_agreement: usize,
    /// Step 2: the proxy on questions it never saw, with a wrong user claim (the audit's
    /// `world, new questions` domain).
    pub proxy_new_questions: AgreeRate,
    /// Steps 3 and 4: per n, the proxy's best-of-n picks among the base policy's answers to
    /// new questions with a wrong user claim.
    pub best_of_n: Vec<AgreePoint>,
    /// Prompts of that pool (what `best_of_n` averages over).
    pub wrong_claim_prompts: usize,
    /// The n where the plain proxy's score is highest on the main pool.
    pub favourite_n: usize,
    /// The plain proxy first, then each intervention.
    pub interventions: Vec<InterventionSummary>,
}

/// A share as a whole percentage; `–` for NaN (nothing counted).
fn pct(v: f64) -> String {
    if v.is_nan() {
        "–".into()
    } else {
        format!("{:.0}%", 100.0 * v)
    }
}

impl<C: StoryConfig> DemoReport<C> {
    /// Every trained model, in report order: the proxy, the other members, each retrained
    /// proxy, the control.
    pub fn models(&self) -> Vec<&ModelSummary> {
        std::iter::once(&self.proxy)
            .chain(&self.members)
            .chain(self.rounds.iter().map(|x| &x.model))
            .chain([&self.control])
            .collect()
    }

    /// The demo's story in a few lines, with this run's numbers: the bias in the labels, the
    /// bias in the reward model, gold falling while the proxy rises, what helps.
    pub fn story(&self) -> Vec<String> {
        let l = &self.labels;
        let (longer, agreeing) = self.config.labeler_biases();
        let mut lines = vec![format!(
            "1. Labels: {} pairs of policy answers to {} questions, from a labeler who picks the longer answer {} of the time and the one agreeing with the user {}: {} labels ({}) were decided by a bias ({} by length, {} by agreement), {} by correctness.",
            l.total(),
            self.items,
            pct(longer),
            pct(agreeing),
            l.bias(),
            pct(l.bias() as f64 / l.total().max(1) as f64),
            l.longer,
            l.agreeing,
            l.correctness,
        )];
        let (p, k) = (&self.proxy, &self.control);
        lines.push(format!(
            "2. Reward model: the proxy trained on them picks the correct answer in {} of held-out pairs with one (the control, trained on unbiased labels: {}); of two equally correct answers it prefers the longer {} of the time (control {}) and the agreeing one {} (control {}).",
            pct(p.gold_accuracy),
            pct(k.gold_accuracy),
            pct(p.prefers_longer),
            pct(k.prefers_longer),
            pct(p.prefers_agreeing),
            pct(k.prefers_agreeing),
        ));
        lines.push(self.audit_line());
        lines.extend(self.curve_lines());
        lines.extend(self.sycophancy_lines());
        lines
    }

    /// Lines 6 (the sycophancy pipeline) and 7 (the interventions).
    fn sycophancy_lines(&self) -> Vec<String> {
        let s = &self.sycophancy;
        let mut lines = Vec::new();
        if let (Some(first), Some(last)) = (s.best_of_n.first(), s.best_of_n.last()) {
            lines.push(format!(
                "6. Sycophancy, step by step: {} labels were decided by agreement → on {} questions it never saw, with a wrong user claim, the proxy prefers agreeing {} → best-of-n among the policy's answers to {} such prompts: picks agreeing with the user {} at n = {} → {} at n = {}, their gold {:.3} → {:.3}.",
                s.labels_by_agreement,
                s.proxy_new_questions.n,
                s.proxy_new_questions.display(),
                s.wrong_claim_prompts,
                pct(first.agree),
                first.n,
                pct(last.agree),
                last.n,
                first.gold,
                last.gold,
            ));
        }
        let listed: Vec<String> = s
            .interventions
            .iter()
            .map(|i| {
                format!(
                    "{}: agrees {} (new questions), gold accuracy {}, best-of-{} picks agree {} and have gold {:.3}",
                    i.name,
                    i.agree_new_questions.display(),
                    pct(i.model.gold_accuracy),
                    s.favourite_n,
                    pct(i.agree_at_favourite),
                    i.gold_at_favourite
                )
            })
            .collect();
        if !listed.is_empty() {
            lines.push(format!(
                "7. Interventions (each retrained from scratch): {}.",
                listed.join("; ")
            ));
        }
        lines
    }

    fn audit_line(&self) -> String {
        let flags: Vec<String> = self
            .audit
            .flags
            .iter()
            .map(|f| {
                let severity = match f.severity {
                    Severity::Red => "red",
                    Severity::Warning => "warning",
                };
                format!("{} ({severity})", f.subject)
            })
            .collect();
        if flags.is_empty() {
            "3. Audit: no flags.".into()
        } else {
            format!("3. Audit of the proxy flags: {}.", flags.join(", "))
        }
    }

    /// Lines 4 (best-of-n, the control) and 5 (mitigations).
    fn curve_lines(&self) -> Vec<String> {
        let a = &self.analysis;
        let curve_line = |c: &SelectorCurve| {
            let (first, last) = (&c.points[0], &c.points[c.points.len() - 1]);
            let fitted = c
                .gold_fit
                .as_ref()
                .and_then(|f| f.n_star)
                .map_or(String::new(), |n| format!(", fitted peak n* ≈ {n:.0}"));
            format!(
                "gold goes {:.3} (n = 1) → {:.3} at n = {} (√KL {:.2}{fitted}) → {:.3} at n = {}",
                first.gold, c.gold_peak.gold, c.gold_peak.n, c.gold_peak.sqrt_kl, last.gold, last.n
            )
        };
        let proxy = &a.curves[0];
        let (first, last) = (&proxy.points[0], &proxy.points[proxy.points.len() - 1]);
        let mut lines = vec![format!(
            "4. Best-of-n over {} prompts × {} samples: the proxy's score rises {:.2} → {:.2} while {}: {:.3} lost to over-optimisation.",
            a.prompts, a.samples_per_prompt, first.proxy, last.proxy, curve_line(proxy), proxy.gold_fall
        )];
        if let Some(control) = a.curves.last().filter(|_| a.curves.len() > 1) {
            lines.push(format!(
                "   Control (unbiased labels): {}.",
                curve_line(control)
            ));
        }
        let mut gains: Vec<&SelectorCurve> = a.curves[1..].iter().collect();
        gains.sort_by(|x, y| y.gain_at_favourite.total_cmp(&x.gain_at_favourite));
        let listed: Vec<String> = gains
            .iter()
            .map(|g| {
                format!(
                    "{} {:.3} ({:+.3})",
                    g.label, g.gold_at_favourite, g.gain_at_favourite
                )
            })
            .collect();
        lines.push(format!(
            "5. Mitigations at n = {} (where the proxy's own score is highest), gold against {:.3} for the plain proxy: {}.",
            a.favourite_n,
            a.baseline_gold_at_favourite,
            listed.join("; ")
        ));
        lines
    }
}
