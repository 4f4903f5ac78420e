//! `rewardkit serve`: reward models over HTTP for RL loops (the `rewardkit-serve` crate).

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;

use rewardkit_goodhart::combine::Combine;
use rewardkit_serve::{ModelEngine, OpenRlhfInput, ServeConfig, Server};
use rewardkit_tokenize::InputStyle;

#[derive(Args)]
pub struct ServeArgs {
    /// Reward model: a folder (a rewardkit checkpoint or an HF *ForSequenceClassification
    /// model) or a .gguf file. Repeat for an ensemble: every member scores every item and
    /// --combine makes the reward.
    #[arg(long, required = true, env = "REWARDKIT_MODEL")]
    model: Vec<PathBuf>,
    /// How an ensemble's scores become the reward: mean, min (worst case), mean-var:λ
    /// (uncertainty-weighted, mean − λ·variance) or mean-std:λ (mean − λ·std), as in `goodhart
    /// curves`.
    #[arg(long, default_value = "mean", env = "REWARDKIT_COMBINE")]
    combine: Combine,
    /// Address to listen on (127.0.0.1: this machine only; 0.0.0.0 to accept others).
    #[arg(long, default_value = "127.0.0.1", env = "REWARDKIT_HOST")]
    host: String,
    /// Port to listen on (0: any free port, printed on stderr).
    #[arg(long, default_value_t = 8080, env = "REWARDKIT_PORT")]
    port: u16,
    /// Tokens per sequence at most (default: each model's own limit).
    #[arg(long, value_parser = super::at_least_one, env = "REWARDKIT_MAX_LENGTH")]
    max_length: Option<usize>,
    /// How an encoder reads prompt and response (default: each model's rewardkit.json, else
    /// `pair`); `sequence` for one trained on TRL's string concatenation.
    #[arg(long, value_enum, env = "REWARDKIT_INPUT_STYLE")]
    input_style: Option<InputStyle>,
    /// Tokens per forward pass at most: padded tokens (longest item × items), or with
    /// --packing the items' own; one longer item still runs alone.
    #[arg(long, default_value_t = 16384, value_parser = super::at_least_one, env = "REWARDKIT_MAX_BATCH_TOKENS")]
    max_batch_tokens: usize,
    /// Score each batch side by side in one row with no padding, each item seeing only itself
    /// (the same scores up to rounding); --max-batch-tokens then counts real tokens.
    #[arg(long, env = "REWARDKIT_PACKING")]
    packing: bool,
    /// Items per forward pass at most.
    #[arg(long, default_value_t = 64, value_parser = super::at_least_one, env = "REWARDKIT_MAX_BATCH_ITEMS")]
    max_batch_items: usize,
    /// Milliseconds the model thread waits for more requests to fill a batch (0: run what is
    /// queued at once).
    #[arg(long, default_value_t = 2, env = "REWARDKIT_MAX_WAIT_MS")]
    max_wait_ms: u64,
    /// Requests in flight at most (being validated, queued or scored); more are answered 429
    /// with Retry-After, so the queue never grows without bound.
    #[arg(long, default_value_t = 512, value_parser = super::at_least_one, env = "REWARDKIT_MAX_CONCURRENT_REQUESTS")]
    max_concurrent_requests: usize,
    /// Items in one request at most (more: 422).
    #[arg(long, default_value_t = 1024, value_parser = super::at_least_one, env = "REWARDKIT_MAX_CLIENT_BATCH")]
    max_client_batch: usize,
    /// Request body bytes at most (more: 413).
    #[arg(long, default_value_t = 8 << 20, value_parser = super::at_least_one, env = "REWARDKIT_MAX_BODY_BYTES")]
    max_body_bytes: usize,
    /// Cut inputs longer than the model's length (the start of the prompt first, then the end of
    /// the response) and flag them in `truncated`; `false` refuses them with 422.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, env = "REWARDKIT_TRUNCATE")]
    truncate: bool,
    /// Served (prompt, response, score) the reward-hacking monitor keeps (0: off).
    #[arg(long, default_value_t = 1000, env = "REWARDKIT_MONITOR_WINDOW")]
    monitor_window: usize,
    /// How /get_reward reads OpenRLHF's `query` when `prompts` come with it: `split` scores
    /// (prompt, query minus prompt); `whole` scores the query as one response.
    #[arg(long, value_enum, default_value_t = OpenRlhfInput::Split, env = "REWARDKIT_OPENRLHF_INPUT")]
    openrlhf_input: OpenRlhfInput,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health (401 otherwise).
    #[arg(long, env = "REWARDKIT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut members = Vec::with_capacity(args.model.len());
    for path in &args.model {
        eprintln!("loading {}", path.display());
        members.push(super::load_for_scoring(
            path,
            args.max_length,
            args.input_style,
        )?);
    }
    let engine = ModelEngine::new(members)
        .map_err(anyhow::Error::msg)?
        .packing(args.packing);
    let config = ServeConfig {
        combine: args.combine,
        max_batch_tokens: args.max_batch_tokens,
        max_batch_items: args.max_batch_items,
        max_wait_ms: args.max_wait_ms,
        max_concurrent_requests: args.max_concurrent_requests,
        max_client_batch: args.max_client_batch,
        max_body_bytes: args.max_body_bytes,
        truncate: args.truncate,
        monitor_window: args.monitor_window,
        openrlhf_input: args.openrlhf_input,
        api_key: args.api_key,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("rewardkit-http")
        .build()?;
    runtime.block_on(async move {
        let addr = format!("{}:{}", args.host, args.port);
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let server = Server::start(Arc::new(engine), config)?;
        eprintln!("listening on http://{}", listener.local_addr()?);
        let metrics = server.serve(listener, shutdown_signal()).await?;
        eprintln!(
            "stopped: {} sequences scored, {} dropped (client gone)",
            metrics.sequences(),
            metrics.dropped()
        );
        Ok(())
    })
}

/// SIGINT or SIGTERM: stop accepting, answer what was accepted, exit 0.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    eprintln!("shutting down: answering the requests already accepted");
}
