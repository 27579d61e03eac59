//! Collections: a child rendered once per item of a list (`forEach`), each copy named from
//! its item's key, so removing an item deletes exactly that item's child.

use std::collections::BTreeMap;

use minijinja::{Value, context};
use serde_json::{Value as Json, json};

use super::child::finish;
use super::{Failure, Input, Plan, reason, render_failure};
use ruleop_lang::rule::{Child, ChildTemplates, CompiledRule, ForEachTemplates};
use ruleop_lang::template::{from_json, to_json};
use ruleop_schema::meta;

/// Renders every item of collection child `child` into `plan`.
pub(super) fn plan_collection(
    rule: &CompiledRule,
    input: &Input<'_>,
    ctx: &Value,
    child: &Child,
    compiled: &ChildTemplates,
    each: &ForEachTemplates,
    plan: &mut Plan,
) -> Result<(), Failure> {
    let fail = |location: String, message: String| Failure {
        reason: reason::RENDER_FAILED.into(),
        message: format!("{location}: {message}"),
        permanent: true,
    };
    let items_name = each.items;
    let items_at = || rule.locate_handle(items_name, None);
    let items = rule
        .templates
        .eval(items_name, ctx)
        .map_err(|e| render_failure(rule, items_name, &e))?;
    let items = match to_json(&items) {
        Json::Null => Vec::new(),
        Json::Array(items) => items,
        other => {
            return Err(fail(
                items_at(),
                format!("forEach.items must be a list, got {other}"),
            ));
        }
    };
    let mut keys: BTreeMap<String, usize> = BTreeMap::new();
    // Copies may share a name in different namespaces (a cluster-scoped parent's children).
    let mut names: BTreeMap<(String, String), String> = BTreeMap::new();
    for (position, item) in items.iter().enumerate() {
        let item_value = from_json(item);
        let key = match each.key {
            Some(key_name) => {
                let item_ctx = context! { item => item_value.clone(), ..ctx.clone() };
                let v = rule
                    .templates
                    .eval(key_name, &item_ctx)
                    .map_err(|e| render_failure(rule, key_name, &e))?;
                key_text(&to_json(&v))
            }
            None => default_key(item),
        };
        let Some(key) = key.filter(|k| !k.is_empty()) else {
            return Err(fail(
                items_at(),
                format!(
                    "item {position} has no key: set forEach.key (items without one need a `name` field or must be strings or numbers)"
                ),
            ));
        };
        if let Some(first) = keys.insert(key.clone(), position) {
            return Err(fail(
                items_at(),
                format!("items {first} and {position} have the same key {key:?}"),
            ));
        }
        let bindings = json!({"item": item, "key": key});
        let item_ctx = context! { item => item_value, key => key.clone(), ..ctx.clone() };
        if let Some(when) = compiled.when {
            let on = rule
                .templates
                .eval(when, &item_ctx)
                .map_err(|e| render_failure(rule, when, &e))?;
            if !on.is_true() {
                continue;
            }
        }
        let template = compiled.template;
        let mut object = rule
            .templates
            .render_object(template, &item_ctx)
            .map_err(|e| render_failure(rule, template, &e))?;
        if let Some(metadata) = object.get_mut("metadata").and_then(Json::as_object_mut) {
            let annotations = metadata.entry("annotations").or_insert_with(|| json!({}));
            if let Some(a) = annotations.as_object_mut() {
                a.insert(meta::ITEM_ANNOTATION.into(), json!(key));
            }
        }
        let mut desired = finish(rule, input, template, child, object, None)?;
        let namespace = meta::namespace(&desired.object).to_string();
        let name = meta::name(&desired.object).to_string();
        if let Some(other) = names.insert((namespace.clone(), name.clone()), key.clone()) {
            let name = if namespace.is_empty() {
                name
            } else {
                format!("{namespace}/{name}")
            };
            return Err(Failure {
                reason: reason::DUPLICATE_NAME.into(),
                ..fail(
                    rule.locate_handle(template, None),
                    format!(
                        "items {other:?} and {key:?} render the same name {name:?}; build the name from the item's key"
                    ),
                )
            });
        }
        desired.bindings = Some(bindings);
        plan.apply.push(desired);
    }
    Ok(())
}

/// The key of an item without `forEach.key`: its `name`, or the item itself when scalar.
fn default_key(item: &Json) -> Option<String> {
    match item {
        Json::Object(map) => map.get("name").and_then(key_text),
        other => key_text(other),
    }
}

fn key_text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        Json::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}
