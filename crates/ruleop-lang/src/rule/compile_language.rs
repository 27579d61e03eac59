//! Compile-time checks of the language features: definitions, collections, lookups and
//! failure status fields (see `language.rs` for the types).

use std::collections::{BTreeSet, HashMap};

use jsonpath_rust::parser::model::JpQuery;
use jsonpath_rust::parser::parse_json_path;

use super::compile::{Checker, one_line};
use super::compiled::{
    ForEachTemplates, LookupNames, LookupTemplates, ReplicasTemplates, optional,
};
use super::{Child, RuleSpec};

/// Where the shared macros are registered (and located in errors).
pub const MACROS: &str = "spec.definitions.macros";
/// The key prefix of `status.onFailure` JSONPaths in [`super::CompiledRule::paths`].
pub const ON_FAILURE_PATH: &str = "onFailure/";

fn is_identifier(s: &str) -> bool {
    s.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `spec.definitions`: the macros template (compiled first, then imported by every later
/// template) and the values' expressions.
pub(super) fn definitions(c: &mut Checker<'_>, spec: &RuleSpec) {
    if let Some(macros) = &spec.definitions.macros {
        match c.templates.add_macros(MACROS, macros) {
            Ok(id) => c.draft.macros = Some(Some(id)),
            Err(e) => {
                c.error(MACROS, format!("macros do not compile: {e}"));
                c.draft.macros = None;
            }
        }
    }
    let mut seen = BTreeSet::new();
    for (i, v) in spec.definitions.values.iter().enumerate() {
        let base = format!("spec.definitions.values[{i}]");
        if !is_identifier(&v.name) {
            c.error(
                &format!("{base}.name"),
                format!(
                    "{:?} is not a value name (letters, digits and '_', not starting with a digit)",
                    v.name
                ),
            );
        }
        if !seen.insert(v.name.clone()) {
            c.error(
                &format!("{base}.name"),
                format!("duplicate value {:?}", v.name),
            );
        }
        let id = c.expression(&format!("{base}.expr"), &v.expr);
        c.draft.values.push(id);
    }
}

/// `children[i].forEach`: its expressions, and no `replicas` beside it.
pub(super) fn for_each(
    c: &mut Checker<'_>,
    base: &str,
    child: &Child,
) -> Option<Option<ForEachTemplates>> {
    let Some(each) = &child.for_each else {
        return Some(None);
    };
    if child.replicas.is_some() {
        c.error(
            &format!("{base}.forEach"),
            "a child has either forEach or replicas, not both (build the item list from a count instead, e.g. `range(n)`)",
        );
    }
    let items = c.expression(&format!("{base}.forEach.items"), &each.items);
    let key = optional(each.key.as_deref(), |key| {
        c.expression(&format!("{base}.forEach.key"), key)
    });
    Some(Some(ForEachTemplates {
        items: items?,
        key: key?,
    }))
}

/// `children[i].replicas`: its expressions.
pub(super) fn replicas(
    c: &mut Checker<'_>,
    base: &str,
    child: &Child,
) -> Option<Option<ReplicasTemplates>> {
    optional(child.replicas.as_ref(), |replicas| {
        let count = c.expression(&format!("{base}.replicas.count"), &replicas.count);
        let prefix = optional(replicas.prefix.as_deref(), |prefix| {
            c.expression(&format!("{base}.replicas.prefix"), prefix)
        });
        Some(ReplicasTemplates {
            count: count?,
            prefix: prefix?,
        })
    })
}

/// `spec.lookups`: names and templates.
pub(super) fn lookups(c: &mut Checker<'_>, spec: &RuleSpec, related: &BTreeSet<String>) {
    let mut seen = BTreeSet::new();
    for (i, l) in spec.lookups.iter().enumerate() {
        let base = format!("spec.lookups[{i}]");
        c.name(&format!("{base}.name"), &l.name, &mut seen);
        if related.contains(&l.name) {
            c.error(
                &format!("{base}.name"),
                format!("{:?} is also a related name", l.name),
            );
        }
        if l.kind.is_empty() || l.api_version.is_empty() {
            c.error(&base, "a lookup needs apiVersion and kind");
        }
        let names = match (&l.object_name, &l.object_names) {
            (Some(name), None) => c
                .template(&format!("{base}.objectName"), name)
                .map(LookupNames::One),
            (None, Some(names)) => c
                .expression(&format!("{base}.objectNames"), names)
                .map(LookupNames::Many),
            _ => {
                c.error(
                    &base,
                    "a lookup needs exactly one of objectName (one object) and objectNames (a list)",
                );
                None
            }
        };
        let namespace = optional(l.namespace.as_deref(), |ns| {
            c.template(&format!("{base}.namespace"), ns)
        });
        let compiled = (|| {
            Some(LookupTemplates {
                names: names?,
                namespace: namespace?,
            })
        })();
        c.draft.lookups.push(compiled);
    }
}

/// `status.onFailure`: like status fields, over the context plus `failure`.
pub(super) fn on_failure(
    c: &mut Checker<'_>,
    spec: &RuleSpec,
    paths: &mut HashMap<String, JpQuery>,
) {
    for (name, projection) in &spec.status.on_failure {
        let base = format!("spec.status.onFailure.{name}");
        if ["conditions", "observedGeneration"].contains(&name.as_str()) {
            c.error(&base, format!("status.{name} is written by ruleop itself"));
        }
        match (&projection.path, &projection.expr) {
            (Some(p), None) => match parse_json_path(p) {
                Ok(query) => {
                    paths.insert(format!("{ON_FAILURE_PATH}{name}"), query);
                }
                Err(e) => c.error(
                    &format!("{base}.path"),
                    format!("invalid JSONPath {p:?}: {}", one_line(&e.to_string())),
                ),
            },
            (None, Some(e)) => {
                if let Some(id) = c.expression(&format!("{base}.expr"), e) {
                    c.draft.on_failure.insert(name.clone(), id);
                }
            }
            _ => c.error(&base, "a status field needs exactly one of path or expr"),
        }
    }
}
