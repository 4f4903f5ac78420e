//! The server's limits and switches (the CLI fills them from its flags).

use rewardkit_goodhart::combine::Combine;

/// How `/get_reward` reads OpenRLHF's queries when `prompts` come with them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum OpenRlhfInput {
    /// (prompt, query minus its prompt) as the model's (prompt, response).
    #[default]
    Split,
    /// The whole query as the response, with an empty prompt (one sequence for a decoder).
    Whole,
}

/// Everything the server needs besides its models.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ServeConfig {
    /// How ensemble members' scores combine into the reward.
    pub combine: Combine,
    /// Tokens per forward pass at most: padded tokens (longest × items), or for an engine that
    /// packs ([`crate::Engine::packs`]) the items' own tokens.
    pub max_batch_tokens: usize,
    /// Items per forward pass at most.
    pub max_batch_items: usize,
    /// How long the model thread waits for more work to fill a batch, in milliseconds.
    pub max_wait_ms: u64,
    /// Requests being validated, queued or scored at once; more are answered 429.
    pub max_concurrent_requests: usize,
    /// Items in one request at most.
    pub max_client_batch: usize,
    /// Request body bytes at most (413 above).
    pub max_body_bytes: usize,
    /// Cut over-long inputs (prompt start first) and flag them; `false` refuses them with 422.
    pub truncate: bool,
    /// Served (prompt, response, score) kept by the hacking monitor.
    pub monitor_window: usize,
    pub openrlhf_input: OpenRlhfInput,
    /// When set, every endpoint but `/health` needs `Authorization: Bearer KEY`.
    #[serde(skip)]
    pub api_key: Option<String>,
}

impl Default for ServeConfig {
    fn default() -> Self {
        Self {
            combine: Combine::Mean,
            max_batch_tokens: 16384,
            max_batch_items: 64,
            max_wait_ms: 2,
            max_concurrent_requests: 512,
            max_client_batch: 1024,
            max_body_bytes: 8 << 20,
            truncate: true,
            monitor_window: 1000,
            openrlhf_input: OpenRlhfInput::Split,
            api_key: None,
        }
    }
}
