//! Fingerprints of what a run trains on and starts from, recorded in every checkpoint so that
//! `--resume` can refuse to continue a run on other data or from another model.

use serde::{Deserialize, Serialize};

use rewardkit_data::{PreferencePair, StableHasher};
use rewardkit_model::{LoadedModel, ParamStore};

use crate::TrainError;

/// What a checkpoint's run was trained on and started from; each a 16-digit hex hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fingerprints {
    /// The training pairs, in order (the order decides the batches).
    pub train_data: String,
    /// The held-out pairs, in order.
    pub eval_data: String,
    /// The starting model: every parameter's name, shape and values before the first step, and
    /// the pooling.
    pub model: String,
}

impl Fingerprints {
    pub fn of(
        model: &LoadedModel,
        train: &[PreferencePair],
        eval: &[PreferencePair],
    ) -> Result<Self, TrainError> {
        Ok(Fingerprints {
            train_data: pairs(train),
            eval_data: pairs(eval),
            model: model_values(model)?,
        })
    }

    /// The fields that differ, as `name (checkpoint X, now Y)`.
    pub fn differences(&self, now: &Fingerprints) -> Vec<String> {
        [
            ("train data", &self.train_data, &now.train_data),
            ("eval data", &self.eval_data, &now.eval_data),
            ("starting model", &self.model, &now.model),
        ]
        .into_iter()
        .filter(|(_, a, b)| a != b)
        .map(|(name, a, b)| format!("{name} fingerprint (checkpoint {a}, now {b})"))
        .collect()
    }
}

fn hex(h: &StableHasher) -> String {
    format!("{:016x}", h.finish())
}

/// A hash of the pairs' every field, in order.
pub fn pairs(pairs: &[PreferencePair]) -> String {
    let mut h = StableHasher::new(0);
    h.bytes(&(pairs.len() as u64).to_le_bytes());
    for p in pairs {
        h.text(&p.prompt);
        h.text(&p.chosen);
        h.text(&p.rejected);
        h.bytes(&p.margin.map_or(f64::NAN, |m| m).to_bits().to_le_bytes());
        h.bytes(&[u8::from(p.tie)]);
        // Only where present, so hard-labelled data keeps the fingerprint it had before.
        if let Some(label) = p.p_chosen {
            h.bytes(b"p");
            h.bytes(&label.to_bits().to_le_bytes());
        }
        h.str(p.subset.as_deref().unwrap_or(""));
    }
    hex(&h)
}

/// A hash of the model's current parameter values (call before training starts).
pub fn model_values(model: &LoadedModel) -> Result<String, TrainError> {
    params_values(model.model.params(), &format!("{:?}", model.meta.pooling))
}

/// A hash of `tag` and every parameter's name, shape and values in `store` (any model's
/// weights: a reward model's, a policy's).
pub fn params_values(store: &ParamStore, tag: &str) -> Result<String, TrainError> {
    let mut vars = store.vars();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    let mut h = StableHasher::new(1);
    h.str(tag);
    for (name, var) in vars {
        h.str(&name);
        for d in var.dims() {
            h.bytes(&(*d as u64).to_le_bytes());
        }
        let values: Vec<f32> = var
            .as_tensor()
            .flatten_all()?
            .to_dtype(candle_core::DType::F32)?
            .to_vec1()?;
        // Folded eight bytes at a time: hashing byte by byte would cost a second on 135M values.
        let mut acc = 0u64;
        for pair in values.chunks(2) {
            let lo = u64::from(pair[0].to_bits());
            let hi = pair.get(1).map_or(0, |v| u64::from(v.to_bits()));
            acc = (acc ^ (lo | hi << 32))
                .wrapping_mul(0x9e37_79b9_7f4a_7c15)
                .rotate_left(29);
        }
        h.bytes(&acc.to_le_bytes());
    }
    Ok(hex(&h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_fingerprints_see_order_and_every_field() {
        let a = PreferencePair::new("p", "good", "bad");
        let b = PreferencePair::new("q", "yes", "no");
        let base = pairs(&[a.clone(), b.clone()]);
        assert_eq!(base, pairs(&[a.clone(), b.clone()]));
        assert_ne!(base, pairs(&[b.clone(), a.clone()]), "order matters");
        let mut tie = a.clone();
        tie.tie = true;
        assert_ne!(base, pairs(&[tie, b.clone()]));
        let mut margin = a.clone();
        margin.margin = Some(1.0);
        assert_ne!(base, pairs(&[margin, b.clone()]));
        assert_ne!(base, pairs(&[a]));
        assert_eq!(base.len(), 16);
    }
}
