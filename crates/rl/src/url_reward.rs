//! A running `rewardkit serve` as the reward: each step's completions are scored through its
//! `POST /v1/score` (the wire types of [`rewardkit_data::wire`]), in requests of at most
//! `batch_size` items (one request per step unless the step is larger).
//!
//! - **Retries**: an answer `429 Too Many Requests` (the server's concurrency limit) or
//!   `503 Service Unavailable` (the model still loading, or a shutdown) is retried up to
//!   `max_retries` times, after the `Retry-After` seconds the server asks for (at most
//!   `max_wait`), or after 0.5 s, 1 s, 2 s, … where it gives none.
//! - **Errors**: an unreachable server, any other status, or an answer with the wrong number
//!   of scores is an [`RlError::Reward`] naming the URL (and the server's `error` and
//!   `error_type` when it sent them). Nothing is ever retried silently past `max_retries`.
//! - Plain `http://` only (the client has no TLS): put a TLS-terminating proxy in front of a
//!   remote server, or reach it through an SSH tunnel.

use std::time::Duration;

use rewardkit_data::wire::{ErrorBody, ScoreItem, ScoreRequest, ScoreResponse};
use rewardkit_data::Text;

use crate::reward::{Completion, Reward};
use crate::RlError;

/// How a [`UrlReward`] talks to the server.
#[derive(Debug, Clone, PartialEq)]
pub struct UrlRewardConfig {
    /// The server (`http://HOST:PORT`, scored at `/v1/score`) or the full endpoint URL.
    pub url: String,
    /// Sent as `Authorization: Bearer KEY` (the server's `--api-key`).
    pub api_key: Option<String>,
    /// Items per request at most (the server refuses more than its `--max-client-batch`).
    pub batch_size: usize,
    /// Retries of a 429 or 503 answer before giving up.
    pub max_retries: usize,
    /// The longest wait before one retry, whatever `Retry-After` says.
    pub max_wait: Duration,
    /// Time limit of one request (connecting, sending, reading the answer).
    pub timeout: Duration,
}

impl UrlRewardConfig {
    /// Defaults for `url`: no key, 256 items per request, 8 retries, waits of at most 30 s,
    /// requests of at most 300 s.
    pub fn new(url: impl Into<String>) -> Self {
        UrlRewardConfig {
            url: url.into(),
            api_key: None,
            batch_size: 256,
            max_retries: 8,
            max_wait: Duration::from_secs(30),
            timeout: Duration::from_secs(300),
        }
    }
}

/// The reward of a `rewardkit serve` URL.
pub struct UrlReward {
    config: UrlRewardConfig,
    endpoint: String,
    agent: ureq::Agent,
}

/// The `/v1/score` endpoint of `url` (kept as it is when it already names it).
fn endpoint_of(url: &str) -> Result<String, String> {
    let url = url.trim();
    if !url.starts_with("http://") {
        return Err(format!(
            "{url:?} is not an http:// URL (the client has no TLS; see docs/rl.md)"
        ));
    }
    if url.trim_end_matches('/').ends_with("/v1/score") {
        return Ok(url.trim_end_matches('/').to_string());
    }
    Ok(format!("{}/v1/score", url.trim_end_matches('/')))
}

impl UrlReward {
    /// Checks the URL (nothing is sent until the first score).
    pub fn new(config: UrlRewardConfig) -> Result<Self, RlError> {
        let endpoint = endpoint_of(&config.url).map_err(RlError::Config)?;
        if config.batch_size == 0 {
            return Err(RlError::Config(
                "the URL reward's batch size must be ≥ 1".into(),
            ));
        }
        let agent = ureq::AgentBuilder::new().timeout(config.timeout).build();
        Ok(UrlReward {
            config,
            endpoint,
            agent,
        })
    }

    /// The endpoint scored at.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn error(&self, message: String) -> RlError {
        RlError::Reward {
            name: self.name(),
            message,
        }
    }

    /// One request, retried on 429/503.
    fn post(&self, request: &ScoreRequest) -> Result<ScoreResponse, RlError> {
        let mut attempt = 0;
        loop {
            let mut call = self.agent.post(&self.endpoint);
            if let Some(key) = &self.config.api_key {
                call = call.set("Authorization", &format!("Bearer {key}"));
            }
            match call.send_json(request) {
                Ok(answer) => {
                    return answer.into_json::<ScoreResponse>().map_err(|e| {
                        self.error(format!("the answer is not a /v1/score answer: {e}"))
                    })
                }
                Err(ureq::Error::Status(429 | 503, answer))
                    if attempt < self.config.max_retries =>
                {
                    let wait = retry_after(&answer)
                        .unwrap_or_else(|| Duration::from_millis(500 << attempt.min(10)))
                        .min(self.config.max_wait);
                    std::thread::sleep(wait);
                    attempt += 1;
                }
                Err(ureq::Error::Status(status, answer)) => {
                    let retried = if matches!(status, 429 | 503) {
                        format!(" (after {attempt} retries)")
                    } else {
                        String::new()
                    };
                    let body = match answer.into_json::<ErrorBody>() {
                        Ok(b) => format!(": {} ({})", b.error, b.error_type),
                        Err(_) => String::new(),
                    };
                    return Err(self.error(format!("the server answered {status}{retried}{body}")));
                }
                Err(ureq::Error::Transport(e)) => {
                    return Err(self.error(format!(
                        "cannot reach the reward server: {e} (is `rewardkit serve` running there?)"
                    )))
                }
            }
        }
    }
}

/// `Retry-After` in seconds (the form `rewardkit serve` sends; an HTTP date is not read).
fn retry_after(answer: &ureq::Response) -> Option<Duration> {
    let seconds: f64 = answer.header("Retry-After")?.trim().parse().ok()?;
    (seconds.is_finite() && seconds >= 0.0).then(|| Duration::from_secs_f64(seconds))
}

impl Reward for UrlReward {
    fn name(&self) -> String {
        self.endpoint.clone()
    }

    fn score(&mut self, rows: &[Completion]) -> Result<Vec<f64>, RlError> {
        let mut scores = Vec::with_capacity(rows.len());
        for chunk in rows.chunks(self.config.batch_size) {
            let request = ScoreRequest {
                items: chunk
                    .iter()
                    .map(|c| ScoreItem {
                        prompt: Some(Text::Plain(c.prompt.into())),
                        response: Text::Plain(c.response.into()),
                    })
                    .collect(),
                return_members: None,
            };
            let answer = self.post(&request)?;
            if answer.scores.len() != chunk.len() {
                return Err(self.error(format!(
                    "{} scores for {} items",
                    answer.scores.len(),
                    chunk.len()
                )));
            }
            scores.extend(answer.scores);
        }
        Ok(scores)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_completed_and_other_schemes_refused() {
        for (url, want) in [
            ("http://127.0.0.1:8080", "http://127.0.0.1:8080/v1/score"),
            ("http://h:1/", "http://h:1/v1/score"),
            ("http://h:1/v1/score", "http://h:1/v1/score"),
            ("http://h:1/rm/v1/score/", "http://h:1/rm/v1/score"),
        ] {
            assert_eq!(endpoint_of(url).unwrap(), want);
        }
        let e = endpoint_of("https://h:1").unwrap_err();
        assert!(e.contains("https://h:1") && e.contains("TLS"), "{e}");
        assert!(UrlReward::new(UrlRewardConfig {
            batch_size: 0,
            ..UrlRewardConfig::new("http://h:1")
        })
        .is_err());
    }
}
