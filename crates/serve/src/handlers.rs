//! The endpoints. Handlers never touch tensors: they parse and validate, then go through
//! [`AppState::score`] (tokenisation, the queue, the model thread).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use rewardkit_data::Text;
use rewardkit_eval::stats::sigmoid;

use crate::api::*;
use crate::config::OpenRlhfInput;
use crate::error::{ErrorBody, ErrorKind, ServeError};
use crate::monitor::{Monitor, MonitorReport};
use crate::parse;
use crate::state::AppState;

type App = State<Arc<AppState>>;
type Body = Result<Bytes, BytesRejection>;

/// The body, or the error for one over `--max-body-bytes` (413) or unreadable.
fn body_json(body: Body) -> Result<Value, ServeError> {
    let bytes = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ServeError::new(ErrorKind::TooLarge, "the body is over --max-body-bytes")
        } else {
            ServeError::new(ErrorKind::InvalidJson, e.body_text())
        }
    })?;
    parse::json_body(&bytes)
}

fn answer<T: serde::Serialize>(r: Result<T, ServeError>) -> Response {
    match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Scores (prompt, response) items: the numbers `rewardkit score` gives.
#[utoipa::path(post, path = "/v1/score", request_body = ScoreRequest,
    responses((status = 200, body = ScoreResponse), (status = 422, body = ErrorBody),
        (status = 429, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn score(State(app): App, body: Body) -> Response {
    answer(score_inner(&app, body).await)
}

async fn score_inner(app: &AppState, body: Body) -> Result<ScoreResponse, ServeError> {
    let (items, members) = parse::score_request(&body_json(body)?, app.config.max_client_batch)?;
    let s = app.score(items, None).await?;
    let std = members.then(|| s.members.iter().map(|m| population_std(m)).collect());
    Ok(ScoreResponse {
        scores: s.scores,
        std,
        members: members.then_some(s.members),
        truncated: s.truncated,
        model: app.engine.name(),
    })
}

fn population_std(x: &[f64]) -> f64 {
    let n = x.len() as f64;
    let mean = x.iter().sum::<f64>() / n;
    (x.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n).sqrt()
}

/// OpenRLHF's remote reward model (`--remote_rm_url http://HOST:PORT/get_reward`).
#[utoipa::path(post, path = "/get_reward", request_body = GetRewardRequest,
    responses((status = 200, body = GetRewardResponse), (status = 422, body = ErrorBody)))]
pub async fn get_reward(State(app): App, body: Body) -> Response {
    answer(get_reward_inner(&app, body).await)
}

async fn get_reward_inner(app: &AppState, body: Body) -> Result<GetRewardResponse, ServeError> {
    let v = body_json(body)?;
    let obj = parse::object(&v, None)?;
    let query = parse::strings(obj, "query")?
        .ok_or_else(|| ServeError::validation("missing field `query`"))?;
    parse::check_count("query", query.len(), app.config.max_client_batch)?;
    let prompts = parse::strings(obj, "prompts")?;
    let items = match (&prompts, app.config.openrlhf_input) {
        (Some(prompts), OpenRlhfInput::Split) => {
            if prompts.len() != query.len() {
                return Err(ServeError::validation(format!(
                    "`prompts` has {} items, `query` {}",
                    prompts.len(),
                    query.len()
                )));
            }
            split_queries(&query, prompts)?
        }
        _ => alone(query.iter().cloned()),
    };
    let n = items.len();
    let s = app.score(items, None).await?;
    let report = app.monitor_report(false);
    let mut extra_logs = BTreeMap::new();
    if let Some(r) = report {
        extra_logs.insert("monitor_length_r".into(), vec![r.length_r(); n]);
        extra_logs.insert("monitor_flags".into(), vec![r.flags() as f64; n]);
        extra_logs.insert("monitor_window_items".into(), vec![r.n as f64; n]);
    }
    Ok(GetRewardResponse {
        rewards: s.scores.clone(),
        scores: s.scores,
        extra_logs,
    })
}

/// Texts scored as responses with an empty prompt.
fn alone(texts: impl Iterator<Item = String>) -> Vec<(Text, Text)> {
    texts
        .map(|t| (Text::Plain(String::new()), Text::Plain(t)))
        .collect()
}

/// (prompt, query minus its prompt); a query that does not start with its prompt is refused.
fn split_queries(query: &[String], prompts: &[String]) -> Result<Vec<(Text, Text)>, ServeError> {
    query
        .iter()
        .zip(prompts)
        .enumerate()
        .map(|(i, (q, p))| match q.strip_prefix(p.as_str()) {
            Some(response) => Ok((Text::Plain(p.clone()), Text::Plain(response.to_owned()))),
            None => Err(ServeError::validation(format!(
                "query[{i}] does not start with prompts[{i}] (use --openrlhf-input whole to score whole queries)"
            ))),
        })
        .collect()
}

/// vLLM's `/classify`, which verl's reward loop calls.
#[utoipa::path(post, path = "/classify", request_body = ClassifyRequest,
    responses((status = 200, body = ClassifyResponse), (status = 422, body = ErrorBody)))]
pub async fn classify(State(app): App, body: Body) -> Response {
    answer(classify_inner(&app, body).await)
}

async fn classify_inner(app: &AppState, body: Body) -> Result<ClassifyResponse, ServeError> {
    let v = body_json(body)?;
    let obj = parse::object(&v, None)?;
    let texts: Vec<String> = match obj.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(_)) => parse::strings(obj, "input")?.unwrap_or_default(),
        Some(v) => {
            return Err(ServeError::validation(format!(
                "`input` should be a string or an array of strings, found {}",
                parse::type_name(v)
            )))
        }
        None => return Err(ServeError::validation("missing field `input`")),
    };
    parse::check_count("input", texts.len(), app.config.max_client_batch)?;
    let activation = parse::flag(obj, "activation")?.unwrap_or(true);
    let s = app.score(alone(texts.into_iter()), None).await?;
    let data = s
        .scores
        .iter()
        .enumerate()
        .map(|(index, &r)| ClassifyData {
            index,
            label: label(),
            probs: vec![if activation { sigmoid(r) } else { r }],
            num_classes: 1,
        })
        .collect();
    let created = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(ClassifyResponse {
        id: format!("classify-{created}"),
        object: "list".into(),
        created,
        model: obj
            .get("model")
            .and_then(Value::as_str)
            .map_or_else(|| app.engine.name(), str::to_owned),
        data,
        usage: Usage {
            prompt_tokens: s.tokens,
            total_tokens: s.tokens,
            completion_tokens: 0,
        },
    })
}

/// The one label of a reward model (HF's default name of class 0).
fn label() -> String {
    "LABEL_0".into()
}

/// text-embeddings-inference's `/predict`: `[{score, label}]` for one input, a list of those
/// for a batch.
#[utoipa::path(post, path = "/predict", request_body = PredictRequest,
    responses((status = 200, body = Vec<Prediction>), (status = 422, body = ErrorBody)))]
pub async fn predict(State(app): App, body: Body) -> Response {
    answer(predict_inner(&app, body).await)
}

async fn predict_inner(app: &AppState, body: Body) -> Result<Value, ServeError> {
    let v = body_json(body)?;
    let obj = parse::object(&v, None)?;
    let inputs = obj
        .get("inputs")
        .ok_or_else(|| ServeError::validation("missing field `inputs`"))?;
    let (items, batch) = predict_inputs(inputs)?;
    parse::check_count("inputs", items.len(), app.config.max_client_batch)?;
    let raw = parse::flag(obj, "raw_scores")?.unwrap_or(false);
    let truncate = parse::flag(obj, "truncate")?;
    let s = app.score(items, truncate).await?;
    let one = |r: f64| {
        vec![Prediction {
            score: if raw { r } else { sigmoid(r) },
            label: label(),
        }]
    };
    let out = if batch {
        serde_json::to_value(s.scores.iter().map(|&r| one(r)).collect::<Vec<_>>())
    } else {
        serde_json::to_value(one(s.scores[0]))
    };
    out.map_err(|e| ServeError::new(ErrorKind::Model, e.to_string()))
}

/// TEI's input forms: `"text"`, `["prompt", "response"]` (a pair), or an array of those
/// (`[["p", "r"], …]` or `["a", "b", "c"]`). Returns the items and whether it was a batch.
fn predict_inputs(v: &Value) -> Result<(Vec<(Text, Text)>, bool), ServeError> {
    let plain = |s: &str| Text::Plain(s.to_owned());
    let sequence = |v: &Value, at: &str| -> Result<(Text, Text), ServeError> {
        match v {
            Value::String(s) => Ok((plain(""), plain(s))),
            Value::Array(a) if a.len() == 2 && a.iter().all(Value::is_string) => Ok((
                plain(a[0].as_str().unwrap_or_default()),
                plain(a[1].as_str().unwrap_or_default()),
            )),
            _ => Err(ServeError::validation(format!(
                "{at} should be a string or a [prompt, response] pair of strings, found {}",
                parse::type_name(v)
            ))),
        }
    };
    match v {
        Value::String(_) => Ok((vec![sequence(v, "inputs")?], false)),
        Value::Array(a) if a.len() == 2 && a.iter().all(Value::is_string) => {
            Ok((vec![sequence(v, "inputs")?], false))
        }
        Value::Array(a) => {
            let items = a
                .iter()
                .enumerate()
                .map(|(i, x)| sequence(x, &format!("inputs[{i}]")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((items, true))
        }
        _ => Err(ServeError::validation(format!(
            "`inputs` should be a string, a pair or an array, found {}",
            parse::type_name(v)
        ))),
    }
}

/// 200 once the model is loaded (the server listens only then).
#[utoipa::path(get, path = "/health", responses((status = 200, body = HealthResponse)))]
pub async fn health() -> Json<HealthResponse> {
    Json(HealthResponse {
        status: "ok".into(),
    })
}

/// The model, its ensemble members and the server's limits.
#[utoipa::path(get, path = "/info", responses((status = 200, body = InfoResponse)))]
pub async fn info(State(app): App) -> Json<InfoResponse> {
    Json(InfoResponse {
        model: app.engine.name(),
        version: env!("CARGO_PKG_VERSION").into(),
        members: app.engine.members(),
        combine: app.config.combine.label(),
        limits: serde_json::to_value(&app.config).unwrap_or(Value::Null),
    })
}

/// Prometheus text: requests, latency, queue, batches, tokens, truncations, the monitor.
#[utoipa::path(get, path = "/metrics", responses((status = 200, body = String, content_type = "text/plain")))]
pub async fn metrics(State(app): App) -> Response {
    let mut text = app.metrics.render();
    if let Some(r) = app.monitor_report(false) {
        text.push_str(&Monitor::render(&r));
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// The live reward-hacking monitor over the last `--monitor-window` served items.
#[utoipa::path(get, path = "/v1/monitor", responses((status = 200, body = MonitorReport)))]
pub async fn monitor(State(app): App) -> Response {
    match app.monitor_report(true) {
        Some(r) => Json(r).into_response(),
        None => {
            ServeError::new(ErrorKind::Unavailable, "the monitor is unavailable").into_response()
        }
    }
}
