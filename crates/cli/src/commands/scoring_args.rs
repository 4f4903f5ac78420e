//! How a reward model's forward passes are batched: flags shared by every command that scores
//! with a model (`score`, and with the shared prompt `eval`, `audit`, `goodhart curves`).

use std::path::Path;

use clap::Args;
use rewardkit_tokenize::InputStyle;

use rewardkit_model::{LoadedModel, ModelScorer};

/// Batches of padded rows or of packed tokens, and the length limit.
#[derive(Args, Debug, Clone)]
pub struct BatchArgs {
    /// Sequences per forward pass with a model: rows of one sequence each, sorted by length
    /// and padded to the longest of their batch.
    #[arg(long, default_value_t = 32, value_parser = super::at_least_one)]
    pub batch_size: usize,
    /// Instead of --batch-size rows: pack sequences side by side in one row with no padding,
    /// each seeing only itself, up to this many tokens per forward pass (a longer sequence
    /// alone). The same scores up to rounding; no compute goes to padding. Any model.
    #[arg(long, value_parser = super::at_least_one)]
    pub max_batch_tokens: Option<usize>,
    /// Tokens per sequence at most with a model (default: the model's).
    #[arg(long, value_parser = super::at_least_one)]
    pub max_length: Option<usize>,
    /// How an encoder reads prompt and response (default: what the model's rewardkit.json
    /// says, else `pair`); `sequence` for one trained on TRL's string concatenation.
    #[arg(long, value_enum)]
    pub input_style: Option<InputStyle>,
}

impl BatchArgs {
    /// Loads the reward model at `dir` for scoring, with the flags' length and input style.
    pub fn load(&self, dir: &Path) -> anyhow::Result<LoadedModel> {
        super::load_for_scoring(dir, self.max_length, self.input_style)
    }

    /// Items to score at a time, so that a progress bar moves: several forward passes' worth.
    pub fn chunk(&self) -> usize {
        let per_pass = self.max_batch_tokens.map_or(self.batch_size, |t| t / 64);
        (per_pass.max(1) * 8).max(64)
    }
}

/// [`BatchArgs`] and the shared prompt, for commands that score responses to one prompt
/// together (a pair's chosen and rejected).
#[derive(Args, Debug, Clone)]
pub struct ScoringArgs {
    #[command(flatten)]
    pub batch: BatchArgs,
    /// Score each sequence on its own. By default a causal decoder read at the last token
    /// (GPT-2, Llama family) scores the responses to one prompt (a pair's chosen and rejected)
    /// after that prompt computed once (the same scores up to rounding).
    #[arg(long)]
    pub no_shared_prompt: bool,
}

impl ScoringArgs {
    /// A scorer of `model` batched as the flags say.
    pub fn scorer<'a>(&self, model: &'a LoadedModel) -> ModelScorer<'a> {
        ModelScorer::new(model, self.batch.batch_size.max(1))
            .shared_prompt(!self.no_shared_prompt)
            .max_batch_tokens(self.batch.max_batch_tokens)
    }
}
