//! The wire format of `rewardkit serve`'s `POST /v1/score`: the one definition both the
//! server (`rewardkit-serve`, which also derives the OpenAPI schemas from these types with the
//! `schema` feature) and its clients (`rewardkit-rl`'s URL reward) use.
//!
//! ```
//! use rewardkit_data::wire::{ScoreItem, ScoreRequest, ScoreResponse};
//! use rewardkit_data::Text;
//!
//! let request = ScoreRequest {
//!     items: vec![ScoreItem { prompt: Some(Text::Plain("2 + 2?".into())), response: Text::Plain("4".into()) }],
//!     return_members: None,
//! };
//! assert_eq!(
//!     serde_json::to_string(&request).unwrap(),
//!     r#"{"items":[{"prompt":"2 + 2?","response":"4"}]}"#
//! );
//! let answer: ScoreResponse =
//!     serde_json::from_str(r#"{"scores": [0.5], "truncated": [false], "model": "rm"}"#).unwrap();
//! assert_eq!(answer.scores, vec![0.5]);
//! ```

use serde::{Deserialize, Serialize};

use crate::Text;

/// `POST /v1/score`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ScoreRequest {
    pub items: Vec<ScoreItem>,
    /// Also answer each member's score and their standard deviation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_members: Option<bool>,
}

/// One (prompt, response); each a string or a list of `{role, content}` messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ScoreItem {
    #[cfg_attr(feature = "schema", schema(value_type = Option<Object>))]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Text>,
    #[cfg_attr(feature = "schema", schema(value_type = Object))]
    pub response: Text,
}

/// The answer of `POST /v1/score`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ScoreResponse {
    /// The reward of each item (the ensemble's combined score).
    pub scores: Vec<f64>,
    /// Per item, each member's score (with `return_members`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<Vec<f64>>>,
    /// Per item, the members' population standard deviation (with `return_members`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub std: Option<Vec<f64>>,
    /// Whether each item was cut to the model's length (prompt start first).
    pub truncated: Vec<bool>,
    pub model: String,
}

/// The JSON body of every error the server answers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: String,
    /// `invalid_json`, `validation`, `payload_too_large`, `overloaded`, `unauthorized`,
    /// `backend` or `unavailable`.
    pub error_type: String,
}
