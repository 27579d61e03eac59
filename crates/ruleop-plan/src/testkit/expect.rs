//! What a test step expects of a plan, and the readable mismatches when it differs.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::Deserialize;
use serde_json::Value as Json;

use super::keys::{TestKey, Unresolved, resolve, shown};
use crate::{Action, FinalizerChange, Plan};
use ruleop_schema::jsondiff::{self, Change};

/// The parts of a plan a step checks; an omitted part is not checked.
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Expect {
    /// Every child the plan writes (create, update, recreate, conflict), by `Kind/name`, or
    /// `Kind/namespace/name` when the kind and name exist in several namespaces; unchanged
    /// children may be listed as `UpToDate`.
    #[serde(default)]
    pub apply: Option<BTreeMap<String, ExpectChild>>,
    /// Every object the plan deletes, by `Kind/name` (or `Kind/namespace/name`).
    #[serde(default)]
    pub delete: Option<Vec<String>>,
    /// A part of the status after the plan (the new one, or the parent's if unchanged).
    #[serde(default)]
    pub status: Option<Json>,
    /// Conditions after the plan by type: `"True"`/`"False"` or a part of the condition.
    #[serde(default)]
    pub conditions: Option<BTreeMap<String, Json>>,
    /// The plan's events in order: a reason, or a part of the event
    /// (`{type: Warning, reason: X, message: ...}`).
    #[serde(default)]
    pub events: Option<Vec<Json>>,
    /// The failure reason, or `null` for a plan that must not fail.
    #[serde(default, deserialize_with = "some_nullable")]
    pub failure: Option<Option<String>>,
    /// The finalizer change: `Add`, `Remove` or `None`.
    #[serde(default)]
    pub finalizer: Option<FinalizerName>,
    /// Whether the rule's selectors (`spec.parent.selector`, `annotationSelector`) select
    /// the parent; an unselected parent's plan is empty.
    #[serde(default)]
    pub selected: Option<bool>,
}

/// A finalizer change as written in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum FinalizerName {
    /// [`FinalizerChange::Add`].
    Add,
    /// [`FinalizerChange::Remove`].
    Remove,
    /// [`FinalizerChange::None`].
    None,
}

impl FinalizerName {
    fn change(self) -> FinalizerChange {
        match self {
            Self::Add => FinalizerChange::Add,
            Self::Remove => FinalizerChange::Remove,
            Self::None => FinalizerChange::None,
        }
    }
}

fn some_nullable<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// One expected child: its action, or the action with part or all of the manifest.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum ExpectChild {
    /// Only the action.
    Action(ActionName),
    /// The action and the object.
    Full {
        /// The action (default `Create`).
        #[serde(default)]
        action: Option<ActionName>,
        /// A part of the manifest (extra fields in the plan are fine).
        #[serde(default)]
        object: Option<Json>,
        /// The whole manifest, equal field for field.
        #[serde(default)]
        manifest: Option<Json>,
    },
}

/// An action as written in tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum ActionName {
    /// [`Action::Create`].
    Create,
    /// [`Action::Update`].
    Update,
    /// [`Action::Recreate`].
    Recreate,
    /// [`Action::UpToDate`].
    UpToDate,
    /// [`Action::Conflict`].
    Conflict,
}

impl ActionName {
    fn matches(self, action: Action) -> bool {
        matches!(
            (self, action),
            (Self::Create, Action::Create)
                | (Self::Update, Action::Update)
                | (Self::Recreate, Action::Recreate)
                | (Self::UpToDate, Action::UpToDate)
                | (Self::Conflict, Action::Conflict)
        )
    }
}

fn changes(title: &str, list: &[Change]) -> String {
    let mut s = format!("{title} (- expected, + actual):");
    for c in list {
        s.push_str("\n  ");
        s.push_str(&c.to_string());
    }
    s
}

/// Every way `plan` (planned for `parent`) differs from `expect`, one readable message each.
pub fn check(expect: &Expect, plan: &Plan, parent: &Json) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(want) = expect.selected
        && want != plan.not_selected.is_none()
    {
        out.push(match &plan.not_selected {
            Some(why) => format!("selected: expected true, got false ({why})"),
            None => "selected: expected false, got true".to_string(),
        });
    }
    if let Some(want) = &expect.failure {
        let got = plan.failure.as_ref().map(|f| f.reason.clone());
        if *want != got {
            let detail = plan
                .failure
                .as_ref()
                .map(|f| format!(" ({})", f.message))
                .unwrap_or_default();
            out.push(format!(
                "failure: expected {}, got {}{detail}",
                want.as_deref().unwrap_or("none"),
                got.as_deref().unwrap_or("none")
            ));
        }
    }
    if let Some(want) = &expect.apply {
        check_apply(want, plan, &mut out);
    }
    if let Some(want) = &expect.delete {
        check_delete(want, plan, &mut out);
    }
    let status = plan.status.as_ref().or_else(|| parent.get("status"));
    let empty = Json::Null;
    let status = status.unwrap_or(&empty);
    if let Some(want) = &expect.status {
        let m = jsondiff::missing(want, status);
        if !m.is_empty() {
            out.push(changes("status", &m));
        }
    }
    if let Some(want) = &expect.conditions {
        for (type_, want) in want {
            let got = status
                .get("conditions")
                .and_then(Json::as_array)
                .and_then(|cs| cs.iter().find(|c| c["type"] == type_.as_str()));
            let want = match want {
                Json::String(s) => serde_json::json!({ "status": s }),
                Json::Bool(b) => serde_json::json!({ "status": if *b { "True" } else { "False" } }),
                other => other.clone(),
            };
            match got {
                None => out.push(format!("condition {type_}: missing")),
                Some(got) => {
                    let m = jsondiff::missing(&want, got);
                    if !m.is_empty() {
                        out.push(changes(&format!("condition {type_}"), &m));
                    }
                }
            }
        }
    }
    if let Some(want) = &expect.events {
        let got: Vec<Json> = plan
            .events
            .iter()
            .map(|e| serde_json::json!({"type": format!("{:?}", e.type_), "reason": e.reason, "message": e.message}))
            .collect();
        let ok = want.len() == got.len()
            && want.iter().zip(&got).all(|(w, g)| match w {
                Json::String(reason) => g["reason"] == reason.as_str(),
                other => jsondiff::missing(other, g).is_empty(),
            });
        if !ok {
            let list = |v: &[Json]| {
                v.iter()
                    .map(|e| match e {
                        Json::String(s) => s.clone(),
                        e if e.get("reason").is_some() && e.get("message").is_some() => {
                            format!(
                                "{} ({})",
                                e["reason"].as_str().unwrap_or_default(),
                                e["message"].as_str().unwrap_or_default()
                            )
                        }
                        e => jsondiff::short(e),
                    })
                    .map(|s| format!("\n    {s}"))
                    .collect::<String>()
            };
            out.push(format!(
                "events: expected{}\n  got{}",
                list(want),
                list(&got)
            ));
        }
    }
    if let Some(want) = expect.finalizer
        && want.change() != plan.finalizer
    {
        out.push(format!(
            "finalizer: expected {want:?}, got {:?}",
            plan.finalizer
        ));
    }
    out
}

fn check_delete(want: &[String], plan: &Plan, out: &mut Vec<String>) {
    let keys: Vec<TestKey<'_>> = plan
        .delete
        .iter()
        .map(|d| TestKey::of_key(&d.key))
        .collect();
    let got = shown(&keys);
    let mut matched = vec![false; keys.len()];
    let mut ok = true;
    for w in want {
        match resolve(w, &keys) {
            Ok(i) if !matched[i] => matched[i] = true,
            Err(Unresolved::Ambiguous(message)) => out.push(format!("delete: {message}")),
            _ => ok = false,
        }
    }
    if !ok || matched.contains(&false) {
        let mut want: Vec<&str> = want.iter().map(String::as_str).collect();
        let mut got = got;
        want.sort();
        got.sort();
        out.push(format!("delete: expected {want:?}, got {got:?}"));
    }
}

fn check_apply(want: &BTreeMap<String, ExpectChild>, plan: &Plan, out: &mut Vec<String>) {
    let keys: Vec<TestKey<'_>> = plan.apply.iter().map(|d| TestKey::of(&d.object)).collect();
    let rendered = shown(&keys);
    for ((d, k), key) in plan.apply.iter().zip(&keys).zip(&rendered) {
        if d.action != Action::UpToDate && !want.keys().any(|w| k.matches(w)) {
            out.push(format!("apply: unexpected {:?} of {key}", d.action));
        }
    }
    for (key, child) in want {
        let d = match resolve(key, &keys) {
            Ok(i) => &plan.apply[i],
            Err(Unresolved::Ambiguous(message)) => {
                out.push(format!("apply: {message}"));
                continue;
            }
            Err(Unresolved::Missing) => {
                out.push(format!(
                    "apply: {key} is not rendered (rendered: {})",
                    if rendered.is_empty() {
                        "nothing".to_string()
                    } else {
                        rendered.join(", ")
                    }
                ));
                continue;
            }
        };
        let (action, object, manifest) = match child {
            ExpectChild::Action(a) => (Some(*a), None, None),
            ExpectChild::Full {
                action,
                object,
                manifest,
            } => (
                Some(action.unwrap_or(ActionName::Create)),
                object.as_ref(),
                manifest.as_ref(),
            ),
        };
        if let Some(a) = action
            && !a.matches(d.action)
        {
            out.push(format!("apply {key}: expected {a:?}, got {:?}", d.action));
        }
        if let Some(object) = object {
            let m = jsondiff::missing(object, &d.object);
            if !m.is_empty() {
                out.push(changes(&format!("apply {key}"), &m));
            }
        }
        if let Some(manifest) = manifest {
            let m = jsondiff::changes(manifest, &d.object);
            if !m.is_empty() {
                out.push(changes(&format!("apply {key} manifest"), &m));
            }
        }
    }
}
