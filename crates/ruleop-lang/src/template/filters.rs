//! Helm-style filters for templates and expressions: `sha256`, `b64encode`/`b64decode`,
//! `toyaml`, `fromjson`/`fromyaml`, and the `product` function for nested collections. Each
//! returns a plain value, so interpolation inserts it like any other value (never YAML text).

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind};
use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::template::{from_json, to_json};

/// Adds the filters to `env`.
pub fn register(env: &mut Environment<'static>) {
    env.add_filter("sha256", sha256);
    env.add_filter("b64encode", b64encode);
    env.add_filter("b64decode", b64decode);
    env.add_filter("toyaml", toyaml);
    env.add_filter("fromjson", fromjson);
    env.add_filter("fromyaml", fromyaml);
    env.add_function("product", product);
}

/// The most pairs `product` builds (a runaway list would exhaust memory before fuel).
const MAX_PRODUCT: usize = 10_000;

/// Every pair `[a, b]` of an item of `first` and one of `second`, in order: one collection
/// item per (ordinal, claim template), for example.
fn product(first: Value, second: Value) -> Result<Value, Error> {
    let list = |v: &Value| -> Result<Vec<Value>, Error> {
        if v.is_undefined() || v.is_none() {
            return Ok(Vec::new());
        }
        Ok(v.try_iter()?.collect())
    };
    let (a, b) = (list(&first)?, list(&second)?);
    if a.len().saturating_mul(b.len()) > MAX_PRODUCT {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("product: more than {MAX_PRODUCT} pairs"),
        ));
    }
    let pairs: Vec<Value> = a
        .iter()
        .flat_map(|x| {
            b.iter()
                .map(move |y| Value::from(vec![x.clone(), y.clone()]))
        })
        .collect();
    Ok(Value::from(pairs))
}

/// The text a filter works on: a string as it is, anything else as compact JSON with sorted
/// keys (so a map hashes the same whatever order its keys were written in).
fn text_of(value: &Value) -> Result<String, Error> {
    match value.kind() {
        ValueKind::String => Ok(value.as_str().unwrap_or_default().to_string()),
        ValueKind::Undefined => Err(Error::new(
            ErrorKind::UndefinedError,
            "the filter's input is undefined (use `| default(...)` for optional fields)",
        )),
        _ => Ok(sorted(to_json(value)).to_string()),
    }
}

/// `value` with every map's keys in sorted order.
fn sorted(value: Json) -> Json {
    match value {
        Json::Object(map) => {
            let mut entries: Vec<(String, Json)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Json::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Json::Array(items) => Json::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Hex sha256 of the value's text: the "roll the Deployment when its config changes" idiom.
fn sha256(value: &Value) -> Result<Value, Error> {
    let digest = Sha256::digest(text_of(value)?.as_bytes());
    Ok(Value::from(
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
    ))
}

const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard base64 (with padding) of the value's text, e.g. for Secret `data`.
fn b64encode(value: &Value) -> Result<Value, Error> {
    Ok(Value::from(encode(text_of(value)?.as_bytes())))
}

/// Decodes standard base64 into text; fails on bad input or bytes that are not UTF-8.
fn b64decode(value: &Value) -> Result<Value, Error> {
    let text = text_of(value)?;
    let bytes = decode(&text).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            "b64decode: the input is not valid base64",
        )
    })?;
    String::from_utf8(bytes).map(Value::from).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            "b64decode: the decoded bytes are not UTF-8 text",
        )
    })
}

/// Base64-encodes bytes.
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(B64[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Decodes standard base64 (padding optional, whitespace ignored).
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let digits: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let digits = digits
        .strip_suffix(b"==")
        .or_else(|| digits.strip_suffix(b"="))
        .unwrap_or(&digits);
    if digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut n = 0u32;
        for (i, d) in chunk.iter().enumerate() {
            let v = B64.iter().position(|c| c == d)?;
            n |= (v as u32) << (18 - 6 * i);
        }
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..chunk.len() - 1]);
    }
    Some(out)
}

/// YAML text of a value (a string value; insert it quoted or as a block scalar).
fn toyaml(value: &Value) -> Result<Value, Error> {
    if value.is_undefined() {
        return Err(Error::new(
            ErrorKind::UndefinedError,
            "toyaml: the input is undefined",
        ));
    }
    Ok(Value::from(crate::yaml::to_string(&to_json(value))))
}

/// Parses JSON text into a value.
fn fromjson(text: &str) -> Result<Value, Error> {
    serde_json::from_str::<Json>(text)
        .map(|j| from_json(&j))
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("fromjson: {e}")))
}

/// Parses YAML text (one document) into a value.
fn fromyaml(text: &str) -> Result<Value, Error> {
    crate::yaml::from_str::<Json>(text)
        .map(|j| from_json(&j))
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("fromyaml: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
            ("user:päss", "dXNlcjpww6Rzcw=="),
        ] {
            assert_eq!(encode(plain.as_bytes()), coded);
            assert_eq!(decode(coded).unwrap(), plain.as_bytes());
        }
        assert_eq!(decode("Zm9v\nYmFy").unwrap(), b"foobar");
        assert!(decode("Z").is_none());
        assert!(decode("Zm9*").is_none());
    }

    #[test]
    fn product_pairs_every_item() {
        let pairs = product(
            from_json(&serde_json::json!([0, 1])),
            from_json(&serde_json::json!(["data", "logs"])),
        )
        .unwrap();
        assert_eq!(
            to_json(&pairs),
            serde_json::json!([[0, "data"], [0, "logs"], [1, "data"], [1, "logs"]])
        );
        assert_eq!(
            to_json(&product(Value::UNDEFINED, Value::from(vec![1])).unwrap()),
            serde_json::json!([])
        );
        let big: Vec<i64> = (0..101).collect();
        assert!(product(Value::from(big.clone()), Value::from(big)).is_err());
    }

    #[test]
    fn maps_hash_the_same_in_any_key_order() {
        let a = from_json(&serde_json::json!({"a": 1, "b": {"y": 2, "x": 1}}));
        let b = from_json(&serde_json::json!({"b": {"x": 1, "y": 2}, "a": 1}));
        assert_eq!(sha256(&a).unwrap(), sha256(&b).unwrap());
        assert_eq!(
            sha256(&Value::from("abc")).unwrap().as_str(),
            Some("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert!(sha256(&Value::UNDEFINED).is_err());
    }
}
