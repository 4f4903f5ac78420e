//! What scores: an [`Engine`] turns (prompt, response) into prepared inputs (on the request's
//! side) and prepared inputs into one score per ensemble member (on the model thread).
//! [`ModelEngine`] is the real one: loaded reward models, scored through the model crate's own
//! encode / `score_encoded` path, so the numbers are those of `rewardkit score`; for causal
//! decoders read at the last token, the items of a batch that share a prompt share one row
//! after it (`score_encoded_shared`, as `rewardkit eval` and the RL loop's folder models do).

use rewardkit_data::Text;
use rewardkit_model::LoadedModel;
use rewardkit_tokenize::Encoded;
use serde::Serialize;

/// One item ready for the model thread: an encoding per ensemble member.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub members: Vec<Encoded>,
    /// The longest member encoding, in tokens (what the item costs a padded batch).
    pub tokens: usize,
    /// Any member's input was cut to its length limit.
    pub truncated: bool,
    /// A hash of the prompt: items with equal keys in one batch may share a row. (A collision
    /// only costs speed: the shared prefix is found from the tokens themselves.)
    pub prompt_key: u64,
}

impl Prepared {
    pub fn new(members: Vec<Encoded>) -> Self {
        let tokens = members.iter().map(|e| e.ids.len()).max().unwrap_or(0);
        let truncated = members.iter().any(|e| e.truncation.any());
        Self {
            members,
            tokens,
            truncated,
            prompt_key: 0,
        }
    }

    /// The item of `prompt` (see [`Prepared::prompt_key`]).
    pub fn with_prompt(mut self, prompt: &Text) -> Self {
        use std::hash::{Hash, Hasher};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        prompt.hash(&mut h);
        self.prompt_key = h.finish();
        self
    }
}

/// One ensemble member, as `/info` shows it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct MemberInfo {
    pub source: String,
    pub architecture: String,
    pub pooling: String,
    pub max_length: usize,
}

/// Scoring, split between the request side ([`Engine::prepare`]) and the model thread
/// ([`Engine::score`]).
pub trait Engine: Send + Sync + 'static {
    /// Tokenises one item for every member; an error is the item's (it names no index).
    fn prepare(&self, prompt: &Text, response: &Text) -> Result<Prepared, String>;
    /// Scores a batch: for each item, one score per member, in member order.
    fn score(&self, batch: &[&Prepared]) -> Result<Vec<Vec<f64>>, String>;
    /// Whether [`Engine::score`] packs a batch without padding, so that a batch costs its
    /// items' tokens rather than its longest item's times their number.
    fn packs(&self) -> bool {
        false
    }
    /// Tokens of a response by the first member's tokenizer (the monitor's `tokens` feature).
    fn response_tokens(&self, response: &Text) -> Option<usize>;
    fn members(&self) -> Vec<MemberInfo>;
    /// The name answered as `model`.
    fn name(&self) -> String;
}

/// Loaded reward models (one, or an ensemble).
pub struct ModelEngine {
    members: Vec<LoadedModel>,
    packing: bool,
}

impl ModelEngine {
    /// `members` must not be empty.
    pub fn new(members: Vec<LoadedModel>) -> Result<Self, String> {
        if members.is_empty() {
            return Err("an engine needs at least one model".into());
        }
        Ok(Self {
            members,
            packing: false,
        })
    }

    /// Scores each batch side by side in one row with no padding
    /// ([`LoadedModel::score_encoded_packed`]; the same scores up to rounding).
    pub fn packing(mut self, on: bool) -> Self {
        self.packing = on;
        self
    }
}

impl Engine for ModelEngine {
    fn prepare(&self, prompt: &Text, response: &Text) -> Result<Prepared, String> {
        let encoded = self
            .members
            .iter()
            .map(|m| m.encode(prompt, response).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Prepared::new(encoded).with_prompt(prompt))
    }

    fn score(&self, batch: &[&Prepared]) -> Result<Vec<Vec<f64>>, String> {
        let mut out = vec![Vec::with_capacity(self.members.len()); batch.len()];
        let groups = prompt_groups(batch);
        for (m, model) in self.members.iter().enumerate() {
            let inputs: Vec<Encoded> = batch.iter().map(|p| p.members[m].clone()).collect();
            // One forward pass per member: the batch was formed (and sorted) by the queue.
            let n = inputs.len().max(1);
            let shared = model.model.shares_prompt() && groups.len() < batch.len();
            let scores = if self.packing {
                let groups = shared.then_some(groups.as_slice());
                model.score_encoded_packed(&inputs, groups, usize::MAX)
            } else if shared {
                model.score_encoded_shared(&inputs, &groups, n)
            } else {
                model.score_encoded(&inputs, n)
            }
            .map_err(|e| format!("{}: {e}", model.source.display()))?;
            for (row, s) in out.iter_mut().zip(scores) {
                row.push(s);
            }
        }
        Ok(out)
    }

    fn packs(&self) -> bool {
        self.packing
    }

    fn response_tokens(&self, response: &Text) -> Option<usize> {
        let tok = &self.members.first()?.tokenizer;
        tok.tokens(&response.render()).ok().map(|t| t.len())
    }

    fn members(&self) -> Vec<MemberInfo> {
        self.members
            .iter()
            .map(|m| MemberInfo {
                source: m.source.display().to_string(),
                architecture: m.raw_config["model_type"]
                    .as_str()
                    .unwrap_or("unknown")
                    .to_owned(),
                pooling: serde_json::to_value(m.meta.pooling)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default(),
                max_length: m.meta.max_length,
            })
            .collect()
    }

    fn name(&self) -> String {
        let names: Vec<String> = self
            .members
            .iter()
            .map(|m| m.source.display().to_string())
            .collect();
        names.join("+")
    }
}

/// The batch's indices grouped by prompt key, in order of first appearance.
fn prompt_groups(batch: &[&Prepared]) -> Vec<Vec<usize>> {
    let mut groups: Vec<Vec<usize>> = Vec::new();
    let mut by_key: std::collections::HashMap<u64, usize> = Default::default();
    for (i, p) in batch.iter().enumerate() {
        let g = *by_key.entry(p.prompt_key).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}
