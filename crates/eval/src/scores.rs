//! Score files: one JSON object per pair with `chosen_score` and `rejected_score` (numbers), and
//! optionally `subset` (string), `tie` (boolean) and `id`. Any reward model, in any language,
//! can write one; `rewardkit eval --scores FILE` evaluates it. JSONL, gzip, JSON arrays and
//! Parquet are read, like preference data.

use std::io::Write;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use rewardkit_data::{
    for_each_record, json_type, PairScores, PreferencePair, RowError, RowErrorKind,
};

use crate::metric::ScoredPair;
use crate::EvalError;

/// Reads a score file (`-` is standard input). A malformed line is an error naming
/// `FILE:LINE`; so is a pair whose gap `chosen_score − rejected_score` is not a finite number
/// (scores like ±1e308), since every metric is computed from gaps.
pub fn read_scores(path: &Path) -> Result<Vec<ScoredPair>, EvalError> {
    let mut out = Vec::new();
    for_each_record(path, |record| -> Result<(), EvalError> {
        let (location, obj) = record.into_result()?;
        let pair = parse_scores(&obj).map_err(|kind| RowError { location, kind })?;
        out.push(pair);
        Ok(())
    })?;
    if out.is_empty() {
        return Err(EvalError::Empty(path.display().to_string()));
    }
    Ok(out)
}

fn parse_scores(obj: &Map<String, Value>) -> Result<ScoredPair, RowErrorKind> {
    let score = |field: &str| -> Result<f64, RowErrorKind> {
        match obj.get(field) {
            None => Err(RowErrorKind::MissingField(field.into())),
            Some(Value::Number(n)) => {
                n.as_f64()
                    .filter(|v| v.is_finite())
                    .ok_or_else(|| RowErrorKind::InvalidValue {
                        field: field.into(),
                        message: format!("{n} is not a finite number"),
                    })
            }
            Some(other) => Err(RowErrorKind::WrongType {
                field: field.into(),
                expected: "a number",
                found: json_type(other).into(),
            }),
        }
    };
    let chosen = score("chosen_score")?;
    let rejected = score("rejected_score")?;
    check_gap(chosen, rejected)?;
    let tie = match obj.get("tie") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(RowErrorKind::WrongType {
                field: "tie".into(),
                expected: "a boolean",
                found: json_type(other).into(),
            })
        }
    };
    let subset = match obj.get("subset") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => {
            return Err(RowErrorKind::WrongType {
                field: "subset".into(),
                expected: "a string",
                found: json_type(other).into(),
            })
        }
    };
    Ok(ScoredPair {
        chosen,
        rejected,
        tie,
        p_chosen: None,
        subset,
    })
}

/// The largest reward gap accepted: gaps within ±`MAX_GAP` have a finite mean, standard
/// deviation and median (the std of values in [−B, B] is at most √2·B).
pub const MAX_GAP: f64 = f64::MAX / 2.0;

/// The reward gap of two finite scores overflows when they are of opposite signs and near
/// `f64::MAX`: an error, not an infinite gap (or a std that is).
pub fn check_gap(chosen: f64, rejected: f64) -> Result<(), RowErrorKind> {
    let gap = chosen - rejected;
    if gap.abs() <= MAX_GAP {
        return Ok(());
    }
    Err(RowErrorKind::InvalidValue {
        field: "rejected_score".into(),
        message: format!(
            "the gap chosen_score − rejected_score ({chosen:e} − {rejected:e}) overflows: \
             gaps beyond ±{MAX_GAP:e} cannot be averaged"
        ),
    })
}

/// One line of a score file as rewardkit writes it.
#[derive(Debug, Serialize)]
struct ScoreRow<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    subset: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    tie: bool,
    chosen_score: f64,
    rejected_score: f64,
    source: String,
}

/// Writes one JSONL line per pair, readable by [`read_scores`].
pub fn write_scores(
    mut out: impl Write,
    pairs: &[PreferencePair],
    scores: &[PairScores],
) -> std::io::Result<()> {
    for (p, s) in pairs.iter().zip(scores) {
        let row = ScoreRow {
            id: p.id.as_deref(),
            subset: p.subset.as_deref(),
            tie: p.tie,
            chosen_score: s.chosen,
            rejected_score: s.rejected,
            source: p.location.to_string(),
        };
        serde_json::to_writer(&mut out, &row)?;
        out.write_all(b"\n")?;
    }
    out.flush()
}

/// Pairs and their scores as [`ScoredPair`]s for the metrics.
pub fn scored_pairs(pairs: &[PreferencePair], scores: &[PairScores]) -> Vec<ScoredPair> {
    pairs
        .iter()
        .zip(scores)
        .map(|(p, s)| ScoredPair {
            chosen: s.chosen,
            rejected: s.rejected,
            tie: p.tie,
            p_chosen: p.p_chosen,
            subset: p.subset.clone(),
        })
        .collect()
}
