//! What a value must be to pass a schema's `type` and `format` (as the API server decodes it).

use serde_json::Value as Json;

/// Whether `value` is of the schema type `expected` (unknown types pass).
pub(super) fn type_ok(expected: &str, value: &Json) -> bool {
    match expected {
        "object" => value.is_object(),
        "array" => value.is_array(),
        "string" => value.is_string(),
        "boolean" => value.is_boolean(),
        "integer" => is_integer(value),
        "number" => value.is_number(),
        _ => true,
    }
}

/// Integers, and floats without a fractional part (YAML `3.0`), which decode as integers.
pub(super) fn is_integer(value: &Json) -> bool {
    value.is_i64() || value.is_u64() || value.as_f64().is_some_and(|f| f.fract() == 0.0)
}

pub(super) fn format_ok(format: &str, text: &str) -> bool {
    match format {
        "byte" => is_base64(text),
        "date-time" => text.parse::<jiff::Timestamp>().is_ok(),
        _ => true,
    }
}

/// Standard base64 with padding (line breaks ignored), as Go decodes `[]byte` fields.
fn is_base64(text: &str) -> bool {
    let bytes: Vec<u8> = text
        .bytes()
        .filter(|b| !matches!(b, b'\r' | b'\n'))
        .collect();
    if !bytes.len().is_multiple_of(4) {
        return false;
    }
    let padding = bytes.iter().rev().take_while(|&&b| b == b'=').count();
    padding <= 2
        && bytes[..bytes.len() - padding]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}
