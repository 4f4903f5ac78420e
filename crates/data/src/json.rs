//! Strict JSON for records: like `serde_json::from_str::<Value>`, but a key given twice in one
//! object is an error naming the key (serde_json keeps the last one silently), and a bare
//! `NaN` or `Infinity` (written by Python's `json.dumps`) is named as such instead of
//! "expected value".

use std::fmt;

use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde::Deserializer;
use serde_json::map::Entry;
use serde_json::{Map, Number, Value};

/// Parses one JSON value strictly. The error is a message without serde_json's
/// "at line L column C" suffix; the column is kept in parentheses.
pub fn parse_value(text: &str) -> Result<Value, String> {
    parse_inner(text).map_err(|e| describe_error(text, &e))
}

fn parse_inner(text: &str) -> Result<Value, serde_json::Error> {
    let mut de = serde_json::Deserializer::from_str(text);
    let value = Strict.deserialize(&mut de)?;
    de.end()?;
    Ok(value)
}

/// A readable message for a serde_json error on `text`: bare non-finite numbers are named,
/// and the position is given as a column.
pub fn describe_error(text: &str, e: &serde_json::Error) -> String {
    if let Some(word) = non_finite_at(text, e.line(), e.column()) {
        return format!(
            "{word} is not valid JSON (column {}); write a number or null",
            e.column()
        );
    }
    let msg = e.to_string();
    match msg.rfind(" at line ") {
        Some(i) => format!("{} (column {})", &msg[..i], e.column()),
        None => msg,
    }
}

/// The non-finite literal (`NaN`, `Infinity`, `-Infinity`) at or just before the 1-based
/// `line`/`column` (a byte column, as serde_json counts) of `text`, if one is there.
fn non_finite_at(text: &str, line: usize, column: usize) -> Option<&'static str> {
    const WORDS: [&str; 6] = ["-Infinity", "+Infinity", "Infinity", "-NaN", "NaN", "nan"];
    let line_start = if line <= 1 {
        0
    } else {
        text.match_indices('\n').nth(line - 2).map(|(i, _)| i + 1)?
    };
    let at = (line_start + column.saturating_sub(1)).min(text.len());
    // serde_json reports the byte it stopped at: the literal starts there, or one or two
    // bytes before (after a sign it consumed).
    (at.saturating_sub(2)..=at)
        .filter(|&i| text.is_char_boundary(i))
        .find_map(|i| WORDS.into_iter().find(|w| text[i..].starts_with(w)))
        .map(|w| w.trim_start_matches('+'))
}

/// Deserializes a [`Value`], refusing duplicate keys.
struct Strict;

impl<'de> DeserializeSeed<'de> for Strict {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        Strict.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(v) = seq.next_element_seed(Strict)? {
            items.push(v);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match out.entry(key) {
                Entry::Occupied(e) => {
                    return Err(A::Error::custom(format!("duplicate key `{}`", e.key())))
                }
                Entry::Vacant(e) => {
                    e.insert(map.next_value_seed(Strict)?);
                }
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_equal_serde_json_s() {
        for text in [
            r#"{"a": [1, -2, 3.5, 1e400, "x", null, true, {"b": {}}], "c": "\u00e9"}"#,
            "[]",
            "  17  ",
            r#""s""#,
        ] {
            let ours = parse_value(text);
            let theirs = serde_json::from_str::<Value>(text).map_err(|e| e.to_string());
            assert_eq!(ours.ok(), theirs.ok(), "{text}");
        }
    }

    #[test]
    fn a_duplicate_key_is_named_even_nested() {
        let e = parse_value(r#"{"chosen": "a", "rejected": "b", "chosen": "c"}"#).unwrap_err();
        assert_eq!(e, "duplicate key `chosen` (column 41)");
        let e = parse_value(r#"{"m": [{"role": "u", "role": "v"}]}"#).unwrap_err();
        assert!(e.starts_with("duplicate key `role`"), "{e}");
    }

    #[test]
    fn non_finite_literals_are_named() {
        for (text, word) in [
            (r#"{"chosen_score": NaN}"#, "NaN"),
            (r#"{"chosen_score": -Infinity}"#, "-Infinity"),
            (r#"{"chosen_score": Infinity}"#, "Infinity"),
            ("[1,\n NaN]", "NaN"),
        ] {
            let e = parse_value(text).unwrap_err();
            assert!(
                e.starts_with(&format!("{word} is not valid JSON")),
                "{text}: {e}"
            );
        }
        // Other syntax errors keep serde_json's message.
        let e = parse_value(r#"{"a": nope}"#).unwrap_err();
        assert!(
            e.starts_with("expected ident") || e.starts_with("expected value"),
            "{e}"
        );
        assert!(parse_value("{} x")
            .unwrap_err()
            .starts_with("trailing characters"));
    }
}
