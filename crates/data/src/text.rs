//! Plain-text helpers shared by the probes' edits and the audit's features.

/// Sentences: split after `.`, `!` or `?` followed by whitespace (or the end) and at line
/// breaks, trimmed; pieces without a letter or digit are dropped.
pub fn sentences(text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    let mut start = 0;
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let end = match c {
            '\n' => i,
            '.' | '!' | '?' if chars.peek().is_none_or(|&(_, next)| next.is_whitespace()) => {
                i + c.len_utf8()
            }
            _ => continue,
        };
        pieces.push(&text[start..end]);
        start = i + c.len_utf8();
    }
    pieces.push(&text[start..]);
    pieces
        .into_iter()
        .map(str::trim)
        .filter(|s| s.chars().any(char::is_alphanumeric))
        .collect()
}
