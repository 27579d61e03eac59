//! One object, one rendering: two rendered children (of any children, copies or replicas)
//! that name the same object fail the plan instead of overwriting each other on every write;
//! a cleanup step that names an existing child is skipped instead of overwriting it.

use std::collections::HashMap;

use serde_json::Value as Json;

use super::view::View;
use super::{Desired, Failure, reason};
use ruleop_lang::rule::{CompiledRule, split_api_version};
use ruleop_lang::template::TemplateId;
use ruleop_schema::meta::{self, ObjectKey};

/// The first pair of renderings in `apply` that name one object, as a failure naming both.
/// An object is its API group, kind, namespace and name: one kind through two versions of
/// its group is one object.
pub(super) fn find(rule: &CompiledRule, apply: &[Desired]) -> Option<Failure> {
    let mut seen: HashMap<(&str, &str, &str, &str), usize> = HashMap::with_capacity(apply.len());
    for (i, d) in apply.iter().enumerate() {
        let o = &d.object;
        let identity = (
            split_api_version(meta::api_version(o)).0,
            meta::kind(o),
            meta::namespace(o),
            meta::name(o),
        );
        if let Some(&first) = seen.get(&identity) {
            return Some(failure(rule, &apply[first], d));
        }
        seen.insert(identity, i);
    }
    None
}

/// A cleanup step's rendering `desired` (from `template`) must not name an object that is
/// already another child or step of the parent: applying it would overwrite that object.
pub(super) fn cleanup_free(
    rule: &CompiledRule,
    view: &View<'_>,
    template: TemplateId,
    desired: &Desired,
) -> Result<(), Failure> {
    let key = ObjectKey::of(&desired.object);
    let taken = view
        .children
        .iter()
        .find(|(child, objects)| **child != desired.child && objects.iter().any(|o| key.is(o)));
    match taken {
        None => Ok(()),
        Some((child, _)) => Err(Failure {
            reason: reason::DUPLICATE_NAME.into(),
            message: format!(
                "{}: {key} is the object of {child:?}; a cleanup step renders an object of its own",
                rule.locate_handle(template, None)
            ),
            permanent: true,
        }),
    }
}

fn failure(rule: &CompiledRule, first: &Desired, second: &Desired) -> Failure {
    let key = ObjectKey::of(&second.object);
    Failure {
        reason: reason::DUPLICATE_NAME.into(),
        message: format!(
            "{}: {key} is rendered twice, by {} and by {}: an object has one rendering, so nothing is applied or deleted until each names its own object",
            locate(rule, second),
            describe(rule, first),
            describe(rule, second),
        ),
        permanent: true,
    }
}

/// `child "a" (rules/x.yaml:12:7)`, with the copy's key or the replica's name.
fn describe(rule: &CompiledRule, d: &Desired) -> String {
    let binding = |k: &str| {
        d.bindings
            .as_ref()
            .and_then(|b| b.get(k))
            .and_then(Json::as_str)
    };
    let copy = match (binding("key"), binding("name")) {
        (Some(key), _) => format!(" item {key:?}"),
        (None, Some(name)) => format!(" replica {name:?}"),
        (None, None) => String::new(),
    };
    format!("child {:?}{copy} ({})", d.child, locate(rule, d))
}

/// `file:line:col` of the template that rendered `d`.
fn locate(rule: &CompiledRule, d: &Desired) -> String {
    let template = rule
        .spec
        .children
        .iter()
        .position(|c| c.name == d.child)
        .and_then(|i| rule.compiled.children.get(i));
    match template {
        Some(c) => rule.locate_handle(c.template, None),
        None => rule.locate("", None),
    }
}

#[cfg(test)]
#[path = "duplicates_tests.rs"]
mod tests;
