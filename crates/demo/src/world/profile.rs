//! What a policy's responses look like in aggregate: the share that is correct and the
//! distribution of filler counts. The base policy's profile is exact ([`World::base_profile`],
//! from its configuration); any other policy's is measured on its responses
//! ([`profile_of`]). The distilled decoder is checked against the base policy this way.

pub use rewardkit_goodhart::rl_story::PolicyProfile;

use super::{Attributes, World};

/// The measured profile of responses' attributes (`fillers` as long as the largest count seen
/// + 1).
pub fn profile_of<'a>(attrs: impl IntoIterator<Item = &'a Attributes>) -> PolicyProfile {
    let (mut n, mut correct, mut fillers) = (0usize, 0usize, Vec::<usize>::new());
    for a in attrs {
        n += 1;
        correct += usize::from(a.correct);
        if fillers.len() <= a.filler_sentences {
            fillers.resize(a.filler_sentences + 1, 0);
        }
        fillers[a.filler_sentences] += 1;
    }
    PolicyProfile::from_counts(n, correct, &fillers)
}

impl World {
    /// The base policy's exact profile for a prompt drawn uniformly from the items: filler
    /// counts from the concise/rambling mixture, correctness from `p_correct_at` and, where the
    /// user claims a value, the share `p_agree` that states the claim instead.
    pub fn base_profile(&self) -> PolicyProfile {
        let p = &self.config.policy;
        let max = p.max_filler.min(super::FILLERS.len());
        let concise = p.concise_max_filler.min(max);
        let ramble = if concise < max { p.ramble_rate } else { 0.0 };
        let fillers: Vec<f64> = (0..=max)
            .map(|k| {
                if k <= concise {
                    (1.0 - ramble) / (concise + 1) as f64
                } else {
                    ramble / (max - concise) as f64
                }
            })
            .collect();
        let own: f64 = fillers
            .iter()
            .enumerate()
            .map(|(k, share)| share * p.p_correct_at(k))
            .sum();
        let per_item = self.items.iter().map(|item| match &item.claim {
            Some(claim) => {
                let agree = if claim.correct { 1.0 } else { 0.0 };
                p.p_agree * agree + (1.0 - p.p_agree) * own
            }
            None => own,
        });
        let n = self.items.len().max(1) as f64;
        PolicyProfile {
            correct: per_item.sum::<f64>() / n,
            fillers,
            samples: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::WorldConfig;
    use rewardkit_data::Rng;

    #[test]
    fn base_profile_matches_many_samples() {
        let world = World::new(WorldConfig::default());
        let exact = world.base_profile();
        assert!((exact.fillers.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(exact.fillers.len(), 9);
        let mut rng = Rng::new(5);
        let items = world.items();
        let n = 200_000;
        let responses: Vec<_> = (0..n)
            .map(|i| world.sample_response(&items[i % items.len()], &mut rng))
            .collect();
        let measured = profile_of(responses.iter().map(|r| &r.attrs));
        assert_eq!(measured.samples, n);
        let (correct, filler) = measured.gaps(&exact);
        // 4 standard errors of a share near 0.5 over 200,000 draws is 0.0045.
        assert!(
            correct < 0.0045 && filler < 0.0045,
            "{correct} {filler}: {measured:?} vs {exact:?}"
        );
        // A different policy is told apart.
        let other = World::new(WorldConfig {
            policy: crate::world::PolicyConfig {
                ramble_rate: 0.3,
                ..Default::default()
            },
            ..WorldConfig::default()
        });
        let (c, f) = other.base_profile().gaps(&exact);
        assert!(c > 0.05 && f > 0.05, "{c} {f}");
        assert!(profile_of([]).correct.is_nan());
    }
}
