//! Pools of policy samples for best-of-n: the prompts they are drawn for, the one pool-row schema
//! ([`PoolRow`], written by `rewardkit generate` and `goodhart label`, read by `goodhart curves`),
//! and checkable gold quality on GSM8K.
//!
//! Two layouts are read, recognised by their fields:
//! - **pool rows** ([`PoolRow`]): one row per sample, `{prompt_id, prompt, sample, response,
//!   logprob, logprob_model, tokens, finished, ref_logprob?, gold?}` (all but `prompt_id`,
//!   `prompt` and `response` optional);
//! - **GSM8K `example_model_solutions.jsonl`**: one row per question, `{question, ground_truth,
//!   <model>: {solution, is_correct}, …}`; each model's solution becomes a sample whose gold is
//!   its `is_correct` label (real model solutions, labelled by the GSM8K authors).
//!
//! A malformed row is an error naming its file and line.

use std::collections::HashMap;
use std::path::Path;

use rewardkit_data::{for_each_record, json_type, DataError, RowError, RowErrorKind};
use rewardkit_io::IoError;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::analysis::{PoolScores, PromptScores};

/// One sample of a pool: a JSONL row of `rewardkit generate` and `goodhart label --pool-out`
/// (fields that are `None` are left out).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PoolRow {
    /// The prompt's id (a number in the prompts file is written as its text).
    pub prompt_id: String,
    pub prompt: String,
    /// The sample's index among its prompt's samples.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<usize>,
    pub response: String,
    /// log π(y|x) under the distribution the sample was drawn from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprob: Option<f64>,
    /// log π(y|x) under the policy model at temperature 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprob_model: Option<f64>,
    /// Generated tokens, EOS included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<usize>,
    /// Whether generation ended with EOS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished: Option<bool>,
    /// log π_ref(y|x) under a reference model (for a KL penalty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ref_logprob: Option<f64>,
    /// Gold quality when the pool carries it (GSM8K solutions: 1 correct, 0 not).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gold: Option<f64>,
}

/// Writes pool rows as JSONL, atomically.
pub fn write_pool(path: &Path, rows: &[PoolRow]) -> Result<(), IoError> {
    rewardkit_io::write_file_with(path, |w| {
        for row in rows {
            serde_json::to_writer(&mut *w, row)?;
            std::io::Write::write_all(w, b"\n")?;
        }
        Ok(())
    })
}

/// One prompt to sample a pool for.
#[derive(Debug, Clone, PartialEq)]
pub struct Prompt {
    /// `id` of the record (a string or a number, as text), else its 0-based index.
    pub id: String,
    /// The user's message.
    pub text: String,
}

/// Reads a prompts file (JSONL, JSON array, gzip or Parquet): one object per prompt with
/// `prompt` (a string) and optionally `id` (a string or a number). A malformed record is an
/// error naming its file and line; a file without prompts is an error.
pub fn read_prompts(path: &Path) -> Result<Vec<Prompt>, DataError> {
    let mut prompts = Vec::new();
    for_each_record(path, |record| -> Result<(), DataError> {
        let (location, obj) = record.into_result()?;
        let parsed = (|| {
            let text = match obj.get("prompt") {
                Some(Value::String(s)) => s.clone(),
                Some(v) => return Err(wrong_type("prompt", "a string", v)),
                None => return Err(RowErrorKind::MissingField("prompt".into())),
            };
            let id = match obj.get("id") {
                None | Some(Value::Null) => prompts.len().to_string(),
                Some(Value::String(s)) => s.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(v) => return Err(wrong_type("id", "a string or a number", v)),
            };
            Ok(Prompt { id, text })
        })();
        prompts.push(parsed.map_err(|kind| RowError { location, kind })?);
        Ok(())
    })?;
    if prompts.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(prompts)
}

fn wrong_type(field: &str, expected: &'static str, v: &Value) -> RowErrorKind {
    RowErrorKind::WrongType {
        field: field.into(),
        expected,
        found: json_type(v).into(),
    }
}

fn string(obj: &Map<String, Value>, field: &str) -> Result<String, RowErrorKind> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(v) => Err(wrong_type(field, "a string", v)),
        None => Err(RowErrorKind::MissingField(field.into())),
    }
}

/// An optional count (a non-negative integer).
fn count(obj: &Map<String, Value>, field: &str) -> Result<Option<usize>, RowErrorKind> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_u64().and_then(|n| usize::try_from(n).ok()) {
            Some(n) => Ok(Some(n)),
            None => Err(wrong_type(field, "a non-negative integer", v)),
        },
    }
}

/// An optional boolean.
fn flag(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, RowErrorKind> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(wrong_type(field, "a boolean", v)),
    }
}

fn number(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, RowErrorKind> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64().filter(|x| x.is_finite()) {
            Some(x) => Ok(Some(x)),
            None => Err(wrong_type(field, "a finite number", v)),
        },
    }
}

fn parse_row(
    obj: &Map<String, Value>,
    line: usize,
    out: &mut Vec<PoolRow>,
) -> Result<(), RowErrorKind> {
    if obj.contains_key("question") && obj.contains_key("ground_truth") {
        let question = string(obj, "question")?;
        for (key, v) in obj {
            let Some(sol) = v.as_object() else { continue };
            let solution = string(sol, "solution").map_err(|e| RowErrorKind::InvalidValue {
                field: key.clone(),
                message: e.to_string(),
            })?;
            let correct = match sol.get("is_correct") {
                Some(Value::Bool(b)) => *b,
                _ => {
                    return Err(RowErrorKind::InvalidValue {
                        field: key.clone(),
                        message: "`is_correct` should be a boolean".into(),
                    })
                }
            };
            out.push(PoolRow {
                prompt_id: format!("gsm8k:{line}"),
                prompt: question.clone(),
                response: solution,
                gold: Some(if correct { 1.0 } else { 0.0 }),
                ..PoolRow::default()
            });
        }
        return Ok(());
    }
    out.push(PoolRow {
        prompt_id: string(obj, "prompt_id")?,
        prompt: string(obj, "prompt")?,
        sample: count(obj, "sample")?,
        response: string(obj, "response")?,
        logprob: number(obj, "logprob")?,
        logprob_model: number(obj, "logprob_model")?,
        tokens: count(obj, "tokens")?,
        finished: flag(obj, "finished")?,
        ref_logprob: number(obj, "ref_logprob")?,
        gold: number(obj, "gold")?,
    });
    Ok(())
}

/// Reads a pool file (either layout).
pub fn read_pool(path: &Path) -> Result<Vec<PoolRow>, DataError> {
    let mut rows = Vec::new();
    for_each_record(path, |record| -> Result<(), DataError> {
        let (location, obj) = record.into_result()?;
        let line = match location.position {
            rewardkit_data::Position::Line(n) | rewardkit_data::Position::Row(n) => n as usize,
        };
        parse_row(&obj, line, &mut rows).map_err(|kind| RowError { location, kind }.into())
    })?;
    if rows.is_empty() {
        return Err(DataError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(rows)
}

/// Rows grouped by prompt id, in order of first appearance: indices into `rows`.
pub fn group_by_prompt(rows: &[PoolRow]) -> Vec<Vec<usize>> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut groups: Vec<Vec<usize>> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let g = *index.entry(r.prompt_id.as_str()).or_insert_with(|| {
            groups.push(Vec::new());
            groups.len() - 1
        });
        groups[g].push(i);
    }
    groups
}

/// The final number of a GSM8K-style answer: after `####` or `A:` when present, else the last
/// number in the text; `$`, `,` and a trailing `.0…` are dropped (`$1,234.00` → `1234`).
pub fn final_number(text: &str) -> Option<String> {
    let tail = ["####", "A:", "answer is"]
        .iter()
        .filter_map(|m| text.rfind(m).map(|i| &text[i + m.len()..]))
        .min_by_key(|t| t.len())
        .unwrap_or(text);
    let scan = |s: &str| -> Option<String> {
        let mut last = None;
        let mut cur = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            let continues_number = !cur.is_empty()
                && (c == ',' || c == '.')
                && chars.peek().is_some_and(|n| n.is_ascii_digit());
            if c.is_ascii_digit()
                || continues_number
                || (c == '-' && cur.is_empty() && chars.peek().is_some_and(|n| n.is_ascii_digit()))
            {
                cur.push(c);
            } else if !cur.is_empty() {
                last = Some(std::mem::take(&mut cur));
            }
        }
        if !cur.is_empty() {
            last = Some(cur);
        }
        last
    };
    let raw = scan(tail).or_else(|| scan(text))?;
    let mut n = raw.replace(',', "");
    if let Some((int, frac)) = n.split_once('.') {
        if frac.chars().all(|c| c == '0') {
            n = int.to_string();
        }
    }
    Some(n)
}

/// GSM8K's gold answers (`test.jsonl`: `question`, `answer` ending in `#### N`), by question.
pub fn gsm8k_answers(path: &Path) -> Result<HashMap<String, String>, DataError> {
    let mut out = HashMap::new();
    for_each_record(path, |record| -> Result<(), DataError> {
        let (location, obj) = record.into_result()?;
        let parsed = (|| {
            let q = string(&obj, "question")?;
            let a = string(&obj, "answer")?;
            let n = a
                .rsplit_once("####")
                .and_then(|(_, n)| final_number(n))
                .ok_or_else(|| RowErrorKind::InvalidValue {
                    field: "answer".into(),
                    message: "no final `#### N`".into(),
                })?;
            Ok((q, n))
        })();
        let (q, n) = parsed.map_err(|kind| RowError { location, kind })?;
        out.insert(q, n);
        Ok(())
    })?;
    Ok(out)
}

/// Whether a prompt is held out: a stable hash of (seed, prompt id) below `fraction`.
pub fn held_out(prompt_id: &str, fraction: f64, seed: u64) -> bool {
    let mut h = rewardkit_data::StableHasher::new(seed);
    h.str(prompt_id);
    h.unit() < fraction
}

/// Preference pairs labelled by gold: for every prompt, every two samples of different gold,
/// the better one chosen (`subset` = "gold"). Rows without gold are skipped. This is how best-of-n
/// picks are labelled for iterative retraining, and how a verifier is trained from GSM8K's
/// labelled solutions.
pub fn gold_pairs(rows: &[PoolRow], groups: &[Vec<usize>]) -> Vec<rewardkit_data::PreferencePair> {
    let mut out = Vec::new();
    for g in groups {
        for (k, &i) in g.iter().enumerate() {
            for &j in &g[k + 1..] {
                let (a, b) = (&rows[i], &rows[j]);
                let (Some(ga), Some(gb)) = (a.gold, b.gold) else {
                    continue;
                };
                if ga == gb || a.response == b.response {
                    continue;
                }
                let (c, r) = if ga > gb { (a, b) } else { (b, a) };
                let mut pair = rewardkit_data::PreferencePair::new(
                    c.prompt.as_str(),
                    c.response.as_str(),
                    r.response.as_str(),
                );
                pair.id = Some(c.prompt_id.clone());
                pair.subset = Some("gold".into());
                out.push(pair);
            }
        }
    }
    out
}

/// Splits a pool's prompts (groups of [`group_by_prompt`]) into held-out and training ones by
/// [`held_out`]: `(held, train)`.
pub fn split_prompts(
    rows: &[PoolRow],
    fraction: f64,
    seed: u64,
) -> (Vec<Vec<usize>>, Vec<Vec<usize>>) {
    group_by_prompt(rows)
        .into_iter()
        .partition(|g| held_out(&rows[g[0]].prompt_id, fraction, seed))
}

/// The rows of `groups`, in order, each numbered as a sample of its prompt (0, 1, …).
pub fn numbered_rows(rows: &[PoolRow], groups: &[Vec<usize>]) -> Vec<PoolRow> {
    groups
        .iter()
        .flat_map(|g| {
            g.iter().enumerate().map(|(k, &i)| PoolRow {
                sample: Some(k),
                ..rows[i].clone()
            })
        })
        .collect()
}

/// Gold of each row from GSM8K's answers ([`gsm8k_answers`]): 1 when the row's final number is
/// its question's answer, else 0. `Err` holds a prompt that has no answer.
pub fn gsm8k_gold<'a>(
    rows: &'a [PoolRow],
    answers: &HashMap<String, String>,
) -> Result<Vec<f64>, &'a str> {
    rows.iter()
        .map(|r| {
            let want = answers.get(&r.prompt).ok_or(r.prompt.as_str())?;
            Ok(f64::from(u8::from(
                final_number(&r.response).as_ref() == Some(want),
            )))
        })
        .collect()
}

/// Whether every row has both log-probabilities (what a KL-penalised selector needs).
pub fn has_logprobs(rows: &[PoolRow]) -> bool {
    rows.iter()
        .all(|r| r.logprob.is_some() && r.ref_logprob.is_some())
}

/// The pool as [`crate::analysis`] reads it: per prompt (`groups`), each member's scores and
/// gold (both indexed by row), and the log-probabilities when every row has them.
pub fn pool_scores(
    rows: &[PoolRow],
    groups: &[Vec<usize>],
    members: &[Vec<f64>],
    gold: &[f64],
) -> PoolScores {
    let logprobs = has_logprobs(rows);
    let pick = |v: &[f64], g: &[usize]| g.iter().map(|&i| v[i]).collect::<Vec<f64>>();
    PoolScores {
        prompts: groups
            .iter()
            .map(|g| PromptScores {
                members: members.iter().map(|m| pick(m, g)).collect(),
                gold: pick(gold, g),
                logp: logprobs.then(|| g.iter().filter_map(|&i| rows[i].logprob).collect()),
                ref_logp: logprobs.then(|| g.iter().filter_map(|&i| rows[i].ref_logprob).collect()),
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(rel: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/data")
            .join(rel)
    }

    #[test]
    fn final_numbers() {
        assert_eq!(
            final_number("so 9 * 2 = $<<9*2=18>>18 every day\nA: 18"),
            Some("18".into())
        );
        assert_eq!(final_number("#### 1,234"), Some("1234".into()));
        assert_eq!(
            final_number("It costs $12.50 in all."),
            Some("12.50".into())
        );
        assert_eq!(final_number("the answer is 7.00."), Some("7".into()));
        assert_eq!(
            final_number("she loses -3 points, then 5"),
            Some("5".into())
        );
        assert_eq!(final_number("a drop of -3"), Some("-3".into()));
        assert_eq!(final_number("no digits"), None);
    }

    #[test]
    fn gsm8k_solutions_become_labelled_samples() {
        let rows = read_pool(&shared("gsm8k/example_model_solutions.jsonl")).unwrap();
        // 1319 questions × 4 models (6b/175b × finetuning/verification).
        assert_eq!(rows.len(), 1319 * 4);
        let groups = group_by_prompt(&rows);
        assert_eq!(groups.len(), 1319);
        assert!(groups.iter().all(|g| g.len() == 4));
        // Counted from the file: 742 + 515 + 458 + 286 solutions are labelled correct.
        let correct: f64 = rows.iter().filter_map(|r| r.gold).sum();
        assert_eq!(correct, 2001.0);
        // The labels agree with our own check of the final number against GSM8K's answers for
        // nearly every solution (they are the GSM8K authors' own correctness labels).
        let answers = gsm8k_answers(&shared("gsm8k/test.jsonl")).unwrap();
        let agree = rows
            .iter()
            .filter(|r| {
                let ours = final_number(&r.response) == answers.get(&r.prompt).cloned();
                (ours as u8 as f64) == r.gold.unwrap()
            })
            .count();
        assert!(
            agree as f64 / rows.len() as f64 > 0.97,
            "{agree} of {}",
            rows.len()
        );
    }

    #[test]
    fn generate_rows_and_bad_rows() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pool.jsonl");
        std::fs::write(
            &p,
            "{\"prompt_id\":\"a\",\"prompt\":\"q\",\"response\":\"r1\",\"logprob\":-3.5,\"ref_logprob\":-4}\n\
             {\"prompt_id\":\"a\",\"prompt\":\"q\",\"response\":\"r2\",\"logprob\":-2}\n",
        )
        .unwrap();
        let rows = read_pool(&p).unwrap();
        assert_eq!(rows[0].ref_logprob, Some(-4.0));
        assert_eq!(rows[1].ref_logprob, None);
        assert_eq!(group_by_prompt(&rows), vec![vec![0, 1]]);
        std::fs::write(
            &p,
            "{\"prompt_id\":\"a\",\"prompt\":\"q\",\"response\":\"r\",\"logprob\":\"x\"}\n",
        )
        .unwrap();
        let msg = read_pool(&p).unwrap_err().to_string();
        assert!(
            msg.ends_with(":1: field `logprob` should be a finite number, found a string"),
            "{msg}"
        );
    }

    #[test]
    fn pool_rows_round_trip_and_leave_out_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pool.jsonl");
        let rows = vec![
            PoolRow {
                prompt_id: "7".into(),
                prompt: "q".into(),
                sample: Some(0),
                response: "r".into(),
                logprob: Some(-1.5),
                logprob_model: Some(-2.0),
                tokens: Some(3),
                finished: Some(true),
                ref_logprob: None,
                gold: None,
            },
            PoolRow {
                prompt_id: "7".into(),
                prompt: "q".into(),
                response: "s".into(),
                gold: Some(1.0),
                ..PoolRow::default()
            },
        ];
        write_pool(&p, &rows).unwrap();
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(
            text,
            "{\"prompt_id\":\"7\",\"prompt\":\"q\",\"sample\":0,\"response\":\"r\",\"logprob\":-1.5,\"logprob_model\":-2.0,\"tokens\":3,\"finished\":true}\n\
             {\"prompt_id\":\"7\",\"prompt\":\"q\",\"response\":\"s\",\"gold\":1.0}\n"
        );
        assert_eq!(read_pool(&p).unwrap(), rows);
        std::fs::write(
            &p,
            "{\"prompt_id\":1,\"prompt\":\"q\",\"response\":\"r\",\"tokens\":-1}\n",
        )
        .unwrap();
        let msg = read_pool(&p).unwrap_err().to_string();
        assert!(
            msg.ends_with(
                "pool.jsonl:1: field `tokens` should be a non-negative integer, found a number"
            ),
            "{msg}"
        );
    }

    #[test]
    fn prompts_have_ids_and_bad_records_name_their_line() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("prompts.jsonl");
        std::fs::write(
            &p,
            "{\"prompt\":\"a\"}\n{\"prompt\":\"b\",\"id\":\"x\"}\n{\"prompt\":\"c\",\"id\":12}\n",
        )
        .unwrap();
        let got: Vec<(String, String)> = read_prompts(&p)
            .unwrap()
            .into_iter()
            .map(|p| (p.id, p.text))
            .collect();
        let want = [("0", "a"), ("x", "b"), ("12", "c")];
        assert_eq!(got, want.map(|(i, t)| (i.to_string(), t.to_string())));
        for (body, error) in [
            (
                "{\"prompt\":\"a\"}\n{\"id\":1}\n",
                "prompts.jsonl:2: missing field `prompt`",
            ),
            (
                "{\"prompt\":[1]}\n",
                "prompts.jsonl:1: field `prompt` should be a string, found an array",
            ),
            (
                "{\"prompt\":\"a\",\"id\":true}\n",
                "prompts.jsonl:1: field `id` should be a string or a number, found a boolean",
            ),
        ] {
            std::fs::write(&p, body).unwrap();
            let msg = read_prompts(&p).unwrap_err().to_string();
            assert!(msg.ends_with(error), "{msg}");
        }
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(read_prompts(&p), Err(DataError::Empty { .. })));
    }

    #[test]
    fn gold_from_answers_and_scores_grouped_by_prompt() {
        let row = |id: &str, prompt: &str, response: &str, lp: Option<f64>| PoolRow {
            prompt_id: id.into(),
            prompt: prompt.into(),
            response: response.into(),
            logprob: lp,
            ref_logprob: lp.map(|x| x - 1.0),
            ..PoolRow::default()
        };
        let rows = vec![
            row("a", "q1", "so #### 4", Some(-1.0)),
            row("b", "q2", "it is 7", Some(-2.0)),
            row("a", "q1", "#### 5", Some(-3.0)),
        ];
        let answers: HashMap<String, String> = [("q1", "4"), ("q2", "7")]
            .map(|(q, a)| (q.into(), a.into()))
            .into();
        assert_eq!(gsm8k_gold(&rows, &answers), Ok(vec![1.0, 1.0, 0.0]));
        let partial: HashMap<String, String> = [("q1".to_string(), "4".to_string())].into();
        assert_eq!(gsm8k_gold(&rows, &partial), Err("q2"));

        let groups = group_by_prompt(&rows);
        assert_eq!(groups, vec![vec![0, 2], vec![1]]);
        let pool = pool_scores(&rows, &groups, &[vec![0.1, 0.2, 0.3]], &[1.0, 1.0, 0.0]);
        assert_eq!(pool.prompts[0].members, vec![vec![0.1, 0.3]]);
        assert_eq!(pool.prompts[0].gold, vec![1.0, 0.0]);
        assert_eq!(pool.prompts[0].ref_logp, Some(vec![-2.0, -4.0]));
        let mut no_lp = rows.clone();
        no_lp[1].ref_logprob = None;
        assert!(has_logprobs(&rows) && !has_logprobs(&no_lp));
        assert_eq!(
            pool_scores(&no_lp, &groups, &[vec![0.0; 3]], &[0.0; 3]).prompts[1].logp,
            None
        );

        let numbered = numbered_rows(&rows, &groups);
        let samples: Vec<Option<usize>> = numbered.iter().map(|r| r.sample).collect();
        assert_eq!(samples, [Some(0), Some(1), Some(0)]);
        assert_eq!(numbered[1].response, "#### 5");
        let (held, train) = split_prompts(&rows, 1.0, 0);
        assert_eq!((held.len(), train.len()), (2, 0));
    }

    #[test]
    fn gold_pairs_prefer_the_better_sample() {
        let row = |id: &str, r: &str, gold: Option<f64>| PoolRow {
            prompt_id: id.into(),
            prompt: format!("q{id}"),
            response: r.into(),
            gold,
            ..PoolRow::default()
        };
        let rows = vec![
            row("a", "right", Some(1.0)),
            row("a", "wrong", Some(0.0)),
            row("a", "also wrong", Some(0.0)),
            row("a", "unknown", None),
            row("b", "x", Some(1.0)),
            row("b", "y", Some(1.0)),
        ];
        let pairs = gold_pairs(&rows, &group_by_prompt(&rows));
        assert_eq!(pairs.len(), 2);
        assert!(pairs.iter().all(|p| p.chosen == "right".into()));
        assert_eq!(pairs[1].rejected, "also wrong".into());
        let held: usize = (0..1000)
            .filter(|i| held_out(&i.to_string(), 0.3, 7))
            .count();
        assert!((250..350).contains(&held), "{held}");
        assert_eq!(held_out("x", 0.3, 7), held_out("x", 0.3, 7));
    }
}
