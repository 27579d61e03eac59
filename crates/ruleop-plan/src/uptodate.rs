//! Whether an observed child already holds what ruleop applies, judged as server-side apply
//! merges: keyed lists entry by key, sets as sets, atomic lists whole; quantities by value;
//! a rendered `null` or empty value equal to an absent one; anything the API server or other
//! managers added is not a difference.
//!
//! List semantics come from the kind's OpenAPI schema when the controller has it. Without
//! one (`ruleop render`, or a schema the API server did not publish), a list whose entries
//! all have a string `name` is keyed by `name`, any other list is atomic, and two values that
//! both read as quantities are compared as quantities.

use serde_json::{Value as Json, json};

use ruleop_schema::openapi::{KindSchema, ListType, Schema};
use ruleop_schema::quantity::same_quantity;

/// How an observed object compares with ruleop's rendering of it.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    /// Every rendered field has its value in the observed object.
    pub up_to_date: bool,
    /// Keyed lists where a rendered entry's key is missing (someone changed a key field, or
    /// replaced the list): applying adds the entry beside the edited one, which the API
    /// server may refuse (a duplicate port name). Each can be put back whole.
    pub replacements: Vec<ListReplacement>,
}

/// A keyed list to put back: entries ruleop renders keep the observed entry with the same
/// key (with what the server defaulted), missing ones are added as rendered, entries with
/// other keys are dropped.
#[derive(Debug, Clone, PartialEq)]
pub struct ListReplacement {
    /// JSON pointer of the list in the observed object.
    pub pointer: String,
    /// The list as observed (the patch only applies if it is unchanged).
    pub observed: Json,
    /// The list to put in its place.
    pub replacement: Json,
}

/// Compares `observed` with `desired` (the rendered object ruleop applies).
pub fn compare(observed: &Json, desired: &Json, schema: Option<&KindSchema>) -> Comparison {
    let mut walk = Walk::default();
    let up_to_date = walk.value(Some(observed), desired, schema.map(KindSchema::root));
    let pointers: Vec<String> = walk
        .replacements
        .iter()
        .map(|r| r.pointer.clone())
        .collect();
    // A list inside a list that is put back whole is handled by a later reconcile (its
    // entry's position may move).
    walk.replacements.retain(|r| {
        !pointers
            .iter()
            .any(|outer| r.pointer.starts_with(&format!("{outer}/")))
    });
    Comparison {
        up_to_date,
        replacements: walk.replacements,
    }
}

/// A JSON patch (RFC 6902) that puts back `replacements`, each guarded by a `test` of the
/// list as observed. `None` when there is nothing to put back.
pub fn repair_patch(replacements: &[ListReplacement]) -> Option<Json> {
    if replacements.is_empty() {
        return None;
    }
    let ops: Vec<Json> = replacements
        .iter()
        .flat_map(|r| {
            [
                json!({"op": "test", "path": r.pointer, "value": r.observed}),
                json!({"op": "replace", "path": r.pointer, "value": r.replacement}),
            ]
        })
        .collect();
    Some(Json::Array(ops))
}

/// A position in the schema: `None` when there is no schema at all (guess), otherwise the
/// schema's (maybe empty) information.
type At<'a> = Option<Schema<'a>>;

#[derive(Clone, Copy)]
enum Segment<'d> {
    Key(&'d str),
    Index(usize),
}

#[derive(Default)]
struct Walk<'d> {
    path: Vec<Segment<'d>>,
    replacements: Vec<ListReplacement>,
}

impl<'d> Walk<'d> {
    fn pointer(&self) -> String {
        self.path
            .iter()
            .map(|s| match s {
                Segment::Key(k) => format!("/{}", k.replace('~', "~0").replace('/', "~1")),
                Segment::Index(i) => format!("/{i}"),
            })
            .collect()
    }

    fn value(&mut self, observed: Option<&Json>, desired: &'d Json, at: At<'_>) -> bool {
        match (observed.filter(|o| !o.is_null()), desired) {
            (None, d) => absent_equals(d, at),
            (Some(o), Json::Null) => is_empty(o),
            (Some(Json::Object(o)), Json::Object(d)) => {
                let mut same = true;
                for (k, dv) in d {
                    self.path.push(Segment::Key(k));
                    same &= self.value(o.get(k), dv, at.map(|s| s.field(k)));
                    self.path.pop();
                }
                same
            }
            (Some(Json::Array(o)), Json::Array(d)) => self.list(o, d, at),
            (Some(o), d) => same_scalar(o, d, at),
        }
    }

    fn list(&mut self, observed: &[Json], desired: &'d [Json], at: At<'_>) -> bool {
        let items = at.map(|s| s.items());
        let list_type = match at {
            Some(s) => s.list_type().clone(),
            None => guess_list_type(observed, desired),
        };
        match list_type {
            ListType::Atomic => {
                let mut same = observed.len() == desired.len();
                for (i, (o, d)) in observed.iter().zip(desired).enumerate() {
                    self.path.push(Segment::Index(i));
                    same &= self.value(Some(o), d, items);
                    self.path.pop();
                }
                same
            }
            ListType::Set => desired
                .iter()
                .all(|d| observed.iter().any(|o| holds(o, d, items))),
            ListType::Map(keys) => self.keyed(observed, desired, &keys, items),
        }
    }

    fn keyed(
        &mut self,
        observed: &[Json],
        desired: &'d [Json],
        keys: &[String],
        items: At<'_>,
    ) -> bool {
        let mut same = true;
        let mut replacement = Vec::with_capacity(desired.len());
        let mut missing = false;
        for d in desired {
            let candidates: Vec<usize> = (0..observed.len())
                .filter(|&i| same_key(&observed[i], d, keys, items))
                .collect();
            let Some(&first) = candidates.first() else {
                missing = true;
                same = false;
                replacement.push(d.clone());
                continue;
            };
            replacement.push(observed[first].clone());
            if candidates.iter().any(|&i| holds(&observed[i], d, items)) {
                continue;
            }
            self.path.push(Segment::Index(first));
            same &= self.value(Some(&observed[first]), d, items);
            self.path.pop();
        }
        if missing {
            self.replacements.push(ListReplacement {
                pointer: self.pointer(),
                observed: Json::Array(observed.to_vec()),
                replacement: Json::Array(replacement),
            });
        }
        same
    }
}

/// Whether `observed` holds `desired` (no repairs collected).
fn holds(observed: &Json, desired: &Json, at: At<'_>) -> bool {
    Walk::default().value(Some(observed), desired, at)
}

/// Whether an observed entry has the rendered entry's key. A key field the rendering leaves
/// out matches any value (the API server fills it with its default, e.g. `protocol: TCP`).
fn same_key(observed: &Json, desired: &Json, keys: &[String], items: At<'_>) -> bool {
    observed.is_object()
        && keys.iter().all(|k| match desired.get(k) {
            None | Some(Json::Null) => true,
            Some(d) => observed
                .get(k)
                .is_some_and(|o| same_scalar(o, d, items.map(|s| s.field(k)))),
        })
}

/// Without a schema: mappings that all carry a string `name` are keyed by it (containers,
/// volumes, env, ports of most kinds); anything else is replaced whole.
fn guess_list_type(observed: &[Json], desired: &[Json]) -> ListType {
    let named = |e: &Json| e.get("name").is_some_and(Json::is_string);
    if !desired.is_empty() && desired.iter().chain(observed).all(named) {
        ListType::Map(vec!["name".into()])
    } else {
        ListType::Atomic
    }
}

/// Whether a rendered value equals an absent one: the API server drops empty values of
/// optional fields (Go's `omitempty`) but keeps an empty struct (`emptyDir: {}`).
fn absent_equals(desired: &Json, at: At<'_>) -> bool {
    match desired {
        Json::Object(m) => {
            !at.is_some_and(|s| s.is_struct())
                && m.iter()
                    .all(|(k, v)| absent_equals(v, at.map(|s| s.field(k))))
        }
        other => is_empty(other),
    }
}

/// Values the API server stores as absent, or an absent value as `""` (a `null`).
fn is_empty(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Bool(b) => !b,
        Json::Number(n) => n.as_f64() == Some(0.0),
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(m) => m.values().all(is_empty),
    }
}

fn same_scalar(observed: &Json, desired: &Json, at: At<'_>) -> bool {
    if observed == desired {
        return true;
    }
    if let (Json::Number(o), Json::Number(d)) = (observed, desired)
        && o.as_f64() == d.as_f64()
    {
        return true;
    }
    // Without a schema, two values that both read as quantities are compared as such.
    let quantity = at.is_none_or(|s| s.is_quantity());
    quantity && same_quantity(observed, desired)
}

#[cfg(test)]
#[path = "uptodate_tests.rs"]
mod tests;
