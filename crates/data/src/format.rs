//! The three preference-data layouts rewardkit reads, how each is recognised, and how one record
//! becomes a [`PreferencePair`].

use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{json_type, RowErrorKind};
use crate::hh::{split_transcripts, Unsplittable};
use crate::types::{Location, Message, PreferencePair, Text};

/// A preference-data layout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Format {
    /// TRL: `{"prompt"?, "chosen", "rejected"}`, each a string or a list of
    /// `{"role", "content"}` messages. Without `prompt`, the messages that chosen and rejected
    /// share at the start become the prompt (TRL's implicit prompt).
    Trl,
    /// Anthropic HH-RLHF: `{"chosen", "rejected"}` whole `\n\nHuman: … \n\nAssistant: …`
    /// transcripts that share everything before the last Assistant turn.
    Hh,
    /// Labelled pairwise with ties (PandaLM): `instruction` (+ `input`) → prompt,
    /// `response1`/`response2`, and votes `annotator*` (or one `label`): 0 = tie, 1, 2. The
    /// majority decides; a majority for 0, or no majority, is a tie.
    Pairwise,
}

impl Format {
    pub const ALL: [Format; 3] = [Format::Trl, Format::Hh, Format::Pairwise];

    pub fn name(self) -> &'static str {
        match self {
            Format::Trl => "trl",
            Format::Hh => "hh",
            Format::Pairwise => "pairwise",
        }
    }

    /// Recognises the layout from the keys of one record, or says why it cannot.
    pub fn detect(obj: &Map<String, Value>) -> Result<Format, String> {
        let has = |k: &str| obj.contains_key(k);
        if has("response1") && has("response2") {
            return Ok(Format::Pairwise);
        }
        if has("chosen") && has("rejected") {
            let is_transcript = matches!(obj.get("chosen"), Some(Value::String(s)) if s.contains(crate::hh::ASSISTANT));
            if !has("prompt") && is_transcript {
                return Ok(Format::Hh);
            }
            return Ok(Format::Trl);
        }
        let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
        keys.sort_unstable();
        Err(format!(
            "first record has keys [{}]; expected chosen/rejected or response1/response2",
            keys.join(", ")
        ))
    }
}

impl std::fmt::Display for Format {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::ALL
            .into_iter()
            .find(|f| f.name() == s)
            .ok_or_else(|| format!("unknown format `{s}` (expected trl, hh or pairwise)"))
    }
}

/// Why a well-formed record did not become a training pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DropReason {
    /// Malformed (only with `skip_invalid`; otherwise it is an error).
    Invalid,
    /// An HH transcript pair that cannot be split into one shared prompt and two responses.
    Unsplittable,
    /// Chosen and rejected are identical.
    NoPreference,
    /// The exact same pair (prompt, chosen, rejected, tie, soft label) was read before.
    Duplicate,
}

impl DropReason {
    /// The name used in JSON output.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Invalid => "invalid",
            DropReason::Unsplittable => "unsplittable",
            DropReason::NoPreference => "no_preference",
            DropReason::Duplicate => "duplicate",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            DropReason::Invalid => "malformed record",
            DropReason::Unsplittable => "HH transcripts not splittable into prompt + responses",
            DropReason::NoPreference => "chosen and rejected identical",
            DropReason::Duplicate => "exact duplicate of an earlier pair",
        }
    }
}

/// What one record turned into.
#[derive(Debug)]
pub(crate) enum Parsed {
    Pair(Box<PreferencePair>),
    Dropped(DropReason, String),
}

/// The field a soft label is read from when no other is named ([`crate::LoadOptions::label_field`]):
/// the probability that `chosen` is the better response, as the AlpacaEval annotations give it.
pub const DEFAULT_LABEL_FIELD: &str = "p_chosen";

/// Parses one record. Values read leniently (a response given as JSON `true` instead of a
/// string, as in PandaLM's test set) are reported in `notes`. `label_field` names the field of
/// a soft label that every record must have (`null` there: a hard label); `None` reads
/// [`DEFAULT_LABEL_FIELD`] where a record has it.
pub(crate) fn parse_record(
    format: Format,
    location: Location,
    obj: &Map<String, Value>,
    label_field: Option<&str>,
    notes: &mut Vec<String>,
) -> Result<Parsed, RowErrorKind> {
    let (prompt, chosen, rejected, tie) = match format {
        Format::Trl => parse_trl(obj)?,
        Format::Hh => {
            let chosen = required_str(obj, "chosen")?;
            let rejected = required_str(obj, "rejected")?;
            match split_transcripts(chosen, rejected) {
                Ok(split) => (
                    Text::Plain(split.prompt),
                    Text::Plain(split.chosen),
                    Text::Plain(split.rejected),
                    false,
                ),
                Err(Unsplittable::Identical) => {
                    return Ok(Parsed::Dropped(
                        DropReason::NoPreference,
                        "chosen and rejected transcripts are identical".into(),
                    ))
                }
                Err(why) => return Ok(Parsed::Dropped(DropReason::Unsplittable, why.to_string())),
            }
        }
        Format::Pairwise => parse_pairwise(obj, notes)?,
    };
    if chosen == rejected {
        return Ok(Parsed::Dropped(
            DropReason::NoPreference,
            "chosen and rejected responses are identical".into(),
        ));
    }
    let mut tie = tie || optional_bool(obj, "tie")?.unwrap_or(false);
    let (mut chosen, mut rejected) = (chosen, rejected);
    let p_chosen = match soft_label(obj, label_field)? {
        Some((field, p)) if tie && p != 0.5 => {
            return Err(RowErrorKind::InvalidValue {
                field: field.to_string(),
                message: format!("the pair is labelled a tie, so its probability is 0.5, not {p}"),
            })
        }
        Some((_, p)) if p == 0.5 => {
            tie = true;
            Some(p)
        }
        Some((field, p)) if p < 0.5 => {
            // `chosen` names the response the label favours.
            std::mem::swap(&mut chosen, &mut rejected);
            notes.push(format!(
                "`{field}` {p} < 0.5: chosen and rejected swapped (probability {})",
                1.0 - p
            ));
            Some(1.0 - p)
        }
        other => other.map(|(_, p)| p),
    };
    let id = match obj.get("id").or_else(|| obj.get("idx")) {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(other) => return Err(wrong_type("id", "a string or number", other)),
    };
    let margin = match obj.get("margin") {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_f64(),
        Some(other) => return Err(wrong_type("margin", "a number", other)),
    };
    let subset = optional_str(obj, "subset")?.map(str::to_string);
    let source = optional_str(obj, "source")?.map(str::to_string);
    Ok(Parsed::Pair(Box::new(PreferencePair {
        id,
        prompt,
        chosen,
        rejected,
        tie,
        p_chosen,
        margin,
        subset,
        source,
        location,
    })))
}

/// The soft label of a record and the field it came from: a number in [0, 1], or `None` for a
/// hard label (`null`, or no [`DEFAULT_LABEL_FIELD`] when no field is named).
fn soft_label<'a>(
    obj: &Map<String, Value>,
    label_field: Option<&'a str>,
) -> Result<Option<(&'a str, f64)>, RowErrorKind> {
    let field = label_field.unwrap_or(DEFAULT_LABEL_FIELD);
    match obj.get(field) {
        None if label_field.is_some() => Err(RowErrorKind::InvalidValue {
            field: field.to_string(),
            message: "missing: the soft-label field named for every record (null for a hard label)"
                .into(),
        }),
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64() {
            Some(p) if (0.0..=1.0).contains(&p) => Ok(Some((field, p))),
            _ => Err(RowErrorKind::InvalidValue {
                field: field.to_string(),
                message: format!(
                    "a probability that chosen is better must be in [0, 1], found {n}"
                ),
            }),
        },
        Some(other) => Err(wrong_type(field, "a probability in [0, 1]", other)),
    }
}

type Parts = (Text, Text, Text, bool);

fn parse_trl(obj: &Map<String, Value>) -> Result<Parts, RowErrorKind> {
    let chosen = required_text(obj, "chosen")?;
    let rejected = required_text(obj, "rejected")?;
    let prompt = match obj.get("prompt") {
        None | Some(Value::Null) => None,
        Some(_) => Some(required_text(obj, "prompt")?),
    };
    match (prompt, chosen, rejected) {
        (Some(p), c, r) => {
            if std::mem::discriminant(&c) != std::mem::discriminant(&r) {
                return Err(RowErrorKind::InvalidValue {
                    field: "rejected".into(),
                    message: "chosen and rejected must both be strings or both message lists"
                        .into(),
                });
            }
            Ok((p, c, r, false))
        }
        (None, Text::Chat(c), Text::Chat(r)) => {
            // TRL's implicit prompt: the messages both conversations share at the start.
            let shared = c.iter().zip(&r).take_while(|(a, b)| a == b).count();
            let prompt = c[..shared].to_vec();
            Ok((
                Text::Chat(prompt),
                Text::Chat(c[shared..].to_vec()),
                Text::Chat(r[shared..].to_vec()),
                false,
            ))
        }
        (None, c @ Text::Plain(_), r @ Text::Plain(_)) => {
            Ok((Text::Plain(String::new()), c, r, false))
        }
        (None, _, _) => Err(RowErrorKind::InvalidValue {
            field: "rejected".into(),
            message: "chosen and rejected must both be strings or both message lists".into(),
        }),
    }
}

fn parse_pairwise(
    obj: &Map<String, Value>,
    notes: &mut Vec<String>,
) -> Result<Parts, RowErrorKind> {
    let instruction = match (obj.get("instruction"), obj.get("prompt")) {
        (None, Some(_)) => required_str(obj, "prompt")?,
        (Some(_), _) => required_str(obj, "instruction")?,
        (None, None) => return Err(RowErrorKind::MissingEither("instruction", "prompt")),
    };
    let input = optional_str(obj, "input")?.unwrap_or("");
    let prompt = if input.trim().is_empty() {
        instruction.to_string()
    } else {
        format!("{instruction}\n\n{input}")
    };
    let r1 = scalar_as_text(obj, "response1", notes)?;
    let r2 = scalar_as_text(obj, "response2", notes)?;
    let mut vote_keys: Vec<&String> = obj
        .keys()
        .filter(|k| {
            k.starts_with("annotator") && k["annotator".len()..].bytes().all(|b| b.is_ascii_digit())
        })
        .collect();
    vote_keys.sort_by_key(|k| (k.len(), k.as_str()));
    if vote_keys.is_empty() {
        if !obj.contains_key("label") {
            return Err(RowErrorKind::MissingEither("annotator1", "label"));
        }
        vote_keys.push(obj.keys().find(|k| *k == "label").expect("checked above"));
    }
    let mut counts = [0usize; 3];
    for key in vote_keys {
        let v = &obj[key];
        match v.as_u64() {
            Some(label @ 0..=2) => counts[label as usize] += 1,
            _ => {
                return Err(RowErrorKind::InvalidValue {
                    field: key.clone(),
                    message: format!("expected 0 (tie), 1 or 2, found {v}"),
                })
            }
        }
    }
    let total: usize = counts.iter().sum();
    let winner = (0..3).find(|&l| counts[l] * 2 > total);
    let (chosen, rejected, tie) = match winner {
        Some(1) => (r1, r2, false),
        Some(2) => (r2, r1, false),
        _ => (r1, r2, true), // majority for a tie, or no majority
    };
    Ok((prompt.into(), chosen.into(), rejected.into(), tie))
}

fn wrong_type(field: &str, expected: &'static str, found: &Value) -> RowErrorKind {
    RowErrorKind::WrongType {
        field: field.to_string(),
        expected,
        found: json_type(found).to_string(),
    }
}

fn required_str<'a>(obj: &'a Map<String, Value>, field: &str) -> Result<&'a str, RowErrorKind> {
    match obj.get(field) {
        None => Err(RowErrorKind::MissingField(field.to_string())),
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

/// A string; a boolean or number is taken as its JSON text (`true`), with a note.
fn scalar_as_text(
    obj: &Map<String, Value>,
    field: &str,
    notes: &mut Vec<String>,
) -> Result<String, RowErrorKind> {
    match obj.get(field) {
        Some(v @ (Value::Bool(_) | Value::Number(_))) => {
            notes.push(format!(
                "field `{field}` is {}, read as the text `{v}`",
                json_type(v)
            ));
            Ok(v.to_string())
        }
        _ => required_str(obj, field).map(str::to_string),
    }
}

fn optional_str<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, RowErrorKind> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong_type(field, "a string", other)),
    }
}

fn optional_bool(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, RowErrorKind> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong_type(field, "a boolean", other)),
    }
}

/// A string, or a list of `{"role", "content"}` messages.
fn required_text(obj: &Map<String, Value>, field: &str) -> Result<Text, RowErrorKind> {
    const EXPECTED: &str = "a string or a list of {role, content} messages";
    match obj.get(field) {
        None => Err(RowErrorKind::MissingField(field.to_string())),
        Some(Value::String(s)) => Ok(Text::Plain(s.clone())),
        Some(Value::Array(items)) => {
            let mut messages = Vec::with_capacity(items.len());
            for (i, item) in items.iter().enumerate() {
                let at = format!("{field}[{i}]");
                let Value::Object(m) = item else {
                    return Err(wrong_type(&at, "a {role, content} message", item));
                };
                let role = required_str(m, "role").map_err(|e| nest(&at, e))?;
                let content = required_str(m, "content").map_err(|e| nest(&at, e))?;
                messages.push(Message {
                    role: role.to_string(),
                    content: content.to_string(),
                });
            }
            Ok(Text::Chat(messages))
        }
        Some(other) => Err(wrong_type(field, EXPECTED, other)),
    }
}

/// Prefixes the field of an error found inside `outer` (`chosen[2].content`).
fn nest(outer: &str, e: RowErrorKind) -> RowErrorKind {
    match e {
        RowErrorKind::MissingField(f) => RowErrorKind::MissingField(format!("{outer}.{f}")),
        RowErrorKind::WrongType {
            field,
            expected,
            found,
        } => RowErrorKind::WrongType {
            field: format!("{outer}.{field}"),
            expected,
            found,
        },
        other => other,
    }
}
