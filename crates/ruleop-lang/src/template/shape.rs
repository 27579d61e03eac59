//! Parsed renderings by rendered text: a template rendered again into the same text (same
//! branches taken; values live in slots, not in the text) is not parsed as YAML again.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use minijinja::Value;
use serde_json::Value as Json;

use super::TemplateError;
use super::yaml::{Node, parse_shape, resolve};

/// Distinct texts kept per template: a template whose branches depend on the parent (a
/// loop over `spec.replicas`) renders a few texts; more than this and the oldest go.
const TEXTS_PER_TEMPLATE: usize = 32;

/// The parsed renderings of a rule's templates. The key is the whole rendered text, so an
/// entry can never be stale; it lives in the compiled rule, so a reloaded rule starts empty.
#[derive(Default)]
pub(super) struct Shapes(Mutex<HashMap<String, HashMap<String, Arc<Node>>>>);

impl Shapes {
    /// The JSON of template `name`'s rendered `text` with `slots`, parsing `text` only the
    /// first time it is seen. Texts that fail to parse are not kept (the error is rebuilt).
    pub(super) fn resolve(
        &self,
        name: &str,
        text: &str,
        slots: &[Value],
    ) -> Result<Json, TemplateError> {
        let known = self
            .lock()
            .get(name)
            .and_then(|texts| texts.get(text).cloned());
        let node = match known {
            Some(node) => node,
            None => {
                let node = Arc::new(parse_shape(text)?);
                let mut all = self.lock();
                let texts = all.entry(name.to_string()).or_default();
                if texts.len() >= TEXTS_PER_TEMPLATE {
                    texts.clear();
                }
                texts.insert(text.to_string(), Arc::clone(&node));
                node
            }
        };
        resolve(&node, slots)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Arc<Node>>>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_same_text_resolves_with_each_renders_values() {
        let shapes = Shapes::default();
        let text = "a: \u{E000}0\u{E001}\nb: [x, \"\u{E000}1\u{E001}\"]\n";
        let first = shapes
            .resolve("t", text, &[Value::from(1), Value::from(2)])
            .unwrap();
        let second = shapes
            .resolve("t", text, &[Value::from("s"), Value::from(7)])
            .unwrap();
        assert_eq!(first, json!({"a": 1, "b": ["x", "2"]}));
        assert_eq!(second, json!({"a": "s", "b": ["x", "7"]}));
        assert_eq!(shapes.lock()["t"].len(), 1, "parsed once");
    }

    #[test]
    fn keys_made_equal_by_values_are_still_duplicates() {
        let shapes = Shapes::default();
        let text = "\u{E000}0\u{E001}: 1\nk: 2\n";
        assert!(shapes.resolve("t", text, &[Value::from("j")]).is_ok());
        let err = shapes.resolve("t", text, &[Value::from("k")]).unwrap_err();
        assert!(err.to_string().contains("duplicate key"), "{err}");
    }

    #[test]
    fn bad_text_is_not_kept_and_the_cache_is_bounded() {
        let shapes = Shapes::default();
        assert!(shapes.resolve("t", "a: [", &[]).is_err());
        assert!(shapes.lock().get("t").is_none_or(HashMap::is_empty));
        for i in 0..(TEXTS_PER_TEMPLATE * 2) {
            shapes.resolve("t", &format!("a: {i}"), &[]).unwrap();
        }
        assert!(shapes.lock()["t"].len() <= TEXTS_PER_TEMPLATE);
    }
}
