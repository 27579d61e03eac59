//! A sample parent as the authoring commands read it from a file, completed with what the API
//! server would set.

use serde_json::{Value as Json, json};

use ruleop_lang::rule::Scope;

/// Fills what a parent read from a file lacks but the API server would set (a namespace
/// only for a namespaced parent).
pub fn complete_parent(parent: &mut Json, scope: Scope) {
    let Some(meta) = parent.get_mut("metadata").and_then(Json::as_object_mut) else {
        return;
    };
    if scope == Scope::Namespaced {
        meta.entry("namespace").or_insert_with(|| json!("default"));
    }
    meta.entry("uid")
        .or_insert_with(|| json!("00000000-0000-0000-0000-000000000000"));
    meta.entry("generation").or_insert_with(|| json!(1));
}
