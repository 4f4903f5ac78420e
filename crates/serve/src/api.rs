//! Request and response bodies of every endpoint (also the OpenAPI document's schemas).

use std::collections::BTreeMap;

use serde::Serialize;
use utoipa::ToSchema;

use crate::engine::MemberInfo;

/// `POST /v1/score`'s request and answer: defined once in [`rewardkit_data::wire`], where its
/// clients (`rewardkit rl --reward-url`) read them too.
pub use rewardkit_data::wire::{ScoreItem, ScoreRequest, ScoreResponse};

/// `POST /get_reward` (OpenRLHF's remote reward protocol).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct GetRewardRequest {
    /// Prompt + response, as the policy's tokenizer decoded them.
    pub query: Vec<String>,
    /// The prompt of each query (the response is the query minus it).
    pub prompts: Option<Vec<String>>,
    /// Passed through by OpenRLHF; not used.
    #[schema(value_type = Option<Object>)]
    pub labels: Option<serde_json::Value>,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct GetRewardResponse {
    pub rewards: Vec<f64>,
    pub scores: Vec<f64>,
    /// Per-sample lists OpenRLHF logs: `monitor_length_r` (Pearson r of characters with the
    /// score over the monitor window, 0 while undefined), `monitor_flags` (features flagged)
    /// and `monitor_window_items`.
    pub extra_logs: BTreeMap<String, Vec<f64>>,
}

/// `POST /classify` (vLLM's shape).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct ClassifyRequest {
    pub model: Option<String>,
    /// One text or a list; each is scored as a response with an empty prompt.
    #[schema(value_type = Object)]
    pub input: serde_json::Value,
    /// `true` (default): probs are σ(reward); `false`: the raw reward.
    pub activation: Option<bool>,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ClassifyResponse {
    pub id: String,
    pub object: String,
    pub created: u64,
    pub model: String,
    pub data: Vec<ClassifyData>,
    pub usage: Usage,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct ClassifyData {
    pub index: usize,
    pub label: String,
    pub probs: Vec<f64>,
    pub num_classes: usize,
}

#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub total_tokens: usize,
    pub completion_tokens: usize,
}

/// `POST /predict` (text-embeddings-inference's shape).
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct PredictRequest {
    /// `"text"`, a pair `["prompt", "response"]`, or a batch of either.
    #[schema(value_type = Object)]
    pub inputs: serde_json::Value,
    /// `false` (default): σ(reward); `true`: the raw reward.
    pub raw_scores: Option<bool>,
    /// Cut over-long inputs (default: the server's `--truncate`).
    pub truncate: Option<bool>,
}

/// One prediction; a single input answers `[Prediction]`, a batch `[[Prediction]]`.
#[derive(Debug, Serialize, serde::Deserialize, ToSchema)]
pub struct Prediction {
    pub score: f64,
    pub label: String,
}

/// `GET /info`.
#[derive(Debug, Serialize, ToSchema)]
pub struct InfoResponse {
    pub model: String,
    pub version: String,
    pub members: Vec<MemberInfo>,
    /// The combine rule of an ensemble (`mean`, `min`, `mean-0.5*var`, `mean-1*std`).
    pub combine: String,
    #[schema(value_type = Object)]
    pub limits: serde_json::Value,
}

/// `GET /health`.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthResponse {
    pub status: String,
}
