//! The NUL character (`\u0000`): valid in JSON and in Rust strings, refused by PostgreSQL's
//! `text`. Every string that may reach the database is checked at the edge, so a NUL is a 422
//! naming the field (HTTP) or a dead letter naming it (messages), never a 500 or a retry loop.
//!
//! - [`find_in_json`]: the path of the first string or key holding a NUL in a JSON value,
//!   spelt as `serde_path_to_error` spells a field (`items[0].product_id`).
//! - [`may_hold_nul`]: a cheap test of the raw JSON bytes, so bodies without the escape (all
//!   real ones) are not walked at all.

use serde_json::Value;

/// What a field holding a NUL is told.
pub const NUL_RULE: &str = "must not contain the NUL character (\\u0000)";

/// Whether `text` holds a NUL.
pub fn has_nul(text: &str) -> bool {
    text.contains('\0')
}

/// Whether JSON text `bytes` may decode to a string holding a NUL. JSON cannot carry a raw NUL
/// inside a string (control characters must be escaped), so only the escape `\u0000` can make
/// one; `false` is certain, `true` means "walk the value".
pub fn may_hold_nul(bytes: &[u8]) -> bool {
    bytes.windows(6).any(|w| w.eq_ignore_ascii_case(b"\\u0000"))
}

/// The path of the first string or object key holding a NUL in `value`, depth first in
/// document order; `None` when there is none. The document itself is `.`.
pub fn find_in_json(value: &Value) -> Option<String> {
    let mut path = String::new();
    walk(value, &mut path).then(|| if path.is_empty() { ".".into() } else { path })
}

fn walk(value: &Value, path: &mut String) -> bool {
    let mark = path.len();
    match value {
        Value::String(text) => has_nul(text),
        Value::Array(items) => items.iter().enumerate().any(|(index, item)| {
            path.truncate(mark);
            path.push_str(&format!("[{index}]"));
            walk(item, path)
        }),
        Value::Object(fields) => fields.iter().any(|(key, field)| {
            path.truncate(mark);
            if !path.is_empty() {
                path.push('.');
            }
            // A NUL in the key itself: named with the NUL shown as its escape.
            path.push_str(&key.replace('\0', "\\u0000"));
            has_nul(key) || walk(field, path)
        }),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn the_first_nul_is_named_by_its_path() {
        let body =
            json!({"customer_id": "c", "items": [{"product_id": "p"}, {"product_id": "p\u{0}"}]});
        assert_eq!(find_in_json(&body).as_deref(), Some("items[1].product_id"));
        assert_eq!(
            find_in_json(&json!({"a\u{0}b": 1})).as_deref(),
            Some("a\\u0000b")
        );
        assert_eq!(find_in_json(&json!("\u{0}")).as_deref(), Some("."));
        assert_eq!(find_in_json(&json!({"a": ["x", {"b": null}]})), None);
    }

    #[test]
    fn only_the_escape_can_put_a_nul_in_json_text() {
        assert!(may_hold_nul(br#"{"a":"c\u0000x"}"#));
        assert!(!may_hold_nul(br#"{"a":"c\u0001x"}"#));
        let parsed: Value = serde_json::from_slice(br#"{"a":"c\u0000x"}"#).unwrap();
        assert_eq!(find_in_json(&parsed).as_deref(), Some("a"));
    }
}
