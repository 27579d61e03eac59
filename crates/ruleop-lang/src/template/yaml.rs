//! Placeholder tokens and the YAML tree they are resolved in: rendered text holds only the
//! rule author's text and tokens; values are inserted into the parsed tree, never its text.

use crate::yaml::granit::{Event, Parser, ScalarStyle};
use minijinja::value::{Value, ValueKind};
use serde_json::{Map, Value as Json};

use super::{TemplateError, to_json};

/// Opens a placeholder token.
pub(super) const OPEN: char = '\u{E000}';
/// Closes a placeholder token.
pub(super) const CLOSE: char = '\u{E001}';

/// The text form of a value spliced into a longer string.
pub(super) fn as_text(value: &Value) -> String {
    match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        ValueKind::Undefined | ValueKind::None => String::new(),
        ValueKind::Bool | ValueKind::Number => value.to_string(),
        _ => to_json(value).to_string(),
    }
}

/// Replaces every token in `text` by the text of its value.
pub(super) fn splice(text: &str, slots: &[Value]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len_utf8()..];
        match after.find(CLOSE) {
            Some(end) => {
                if let Some(v) = after[..end]
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| slots.get(i))
                {
                    out.push_str(&as_text(v));
                }
                rest = &after[end + CLOSE.len_utf8()..];
            }
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The slot a scalar refers to when it is exactly one token.
fn whole_token(text: &str) -> Option<usize> {
    text.strip_prefix(OPEN)?.strip_suffix(CLOSE)?.parse().ok()
}

pub(super) fn kind_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "nothing",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

/// The YAML structure of one rendered text, its scalars kept raw: the same text resolves
/// with any slot values, so a text rendered again (the same template taking the same
/// branches, for another parent or the same one) is parsed once ([`super::shape`]).
#[derive(Debug)]
pub(super) enum Node {
    /// A mapping: each key as written (tokens resolved as text), its line, its value.
    Map(Vec<(String, usize, Node)>),
    /// A sequence.
    Seq(Vec<Node>),
    /// A plain scalar without tokens: its value does not depend on the slots.
    Fixed(Json),
    /// A scalar holding tokens, with whether it is plain.
    Scalar(String, bool),
}

enum Building {
    Map(Vec<(String, usize, Node)>, Option<(String, usize)>),
    Seq(Vec<Node>),
}

/// Parses one YAML document of rendered text into its [`Node`] tree.
pub(super) fn parse_shape(text: &str) -> Result<Node, TemplateError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Building> = Vec::new();
    let mut root: Option<Node> = None;
    let mut documents = 0;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| TemplateError::Yaml {
            line: e.marker().line(),
            message: crate::yaml::syntax_message(&e),
        })?;
        let line = span.start.line();
        let err = |message: String| TemplateError::Yaml { line, message };
        let value = match event {
            Event::DocumentStart(..) => {
                documents += 1;
                if documents > 1 {
                    return Err(err("a child must render exactly one YAML document".into()));
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(err("YAML aliases are not supported in manifests".into()));
            }
            Event::MappingStart(..) => {
                stack.push(Building::Map(Vec::new(), None));
                continue;
            }
            Event::SequenceStart(..) => {
                stack.push(Building::Seq(Vec::new()));
                continue;
            }
            Event::MappingEnd => match stack.pop() {
                Some(Building::Map(map, _)) => Node::Map(map),
                _ => return Err(err("unbalanced mapping".into())),
            },
            Event::SequenceEnd => match stack.pop() {
                Some(Building::Seq(seq)) => Node::Seq(seq),
                _ => return Err(err("unbalanced sequence".into())),
            },
            Event::Scalar(raw, style, _, tag) => {
                if tag.is_some() {
                    return Err(err("YAML tags are not supported in manifests".into()));
                }
                // A key is always text.
                if let Some(Building::Map(_, key @ None)) = stack.last_mut() {
                    *key = Some((raw.into_owned(), line));
                    continue;
                }
                let plain_style = style == ScalarStyle::Plain;
                if plain_style && !raw.contains(OPEN) {
                    Node::Fixed(plain(&raw))
                } else if !raw.contains(OPEN) {
                    Node::Fixed(Json::String(raw.into_owned()))
                } else {
                    Node::Scalar(raw.into_owned(), plain_style)
                }
            }
            _ => continue,
        };
        match stack.last_mut() {
            Some(Building::Map(map, key)) => {
                let (key, key_line) = key.take().unwrap_or((String::new(), line));
                map.push((key, key_line, value));
            }
            Some(Building::Seq(seq)) => seq.push(value),
            None => root = Some(value),
        }
    }
    Ok(root.unwrap_or(Node::Fixed(Json::Null)))
}

/// Builds the JSON of a parsed rendering with this render's slot values.
pub(super) fn resolve(node: &Node, slots: &[Value]) -> Result<Json, TemplateError> {
    Ok(match node {
        Node::Fixed(value) => value.clone(),
        Node::Scalar(raw, plain_style) => {
            let style = if *plain_style {
                ScalarStyle::Plain
            } else {
                ScalarStyle::DoubleQuoted
            };
            scalar(raw, style, slots)
        }
        Node::Seq(items) => Json::Array(
            items
                .iter()
                .map(|n| resolve(n, slots))
                .collect::<Result<_, _>>()?,
        ),
        Node::Map(entries) => {
            let mut map = Map::new();
            for (raw, line, value) in entries {
                let key = if raw.contains(OPEN) {
                    splice(raw, slots)
                } else {
                    raw.clone()
                };
                let value = resolve(value, slots)?;
                if let Some(key) = insert_new(&mut map, key, value) {
                    return Err(TemplateError::Yaml {
                        line: *line,
                        message: format!("duplicate key {key:?}"),
                    });
                }
            }
            Json::Object(map)
        }
    })
}

/// Inserts `key` unless present; returns it back when it was already there.
fn insert_new(map: &mut Map<String, Json>, key: String, value: Json) -> Option<String> {
    match map.entry(key) {
        serde_json::map::Entry::Occupied(o) => Some(o.key().clone()),
        serde_json::map::Entry::Vacant(v) => {
            v.insert(value);
            None
        }
    }
}

/// Resolves one scalar: typed when plain (YAML 1.2 core schema), text when quoted or block.
fn scalar(raw: &str, style: ScalarStyle, slots: &[Value]) -> Json {
    if style == ScalarStyle::Plain {
        if let Some(value) = whole_token(raw).and_then(|i| slots.get(i)) {
            return to_json(value);
        }
        if !raw.contains(OPEN) {
            return plain(raw);
        }
    } else if let Some(value) = whole_token(raw).and_then(|i| slots.get(i)) {
        // A quoted interpolation is a string, whatever the value's type.
        return Json::String(as_text(value));
    }
    Json::String(splice(raw, slots))
}

/// The YAML 1.2 core schema for plain scalars.
pub(super) fn plain(raw: &str) -> Json {
    match raw {
        "" | "~" | "null" | "Null" | "NULL" => return Json::Null,
        "true" | "True" | "TRUE" => return Json::Bool(true),
        "false" | "False" | "FALSE" => return Json::Bool(false),
        _ => {}
    }
    if let Ok(i) = raw.parse::<i64>() {
        return Json::from(i);
    }
    if let Some(hex) = raw.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Json::from(i);
    }
    if let Some(oct) = raw.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Json::from(i);
    }
    let looks_numeric = raw
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && raw.chars().any(|c| c.is_ascii_digit());
    if looks_numeric
        && let Some(n) = raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
    {
        return Json::Number(n);
    }
    Json::String(raw.to_string())
}
