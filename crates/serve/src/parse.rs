//! Request bodies → typed requests, with errors that name the field and the item: invalid
//! JSON is `invalid_json` (400); JSON of the wrong shape, non-UTF-8 text, empty or too many
//! items are `validation` (422), e.g. `items[3].response: field `response` should be a string
//! or a list of {role, content} messages, found number`.

use serde_json::{Map, Value};

use rewardkit_data::{text_field, Text};

use crate::error::{ErrorKind, ServeError};

/// The body as JSON. Bytes that are not UTF-8 are a validation error naming the first string
/// that holds them (read with replacement characters to find it) and the byte offset.
pub fn json_body(body: &[u8]) -> Result<Value, ServeError> {
    if let Err(e) = std::str::from_utf8(body) {
        let at = e.valid_up_to();
        let lossy = String::from_utf8_lossy(body);
        let place = serde_json::from_str::<Value>(&lossy)
            .ok()
            .and_then(|v| replaced_path(&v, String::new()))
            .map_or_else(String::new, |p| format!("{p}: "));
        return Err(ServeError::validation(format!(
            "{place}the body is not valid UTF-8 (byte {at})"
        )));
    }
    serde_json::from_slice(body)
        .map_err(|e| ServeError::new(ErrorKind::InvalidJson, format!("invalid JSON: {e}")))
}

/// The path (`items[2].response`) of the first string holding U+FFFD.
fn replaced_path(v: &Value, path: String) -> Option<String> {
    match v {
        Value::String(s) if s.contains('\u{FFFD}') => Some(path),
        Value::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, x)| replaced_path(x, format!("{path}[{i}]"))),
        Value::Object(o) => o.iter().find_map(|(k, x)| {
            let p = if path.is_empty() {
                k.clone()
            } else {
                format!("{path}.{k}")
            };
            replaced_path(x, p)
        }),
        _ => None,
    }
}

/// The body's top-level object; with `allowed`, other keys are refused.
pub fn object<'a>(
    v: &'a Value,
    allowed: Option<&[&str]>,
) -> Result<&'a Map<String, Value>, ServeError> {
    let obj = v.as_object().ok_or_else(|| {
        ServeError::validation(format!(
            "the body should be a JSON object, found {}",
            type_name(v)
        ))
    })?;
    if let Some(allowed) = allowed {
        if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ServeError::validation(format!(
                "unknown field `{k}` (expected one of: {})",
                allowed.join(", ")
            )));
        }
    }
    Ok(obj)
}

pub fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// `field` as a non-empty array of at most `max` elements.
pub fn array<'a>(
    obj: &'a Map<String, Value>,
    field: &str,
    max: usize,
) -> Result<&'a [Value], ServeError> {
    let v = obj
        .get(field)
        .ok_or_else(|| ServeError::validation(format!("missing field `{field}`")))?;
    let a = v.as_array().ok_or_else(|| {
        ServeError::validation(format!(
            "`{field}` should be an array, found {}",
            type_name(v)
        ))
    })?;
    check_count(field, a.len(), max)?;
    Ok(a)
}

/// Empty and over-`max` batches are refused.
pub fn check_count(field: &str, n: usize, max: usize) -> Result<(), ServeError> {
    if n == 0 {
        return Err(ServeError::validation(format!("`{field}` is empty")));
    }
    if n > max {
        return Err(ServeError::validation(format!(
            "`{field}` has {n} items, more than --max-client-batch {max}"
        )));
    }
    Ok(())
}

/// An optional boolean field.
pub fn flag(obj: &Map<String, Value>, field: &str) -> Result<Option<bool>, ServeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(v) => Err(ServeError::validation(format!(
            "`{field}` should be a boolean, found {}",
            type_name(v)
        ))),
    }
}

/// `field[i]` as a string.
pub fn string<'a>(v: &'a Value, field: &str, i: usize) -> Result<&'a str, ServeError> {
    v.as_str().ok_or_else(|| {
        ServeError::validation(format!(
            "{field}[{i}] should be a string, found {}",
            type_name(v)
        ))
    })
}

/// An optional array of strings, each at its index.
pub fn strings(obj: &Map<String, Value>, field: &str) -> Result<Option<Vec<String>>, ServeError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| string(v, field, i).map(str::to_owned))
            .collect::<Result<Vec<_>, _>>()
            .map(Some),
        Some(v) => Err(ServeError::validation(format!(
            "`{field}` should be an array of strings, found {}",
            type_name(v)
        ))),
    }
}

/// A `/v1/score` body: its items and `return_members`.
pub fn score_request(v: &Value, max_items: usize) -> Result<(Vec<(Text, Text)>, bool), ServeError> {
    let obj = object(v, Some(&["items", "return_members"]))?;
    let items = array(obj, "items", max_items)?
        .iter()
        .enumerate()
        .map(|(i, v)| score_item(v, i))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((items, flag(obj, "return_members")?.unwrap_or(false)))
}

/// One `{prompt?, response}` item of `/v1/score`.
pub fn score_item(v: &Value, i: usize) -> Result<(Text, Text), ServeError> {
    let at = |msg: String| ServeError::validation(format!("items[{i}]: {msg}"));
    let obj = v
        .as_object()
        .ok_or_else(|| at(format!("should be an object, found {}", type_name(v))))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["prompt", "response"].contains(&k.as_str()))
    {
        return Err(at(format!(
            "unknown field `{k}` (expected prompt, response)"
        )));
    }
    let prompt = text_field(obj, "prompt", false).map_err(|e| at(e.to_string()))?;
    let response = text_field(obj, "response", true).map_err(|e| at(e.to_string()))?;
    Ok((prompt, response))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Whatever the bytes, the readers answer Ok or a client error; they never panic.
    fn read(bytes: &[u8]) -> Result<(), ServeError> {
        let v = json_body(bytes)?;
        score_request(&v, 4).map(|_| ())
    }

    proptest! {
        #[test]
        fn any_bytes_are_read_or_refused(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Err(e) = read(&bytes) {
                prop_assert!(matches!(e.kind, ErrorKind::InvalidJson | ErrorKind::Validation), "{e:?}");
            }
        }

        #[test]
        fn json_like_text_is_read_or_refused(text in r#"[\[\]{}",: 0-9a-z\\]{0,80}"#) {
            let body = format!(r#"{{"items": [{text}]}}"#);
            if let Err(e) = read(body.as_bytes()) {
                prop_assert!(matches!(e.kind, ErrorKind::InvalidJson | ErrorKind::Validation), "{e:?}");
                prop_assert!(!e.message.is_empty());
            }
        }
    }

    #[test]
    fn messages_and_strings_are_both_texts() {
        let v: Value = serde_json::from_str(
            r#"{"items": [{"prompt": [{"role": "user", "content": "Hi"}], "response": "Hello"}, {"response": "x"}], "return_members": true}"#,
        )
        .unwrap();
        let (items, members) = score_request(&v, 4).unwrap();
        assert!(members);
        assert_eq!(items.len(), 2);
        assert!(matches!(&items[0].0, Text::Chat(m) if m[0].content == "Hi"));
        assert_eq!(items[1].0, Text::Plain(String::new()));
    }
}
