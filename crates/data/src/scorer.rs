//! The one thing every consumer of a reward model needs: score (prompt, response) pairs.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{DataError, RowError, RowErrorKind};
use crate::records::for_each_record;
use crate::types::{PreferencePair, Text};

/// Something that gives a scalar reward to a response to a prompt: a trained checkpoint, a file of
/// precomputed scores, or a heuristic baseline. Audits and evaluation depend only on this trait, so
/// a model trained anywhere can be evaluated and audited.
pub trait Scorer {
    type Error: std::error::Error + Send + Sync + 'static;

    /// Scores a batch; the result has one score per item, in order.
    fn score_batch(&self, items: &[(&Text, &Text)]) -> Result<Vec<f64>, Self::Error>;

    /// A short human-readable name, used in reports.
    fn name(&self) -> String;
}

/// Scores of one preference pair.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PairScores {
    pub chosen: f64,
    pub rejected: f64,
}

/// Scores every pair with `scorer`, `batch_pairs` pairs (2 × that many texts) at a time.
/// `progress` is called with the number of pairs scored so far.
pub fn score_pairs<S: Scorer>(
    scorer: &S,
    pairs: &[PreferencePair],
    batch_pairs: usize,
    mut progress: impl FnMut(usize),
) -> Result<Vec<PairScores>, S::Error> {
    let batch_pairs = batch_pairs.max(1);
    let mut out = Vec::with_capacity(pairs.len());
    for chunk in pairs.chunks(batch_pairs) {
        let mut items = Vec::with_capacity(chunk.len() * 2);
        for p in chunk {
            items.push((&p.prompt, &p.chosen));
            items.push((&p.prompt, &p.rejected));
        }
        let scores = scorer.score_batch(&items)?;
        assert_eq!(
            scores.len(),
            items.len(),
            "scorer {} broke the Scorer contract: {} scores for {} items",
            scorer.name(),
            scores.len(),
            items.len()
        );
        for s in scores.chunks_exact(2) {
            out.push(PairScores {
                chosen: s[0],
                rejected: s[1],
            });
        }
        progress(out.len());
    }
    Ok(out)
}

/// Reads a `prompt` / `response` field of a scored-rows record: a string or a list of
/// `{role, content}` messages. An absent or null optional field is the empty text.
pub fn text_field(
    obj: &serde_json::Map<String, serde_json::Value>,
    field: &str,
    required: bool,
) -> Result<Text, RowErrorKind> {
    match obj.get(field) {
        None | Some(serde_json::Value::Null) if !required => Ok(Text::Plain(String::new())),
        None => Err(RowErrorKind::MissingField(field.into())),
        Some(v) => serde_json::from_value::<Text>(v.clone()).map_err(|_| RowErrorKind::WrongType {
            field: field.into(),
            expected: "a string or a list of {role, content} messages",
            found: crate::error::json_type(v).into(),
        }),
    }
}

/// Precomputed scores as a [`Scorer`]: rows `{prompt, response, score}`, as `rewardkit score`
/// writes them (or any tool that scores the requests an audit exports). Scoring an item that is
/// not in the table is an error naming it, never a made-up score.
#[derive(Debug, Clone)]
pub struct ScoreTable {
    name: String,
    scores: HashMap<(Text, Text), f64>,
}

/// The largest score magnitude a [`ScoreTable`] accepts: the difference of any two such scores
/// is finite.
pub const MAX_SCORE: f64 = f64::MAX / 2.0;

/// An item a [`ScoreTable`] has no score for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{table}: no score for response {response:?} to prompt {prompt:?}")]
pub struct MissingScore {
    pub table: String,
    pub prompt: String,
    pub response: String,
}

impl ScoreTable {
    /// Reads scored rows from JSONL / JSON / gzip / Parquet. A row without a finite numeric
    /// `score`, or a (prompt, response) listed twice with different scores, is an error naming
    /// its file and line.
    pub fn read(path: &Path) -> Result<Self, DataError> {
        let mut scores = HashMap::new();
        for_each_record(path, |record| -> Result<(), DataError> {
            let (location, obj) = record.into_result()?;
            let row = || -> Result<(Text, Text, f64), RowErrorKind> {
                let prompt = text_field(&obj, "prompt", false)?;
                let response = text_field(&obj, "response", true)?;
                let score = match obj.get("score") {
                    None => return Err(RowErrorKind::MissingField("score".into())),
                    Some(v) => v.as_f64().filter(|s| s.is_finite()).ok_or_else(|| {
                        RowErrorKind::WrongType {
                            field: "score".into(),
                            expected: "a finite number",
                            found: crate::error::json_type(v).into(),
                        }
                    })?,
                };
                if score.abs() > MAX_SCORE {
                    return Err(RowErrorKind::InvalidValue {
                        field: "score".into(),
                        message: format!(
                            "{score:e} is too large: differences of scores beyond ±{MAX_SCORE:e} overflow"
                        ),
                    });
                }
                Ok((prompt, response, score))
            };
            let (prompt, response, score) = row().map_err(|kind| RowError {
                location: location.clone(),
                kind,
            })?;
            match scores.insert((prompt, response), score) {
                Some(old) if old != score => Err(RowError {
                    location,
                    kind: RowErrorKind::InvalidValue {
                        field: "score".into(),
                        message: format!(
                            "this prompt and response were already scored {old}, now {score}"
                        ),
                    },
                }
                .into()),
                _ => Ok(()),
            }
        })?;
        Ok(ScoreTable {
            name: format!("scores:{}", path.display()),
            scores,
        })
    }

    /// A table from in-memory rows (later rows win).
    pub fn from_rows(
        name: impl Into<String>,
        rows: impl IntoIterator<Item = (Text, Text, f64)>,
    ) -> Self {
        ScoreTable {
            name: name.into(),
            scores: rows.into_iter().map(|(p, r, s)| ((p, r), s)).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

impl Scorer for ScoreTable {
    type Error = MissingScore;

    fn score_batch(&self, items: &[(&Text, &Text)]) -> Result<Vec<f64>, MissingScore> {
        items
            .iter()
            .map(|&(p, r)| {
                // Keys are owned; this clones once per lookup, cheap next to any model.
                self.scores
                    .get(&(p.clone(), r.clone()))
                    .copied()
                    .ok_or_else(|| MissingScore {
                        table: self.name.clone(),
                        prompt: excerpt(&p.render()),
                        response: excerpt(&r.render()),
                    })
            })
            .collect()
    }

    fn name(&self) -> String {
        self.name.clone()
    }
}

/// The first 80 characters of a text, for error messages.
fn excerpt(s: &str) -> String {
    let mut out: String = s.chars().take(80).collect();
    if s.chars().count() > 80 {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn score_table_reads_rows_and_names_what_it_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("scores.jsonl");
        std::fs::write(
            &path,
            "{\"prompt\":\"p\",\"response\":\"a\",\"score\":1.5}\n{\"response\":\"b\",\"score\":-2}\n",
        )
        .unwrap();
        let table = ScoreTable::read(&path).unwrap();
        let p = Text::Plain("p".into());
        let empty = Text::Plain(String::new());
        let (a, b) = (Text::Plain("a".into()), Text::Plain("b".into()));
        assert_eq!(
            table.score_batch(&[(&p, &a), (&empty, &b)]).unwrap(),
            vec![1.5, -2.0]
        );
        let err = table.score_batch(&[(&p, &b)]).unwrap_err();
        assert_eq!(err.response, "b");

        std::fs::write(
            &path,
            "{\"prompt\":\"p\",\"response\":\"a\",\"score\":\"high\"}\n",
        )
        .unwrap();
        let msg = ScoreTable::read(&path).unwrap_err().to_string();
        assert!(
            msg.ends_with(":1: field `score` should be a finite number, found a string"),
            "{msg}"
        );
        std::fs::write(
            &path,
            "{\"response\":\"a\",\"score\":1}\n{\"response\":\"a\",\"score\":2}\n",
        )
        .unwrap();
        let msg = ScoreTable::read(&path).unwrap_err().to_string();
        assert!(
            msg.contains(
                ":2: field `score`: this prompt and response were already scored 1, now 2"
            ),
            "{msg}"
        );
    }
}
