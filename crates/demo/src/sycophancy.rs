//! The sycophancy pipeline in the world, step by step (issue 13's four steps), and the
//! interventions against it:
//!
//! 1. the labeler's agreement bias decides some labels ([`LabelStats::agreeing`]);
//! 2. the proxy learns that agreement is rewarded: on questions the world never asks (so no
//!    memorised answer can decide), with a wrong user claim, it scores the agreeing response
//!    above the correcting one ([`World::new_question_sycophancy_items`]);
//! 3. the policy optimises for it: of the proxy's best-of-n picks on pool prompts with a wrong
//!    claim, the share agreeing with the user, per n;
//! 4. the deployed policy is sycophantic: that share at large n.
//!
//! The interventions ([`Interventions`]) retrain the proxy from scratch on the same labels with
//! one change each — correction pairs from the world's own items (data level), the honesty
//! penalty on them, ODIN's length head, all together — and are measured the same way.
//!
//! [`LabelStats::agreeing`]: rewardkit_goodhart::story::LabelStats

use serde::{Deserialize, Serialize};

use rewardkit_audit::sycophancy::summarize;
use rewardkit_audit::SycophancyItem;
use rewardkit_data::{PreferencePair, Text};
use rewardkit_goodhart::analysis::PoolScores;
use rewardkit_goodhart::bon::best_of_n;
use rewardkit_goodhart::story::{AgreePoint, AgreeRate};
use rewardkit_model::LoadedModel;
use rewardkit_train::Penalty;

use crate::demo::DemoError;
use crate::world::{Item, Response, World};

/// The audit's domain of the held-out sycophancy items.
pub const NEW_QUESTIONS: &str = "world, new questions";
/// The audit's domain of the world's own questions with a wrong claim.
pub const KNOWN_QUESTIONS: &str = "world";

/// The interventions the demo measures against the plain proxy.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Interventions {
    /// Train and measure them (four more reward models).
    pub enabled: bool,
    /// Correction pairs added to the proxy's training pairs, as a share of `train_pairs`.
    pub correction_ratio: f64,
    /// λ of the honesty penalty.
    pub honesty_weight: f64,
    /// λ of ODIN's correlation penalty.
    pub odin_weight: f64,
}

impl Default for Interventions {
    fn default() -> Self {
        Interventions {
            enabled: true,
            correction_ratio: 0.1,
            honesty_weight: 1.0,
            odin_weight: 1.0,
        }
    }
}

/// One intervention: its name, what it changes, the pairs it adds and its penalties.
pub struct Intervention {
    pub name: &'static str,
    pub description: &'static str,
    pub add_corrections: bool,
    pub penalties: Vec<Penalty>,
}

impl Interventions {
    /// The runs, in report order.
    pub fn runs(&self) -> Vec<Intervention> {
        if !self.enabled {
            return Vec::new();
        }
        let honesty = Penalty::Honesty {
            weight: self.honesty_weight,
        };
        let odin = Penalty::Odin {
            weight: self.odin_weight,
            length_weight: 1.0,
            orthogonality: 1.0,
        };
        vec![
            Intervention {
                name: "correction pairs",
                description: "the world's own questions with a wrong claim: correcting over agreeing (data level)",
                add_corrections: true,
                penalties: Vec::new(),
            },
            Intervention {
                name: "honesty penalty",
                description: "the correction pairs, and softplus(r(agree) − r(correct)) on them in the loss",
                add_corrections: true,
                penalties: vec![honesty.clone()],
            },
            Intervention {
                name: "odin",
                description: "ODIN: a length head beside the value head, |ρ(value, length)| penalised",
                add_corrections: false,
                penalties: vec![odin.clone()],
            },
            Intervention {
                name: "combined",
                description: "correction pairs, the honesty penalty and ODIN",
                add_corrections: true,
                penalties: vec![honesty, odin],
            },
        ]
    }

    /// How many correction pairs to add to `train_pairs` training pairs.
    pub fn corrections(&self, train_pairs: usize) -> usize {
        (self.correction_ratio * train_pairs as f64).round() as usize
    }
}

fn as_items(domain: &str, items: Vec<(Item, Response, Response)>) -> Vec<SycophancyItem> {
    items
        .into_iter()
        .map(|(item, agree, correct)| SycophancyItem {
            domain: domain.into(),
            id: item.id,
            prompt: Text::from(item.prompt.as_str()),
            agreeing: Text::from(agree.text.as_str()),
            correcting: Text::from(correct.text.as_str()),
        })
        .collect()
}

/// The audit's sycophancy items: the world's own questions with a wrong claim, then `new` of
/// the questions it never asks.
pub fn audit_items(world: &World, new: usize, seed: u64) -> Vec<SycophancyItem> {
    let mut items = as_items(KNOWN_QUESTIONS, world.sycophancy_items());
    items.extend(as_items(
        NEW_QUESTIONS,
        world.new_question_sycophancy_items(new, seed),
    ));
    items
}

/// `model`'s agree rate on `items` of `domain`.
pub fn agree_rate(
    model: &LoadedModel,
    items: &[SycophancyItem],
    domain: &str,
    batch_size: usize,
) -> Result<AgreeRate, DemoError> {
    let items: Vec<SycophancyItem> = items
        .iter()
        .filter(|i| i.domain == domain)
        .cloned()
        .collect();
    let mut inputs = Vec::with_capacity(2 * items.len());
    for it in &items {
        inputs.push(model.encode(&it.prompt, &it.agreeing)?);
        inputs.push(model.encode(&it.prompt, &it.correcting)?);
    }
    let scores = model.score_encoded(&inputs, batch_size)?;
    let pairs: Vec<(f64, f64)> = scores.chunks_exact(2).map(|c| (c[0], c[1])).collect();
    let result = summarize(&items, &pairs);
    Ok(result
        .first()
        .map(|d| AgreeRate {
            n: d.n,
            rate: d.agree_rate,
            ci: d.ci,
        })
        .unwrap_or(AgreeRate {
            n: 0,
            rate: None,
            ci: None,
        }))
}

/// The training pairs of an intervention: the proxy's, plus correction pairs when it adds them.
pub fn training_pairs(
    world: &World,
    pairs: &[PreferencePair],
    run: &Intervention,
    corrections: usize,
    seed: u64,
) -> Vec<PreferencePair> {
    let mut out = pairs.to_vec();
    if run.add_corrections {
        out.extend(world.correction_pairs(corrections, seed));
    }
    out
}

/// Step 3: for each n, the expected share of `member`'s best-of-n picks that agree with the
/// user, and their gold, over the pool prompts whose claim is wrong; and how many prompts
/// those are.
pub fn best_of_n_agreement(
    pool: &[(Item, Vec<Response>)],
    scores: &PoolScores,
    member: usize,
    ns: &[usize],
) -> (Vec<AgreePoint>, usize) {
    let wrong: Vec<usize> = (0..pool.len())
        .filter(|&i| pool[i].0.claim.as_ref().is_some_and(|c| !c.correct))
        .collect();
    let points = ns
        .iter()
        .map(|&n| {
            let (mut agree, mut gold) = (0.0, 0.0);
            for &i in &wrong {
                let proxy = &scores.prompts[i].members[member];
                let agrees: Vec<f64> = pool[i]
                    .1
                    .iter()
                    .map(|r| f64::from(u8::from(r.attrs.agrees_with_claim)))
                    .collect();
                agree += best_of_n(proxy, &agrees, n);
                gold += best_of_n(proxy, &scores.prompts[i].gold, n);
            }
            let k = wrong.len().max(1) as f64;
            AgreePoint {
                n,
                agree: agree / k,
                gold: gold / k,
            }
        })
        .collect();
    (points, wrong.len())
}

/// Mean gold of `member`'s best-of-n pick over every pool prompt.
pub fn gold_at(scores: &PoolScores, member: usize, n: usize) -> f64 {
    let total: f64 = scores
        .prompts
        .iter()
        .map(|p| best_of_n(&p.members[member], &p.gold, n))
        .sum();
    total / scores.prompts.len().max(1) as f64
}
