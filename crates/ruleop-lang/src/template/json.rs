//! Template values read in place from shared JSON: a mapping or list becomes a view that
//! converts only the fields a template reads, instead of copying the whole document.

use std::sync::Arc;

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use serde_json::Value as Json;

/// One step from the root of a shared document to a node in it.
#[derive(Debug, Clone)]
enum Step {
    Key(Box<str>),
    Index(usize),
}

/// A mapping or list inside a shared JSON document, seen as a template value.
///
/// The document is immutable behind its `Arc`, so the node is found again from the root by
/// its path on each access; a template reads a handful of fields, so walking a few levels is
/// far cheaper than converting every object of the document up front.
#[derive(Debug)]
struct JsonNode {
    root: Arc<Json>,
    path: Box<[Step]>,
}

impl JsonNode {
    fn node(&self) -> &Json {
        let mut node = &*self.root;
        for step in &self.path {
            // The path was taken from this document, which cannot change: it resolves.
            node = match step {
                Step::Key(k) => node.get(&**k).unwrap_or(&Json::Null),
                Step::Index(i) => node.get(*i).unwrap_or(&Json::Null),
            };
        }
        node
    }

    fn child(&self, step: Step, value: &Json) -> Value {
        scalar(value).unwrap_or_else(|| {
            let mut path = Vec::with_capacity(self.path.len() + 1);
            path.extend(self.path.iter().cloned());
            path.push(step);
            Value::from_object(JsonNode {
                root: Arc::clone(&self.root),
                path: path.into_boxed_slice(),
            })
        })
    }
}

/// A scalar as the template value serde would make of it; `None` for mappings and lists.
fn scalar(value: &Json) -> Option<Value> {
    Some(match value {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(_) | Json::Object(_) => return None,
    })
}

impl Object for JsonNode {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        match self.node() {
            Json::Array(_) => ObjectRepr::Seq,
            _ => ObjectRepr::Map,
        }
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        match self.node() {
            Json::Object(map) => {
                let key = key.as_str()?;
                let value = map.get(key)?;
                Some(self.child(Step::Key(key.into()), value))
            }
            Json::Array(items) => {
                let index = key.as_usize()?;
                let value = items.get(index)?;
                Some(self.child(Step::Index(index), value))
            }
            _ => None,
        }
    }

    fn get_value_by_str(self: &Arc<Self>, key: &str) -> Option<Value> {
        match self.node() {
            Json::Object(map) => {
                let value = map.get(key)?;
                Some(self.child(Step::Key(key.into()), value))
            }
            _ => self.get_value(&Value::from(key)),
        }
    }

    fn enumerate(self: &Arc<Self>) -> Enumerator {
        match self.node() {
            Json::Object(map) => {
                Enumerator::Values(map.keys().map(|k| Value::from(k.as_str())).collect())
            }
            Json::Array(items) => Enumerator::Seq(items.len()),
            _ => Enumerator::Empty,
        }
    }

    fn enumerator_len(self: &Arc<Self>) -> Option<usize> {
        match self.node() {
            Json::Object(map) => Some(map.len()),
            Json::Array(items) => Some(items.len()),
            _ => Some(0),
        }
    }
}

/// `value` as a template value that reads the shared document in place: mappings and lists
/// are converted field by field as templates read them; scalars directly.
pub fn shared_json(value: Arc<Json>) -> Value {
    scalar(&value).unwrap_or_else(|| {
        Value::from_object(JsonNode {
            root: value,
            path: Box::new([]),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::{from_json, to_json};
    use serde_json::json;

    fn both(v: Json) -> (Value, Value) {
        (from_json(&v), shared_json(Arc::new(v)))
    }

    #[test]
    fn reads_like_a_converted_copy() {
        let doc = json!({"parent": {"metadata": {"name": "a", "labels": {"x": "1"}},
            "spec": {"size": 3, "ratio": 0.5, "neg": -2, "on": true, "none": null,
                "ports": [{"name": "p", "port": 80}, {"name": "q", "port": 81}]}}});
        let (copy, shared) = both(doc.clone());
        assert_eq!(to_json(&shared), doc);
        assert_eq!(copy, shared);
        let spec = shared.get_attr("parent").unwrap().get_attr("spec").unwrap();
        let copied = copy.get_attr("parent").unwrap().get_attr("spec").unwrap();
        for key in ["size", "ratio", "neg", "on", "none", "ports", "missing"] {
            assert_eq!(
                spec.get_attr(key).unwrap(),
                copied.get_attr(key).unwrap(),
                "{key}"
            );
            assert_eq!(
                spec.get_attr(key).unwrap().kind(),
                copied.get_attr(key).unwrap().kind(),
                "{key}"
            );
        }
        let ports = spec.get_attr("ports").unwrap();
        assert_eq!(ports.len(), Some(2));
        assert_eq!(
            ports
                .get_item(&Value::from(-1))
                .unwrap()
                .get_attr("port")
                .unwrap(),
            Value::from(81)
        );
        assert!(ports.get_item(&Value::from(5)).unwrap().is_undefined());
    }

    #[test]
    fn templates_see_the_same_values() {
        let mut env = minijinja::Environment::new();
        env.add_template(
            "t",
            "{{ d.m | length }} {% for k, v in d.m | items %}{{ k }}={{ v }};{% endfor %} \
             {{ d.l | map(attribute='n') | join(',') }} {{ d.m | tojson }} {{ d.l[0] == {'n': 1} }} \
             {{ 'a' in d.m }} {{ d.l | length }} {{ d.m.b is mapping }} {{ d.l is sequence }}",
        )
        .unwrap();
        let doc = json!({"d": {"m": {"a": 1, "b": {"c": [1, 2]}}, "l": [{"n": 1}, {"n": 2}]}});
        let (copy, shared) = both(doc);
        let t = env.get_template("t").unwrap();
        assert_eq!(t.render(&copy).unwrap(), t.render(&shared).unwrap());
    }
}
