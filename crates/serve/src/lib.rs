//! # rewardkit-serve
//!
//! Reward models as a service for RL loops (`rewardkit serve`), designed like
//! text-embeddings-inference: async handlers (axum on tokio) validate and tokenise, then push
//! onto a **bounded** queue; one model thread forms batches by token budget
//! (`max_batch_tokens`, `max_batch_items`, `max_wait_ms`), sorted by length, and answers each
//! request through its own channel. Requests beyond `max_concurrent_requests` are answered 429
//! at once, so the queue never grows without bound.
//!
//! - [`handlers`]: `POST /v1/score`, `/get_reward` (OpenRLHF), `/classify` (vLLM), `/predict`
//!   (TEI); `GET /health`, `/info`, `/metrics` (Prometheus), `/v1/monitor`, `/openapi.json`;
//! - [`engine`]: what scores — [`ModelEngine`], loaded reward models (an ensemble combined
//!   by [`rewardkit_goodhart::combine::Combine`]) through the model crate's encode and score path;
//! - [`queue`]: the bounded queue and the model thread;
//! - [`monitor`]: the live reward-hacking monitor (feature–score correlations over a window);
//! - [`error`]: the one table from error kinds to HTTP statuses and `error_type`s.
//!
//! ```no_run
//! use rewardkit_serve::{ModelEngine, ServeConfig, Server};
//!
//! # async fn run(models: Vec<rewardkit_model::LoadedModel>) -> Result<(), Box<dyn std::error::Error>> {
//! let engine = ModelEngine::new(models)?;
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:8080").await?;
//! let server = Server::start(std::sync::Arc::new(engine), ServeConfig::default())?;
//! server.serve(listener, async { let _ = tokio::signal::ctrl_c().await; }).await?;
//! # Ok(())
//! # }
//! ```

pub mod api;
pub mod config;
pub mod engine;
pub mod error;
pub mod handlers;
pub mod metrics;
pub mod monitor;
pub mod openapi;
pub mod parse;
pub mod queue;
pub mod state;

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use tokio::sync::Semaphore;

pub use config::{OpenRlhfInput, ServeConfig};
pub use engine::{Engine, MemberInfo, ModelEngine, Prepared};
pub use error::{ErrorKind, ServeError};
pub use metrics::Metrics;
pub use monitor::{Monitor, MonitorConfig, MonitorReport};
use queue::BatchLimits;
use state::AppState;

/// A started server: the model thread runs; [`Server::serve`] answers HTTP until shutdown.
pub struct Server {
    state: Arc<AppState>,
    model_thread: std::thread::JoinHandle<()>,
}

impl Server {
    /// Starts the model thread.
    pub fn start(engine: Arc<dyn Engine>, config: ServeConfig) -> std::io::Result<Self> {
        let metrics = Arc::new(Metrics::default());
        let limits = BatchLimits {
            max_tokens: config.max_batch_tokens,
            packed: engine.packs(),
            max_items: config.max_batch_items,
            max_wait: Duration::from_millis(config.max_wait_ms),
        };
        let (queue, model_thread) = queue::start(
            engine.clone(),
            limits,
            config.max_concurrent_requests,
            metrics.clone(),
        )?;
        let state = Arc::new(AppState {
            engine,
            monitor: Mutex::new(Monitor::new(MonitorConfig::with_window(
                config.monitor_window,
            ))),
            extractor: rewardkit_audit::FeatureExtractor::new(),
            permits: Arc::new(Semaphore::new(config.max_concurrent_requests)),
            queue,
            metrics,
            config,
        });
        Ok(Self {
            state,
            model_thread,
        })
    }

    /// The counters (for tests and the CLI's closing line).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.state.metrics.clone()
    }

    /// The router of every endpoint.
    pub fn router(&self) -> Router {
        router(self.state.clone())
    }

    /// Answers on `listener` until `shutdown` resolves; then stops accepting, answers every
    /// request already accepted, and stops the model thread once its queue is empty.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<Arc<Metrics>> {
        let metrics = self.state.metrics.clone();
        let app = router(self.state);
        axum::serve(listener, app)
            .with_graceful_shutdown(shutdown)
            .await?;
        // Every handler (and so every queue handle) is gone: the thread drains and ends.
        let thread = self.model_thread;
        tokio::task::spawn_blocking(move || thread.join())
            .await
            .map_err(std::io::Error::other)?
            .map_err(|_| std::io::Error::other("the model thread panicked"))?;
        Ok(metrics)
    }
}

fn router(state: Arc<AppState>) -> Router {
    let limit = state.config.max_body_bytes;
    Router::new()
        .route("/v1/score", post(handlers::score))
        .route("/get_reward", post(handlers::get_reward))
        .route("/classify", post(handlers::classify))
        .route("/predict", post(handlers::predict))
        .route("/health", get(handlers::health))
        .route("/info", get(handlers::info))
        .route("/metrics", get(handlers::metrics))
        .route("/v1/monitor", get(handlers::monitor))
        .route("/openapi.json", get(|| async { Json(openapi::document()) }))
        .fallback(|| async {
            ServeError::new(
                ErrorKind::Validation,
                "no such endpoint (see GET /openapi.json)",
            )
            .into_response()
        })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), guard))
        .with_state(state)
}

/// Every request: the API key (all but `/health`), then the request counters and latency.
async fn guard(State(state): State<Arc<AppState>>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let endpoint = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "other".to_owned(), |p| p.as_str().to_owned());
    let response = match &state.config.api_key {
        Some(key) if endpoint != "/health" && !authorized(&request, key) => ServeError::new(
            ErrorKind::Unauthorized,
            "this server needs `Authorization: Bearer KEY` (--api-key)",
        )
        .into_response(),
        _ => next.run(request).await,
    };
    state
        .metrics
        .request(&endpoint, response.status().as_u16(), started.elapsed());
    response
}

fn authorized(request: &Request, key: &str) -> bool {
    request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| k == key)
}
