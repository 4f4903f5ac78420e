//! The OpenAPI document of `GET /openapi.json`, generated from the handlers and their types.

use utoipa::OpenApi;

use crate::api::*;
use crate::error::ErrorBody;
use crate::handlers;
use crate::monitor::{FeatureWatch, MonitorReport};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "rewardkit serve",
        description = "Reward models as a service for RL loops."
    ),
    paths(
        handlers::score,
        handlers::get_reward,
        handlers::classify,
        handlers::predict,
        handlers::health,
        handlers::info,
        handlers::metrics,
        handlers::monitor
    ),
    components(schemas(
        ScoreRequest,
        ScoreItem,
        ScoreResponse,
        GetRewardRequest,
        GetRewardResponse,
        ClassifyRequest,
        ClassifyResponse,
        ClassifyData,
        Usage,
        PredictRequest,
        Prediction,
        InfoResponse,
        HealthResponse,
        ErrorBody,
        MonitorReport,
        FeatureWatch
    ))
)]
pub struct ApiDoc;

/// The document as JSON.
pub fn document() -> serde_json::Value {
    serde_json::to_value(ApiDoc::openapi()).unwrap_or(serde_json::Value::Null)
}
