//! Related selectors: a parent's `spec.related[i].selector`, rendered. The planner filters
//! related objects with them; the controller looks them up by them.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::Timestamp;
use minijinja::context;
use serde_json::{Value as Json, json};

use super::{Failure, now_string, render_failure};
use ruleop_lang::rule::CompiledRule;
use ruleop_lang::template::{from_json, shared_json};

/// A rendered related selector (`matchLabels`).
pub type Selector = BTreeMap<String, String>;

/// A parent's related selectors (`spec.related[i].selector`, in order), rendered: the
/// planner filters related objects with them, the controller looks them up by them.
pub fn related_selectors(
    rule: &CompiledRule,
    parent: &Json,
    now: Timestamp,
) -> Result<Vec<Selector>, Failure> {
    if rule.spec.related.is_empty() {
        return Ok(Vec::new());
    }
    let ctx = context! {
        parent => shared_json(Arc::new(parent.clone())),
        children => from_json(&json!({})),
        related => from_json(&json!({})),
        now => now_string(now),
    };
    rule.compiled
        .related
        .iter()
        .map(|selector| {
            selector
                .iter()
                .map(|&(ref key, name)| {
                    let value = rule
                        .templates
                        .render_text(name, &ctx)
                        .map_err(|e| render_failure(rule, name, &e))?;
                    Ok((key.clone(), value))
                })
                .collect()
        })
        .collect()
}
