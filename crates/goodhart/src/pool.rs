//! Pools of policy samples for best-of-n: reading them, and checkable gold quality on GSM8K.
//!
//! Two layouts are read, recognised by their fields:
//! - **`rewardkit generate` output**: one row per sample, `{prompt_id, prompt, sample, response,
//!   logprob, logprob_model, ref_logprob?}` (and optionally `gold`);
//! - **GSM8K `example_model_solutions.jsonl`**: one row per question, `{question, ground_truth,
//!   <model>: {solution, is_correct}, …}`; each model's solution becomes a sample whose gold is
//!   its `is_correct` label (real model solutions, labelled by the GSM8K authors).
//!
//! A malformed row is an error naming its file and line.

use std::collections::HashMap;
use std::path::Path;

use rewardkit_data::{for_each_record, DataError, RowError, RowErrorKind};
use serde_json::{Map, Value};

/// One sample of a pool.
#[derive(Debug, Clone, PartialEq)]
pub struct PoolRow {
    pub prompt_id: String,
    pub prompt: String,
    pub response: String,
    /// log π(y|x) under the distribution the sample was drawn from.
    pub logprob: Option<f64>,
    /// log π_ref(y|x) under a reference model (for a KL penalty).
    pub ref_logprob: Option<f64>,
    /// Gold quality when the pool carries it (GSM8K solutions: 1 correct, 0 not).
    pub gold: Option<f64>,
}

fn string(obj: &Map<String, Value>, field: &str) -> Result<String, RowErrorKind> {
    match obj.get(field) {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Number(n)) => Ok(n.to_string()),
        Some(v) => Err(RowErrorKind::WrongType {
            field: field.into(),
            expected: "a string",
            found: rewardkit_data::json_type(v).into(),
        }),
        None => Err(RowErrorKind::MissingField(field.into())),
    }
}

fn number(obj: &Map<String, Value>, field: &str) -> Result<Option<f64>, RowErrorKind> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => match v.as_f64().filter(|x| x.is_finite()) {
            Some(x) => Ok(Some(x)),
            None => Err(RowErrorKind::WrongType {
                field: field.into(),
                expected: "a finite number",
                found: rewardkit_data::json_type(v).into(),
            }),
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
                logprob: None,
                ref_logprob: None,
                gold: Some(if correct { 1.0 } else { 0.0 }),
            });
        }
        return Ok(());
    }
    out.push(PoolRow {
        prompt_id: string(obj, "prompt_id")?,
        prompt: string(obj, "prompt")?,
        response: string(obj, "response")?,
        logprob: number(obj, "logprob")?,
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
    fn gold_pairs_prefer_the_better_sample() {
        let row = |id: &str, r: &str, gold: Option<f64>| PoolRow {
            prompt_id: id.into(),
            prompt: format!("q{id}"),
            response: r.into(),
            logprob: None,
            ref_logprob: None,
            gold,
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
