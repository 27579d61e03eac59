//! ruleop's part of the parent's status: as it is now, and as a plan writes it, kept to what
//! the parent's schema allows ([`StatusShape`]).

use std::sync::Arc;

use serde_json::{Map, Value as Json, json};

use super::{Input, Plan, normal};
use crate::status::{self, Condition, READY};
use ruleop_lang::rule::CompiledRule;
use ruleop_schema::meta;
use ruleop_schema::status_shape::{OBSERVED_GENERATION, StatusShape};

/// The shape of the parent's status: from the schemas the planner was given, else (offline,
/// no schema) everything ruleop writes.
pub(super) fn shape(input: &Input<'_>) -> Arc<StatusShape> {
    input
        .schemas
        .and_then(|s| s.status_shape())
        .cloned()
        .unwrap_or_else(|| Arc::new(StatusShape::unknown()))
}

/// The parent's current values of the rule's status fields that may be written (kept as
/// they are when a plan cannot project new ones).
pub(super) fn previous_fields(
    rule: &CompiledRule,
    parent: &Json,
    shape: &StatusShape,
) -> Map<String, Json> {
    let previous = parent.get("status");
    rule.spec
        .status
        .fields
        .keys()
        .filter(|f| shape.allows_field(f))
        .filter_map(|f| Some((f.clone(), previous?.get(f)?.clone())))
        .collect()
}

/// The condition types ruleop writes for this rule: `Ready` and the declared ones.
fn condition_types(rule: &CompiledRule) -> impl Iterator<Item = &str> {
    std::iter::once(READY).chain(rule.spec.status.conditions.iter().map(|c| c.type_.as_str()))
}

/// The parent's conditions of the given types, as they are.
fn previous_conditions<'a>(parent: &Json, types: impl Iterator<Item = &'a str>) -> Vec<Json> {
    let previous = parent
        .pointer("/status/conditions")
        .and_then(Json::as_array);
    types
        .filter_map(|t| {
            previous?
                .iter()
                .find(|c| c.get("type").and_then(Json::as_str) == Some(t))
                .cloned()
        })
        .collect()
}

/// Whether `parent`'s status shows what ruleop writes for `rule` (a condition of its types,
/// one of its status fields): what releasing a parent the rule no longer selects removes.
pub fn shows_rule_status(rule: &CompiledRule, parent: &Json) -> bool {
    let fields = || {
        let status = parent.get("status");
        rule.status_fields()
            .any(|f| status.and_then(|s| s.get(f)).is_some())
    };
    !previous_conditions(parent, condition_types(rule)).is_empty() || fields()
}

/// ruleop's part of the parent's status as it is now.
pub(super) fn current_status(rule: &CompiledRule, parent: &Json, shape: &StatusShape) -> Json {
    let mut owned = previous_fields(rule, parent, shape);
    let conditions = previous_conditions(parent, condition_types(rule));
    if !conditions.is_empty() {
        owned.insert("conditions".into(), Json::Array(conditions));
    }
    if let Some(g) = parent.pointer("/status/observedGeneration") {
        owned.insert(OBSERVED_GENERATION.into(), g.clone());
    }
    shape.restrict(Json::Object(owned))
}

/// Builds ruleop's part of the status and keeps it for writing only if it differs from the
/// parent's: a projected value or condition changed, or a status field of the rule is no
/// longer projected (writing without it removes it). Other writers' fields do not count, nor
/// does what the parent's schema does not let ruleop write (`plan.status_shape`).
pub(super) fn set_status(
    rule: &CompiledRule,
    input: &Input<'_>,
    plan: &mut Plan,
    mut fields: Map<String, Json>,
    conditions: &[Condition],
) {
    let shape = Arc::clone(&plan.status_shape);
    let previous = input.parent.get("status");
    let generation = input
        .parent
        .pointer("/metadata/generation")
        .and_then(Json::as_i64);
    let mut merged = status::merge_conditions(
        previous.and_then(|s| s.get("conditions")),
        conditions,
        generation,
        input.now,
    );
    // ruleop's other conditions (a declared one a failed plan did not evaluate) stay as
    // they are: leaving them out of the apply would remove them.
    let computed = |t: &str| conditions.iter().any(|c| c.type_ == t);
    merged.extend(previous_conditions(
        input.parent,
        condition_types(rule).filter(|t| !computed(t)),
    ));
    fields.insert("conditions".into(), Json::Array(merged));
    if let Some(g) = generation {
        fields.insert(OBSERVED_GENERATION.into(), json!(g));
    }
    // A recovery is announced: Ready after a problem the parent showed (a Warning said so).
    // Becoming ready after creation or scaling (the waiting reason) is not: the `Created`
    // Event and the condition's lastTransitionTime tell it, and a new parent costs one write
    // less.
    let recovered = status::condition_status(previous, READY) == Some(false)
        && status::condition_reason(previous, READY) != Some(crate::ready::waiting_reason(rule));
    // Without conditions on the parent a transition cannot be told from a steady state.
    if shape.allows_conditions()
        && recovered
        && conditions.iter().any(|c| c.type_ == READY && c.status)
    {
        plan.events.push(normal(
            super::reason::READY,
            format!("{} is ready", meta::kind(input.parent)),
        ));
    }
    let dropped = rule.spec.status.fields.keys().any(|f| {
        shape.allows_field(f)
            && !fields.contains_key(f)
            && previous.is_some_and(|p| p.get(f).is_some())
    });
    let new = shape.restrict(Json::Object(fields));
    if dropped || status::differs(previous, &new) {
        plan.status = Some(new.clone());
    }
    plan.owned_status = new;
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use jiff::Timestamp;
    use serde_json::json;

    use super::*;
    use crate::plan;
    use ruleop_schema::openapi::Schemas;
    use ruleop_schema::status_shape::is_builtin_group;

    const DEPLOYMENT: &str =
        include_str!("../../../tests/rules/ownership/deployment/deployment.yaml");

    fn deployment(status: Json) -> Json {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u-web", "generation": 3},
            "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "nginx"}]}}},
            "status": status})
    }

    #[test]
    fn a_deployments_status_gets_ruleops_condition_only_and_settles() {
        let rule = ruleop_lang::load::parse_rule("d.yaml".as_ref(), DEPLOYMENT).unwrap();
        let builtin = ruleop_schema::schema::KindSchemas::builtin().unwrap();
        let schema = builtin.schema_of("apps/v1", "Deployment").unwrap();
        let mut schemas = Schemas::default();
        let api_version = &rule.spec.parent.api_version;
        schemas.set_status_shape(StatusShape::decide(
            &schema,
            is_builtin_group(api_version),
            rule.status_fields(),
        ));
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let run = |parent: &Json, observed: &[Json], schemas: Option<&Schemas>| {
            plan(
                &rule,
                Input {
                    parent,
                    observed,
                    now,
                    schemas,
                },
            )
        };
        let controllers = json!({"observedGeneration": 2, "replicas": 1, "conditions": [
            {"type": "Available", "status": "True", "lastUpdateTime": "t0"}]});
        let first = run(&deployment(controllers.clone()), &[], Some(&schemas));
        let written = first.status.clone().unwrap();
        // Only the Ready condition, without observedGeneration; not the controller's
        // observedGeneration, not the projected image.
        assert_eq!(written.as_object().unwrap().len(), 1, "{written}");
        assert_eq!(written["conditions"].as_array().unwrap().len(), 1);
        assert_eq!(written["conditions"][0]["type"], READY);
        assert!(written["conditions"][0].get(OBSERVED_GENERATION).is_none());
        // Without the schema (offline), everything as before.
        let unknown = run(&deployment(controllers.clone()), &[], None)
            .status
            .unwrap();
        assert_eq!(unknown[OBSERVED_GENERATION], 3);

        // Stored the way the API server keeps it (the controller's keys beside ruleop's in
        // its entry, an empty message dropped), with the child there: Ready, then nothing.
        let mut child = first.apply[0].object.clone();
        child["metadata"]["uid"] = json!("c1");
        child["metadata"]["managedFields"] = json!([{"manager": meta::FIELD_MANAGER}]);
        let observed = [child];
        let mut status = controllers;
        status["conditions"]
            .as_array_mut()
            .unwrap()
            .push(written["conditions"][0].clone());
        let ready = run(&deployment(status.clone()), &observed, Some(&schemas));
        let ready = ready.status.unwrap()["conditions"][0].clone();
        assert_eq!(ready["status"], "True");
        let mut stored = ready.clone();
        stored["lastUpdateTime"] = Json::Null;
        if stored["message"] == "" {
            stored.as_object_mut().unwrap().remove("message");
        }
        status["conditions"][1] = stored;
        let settled = run(&deployment(status), &observed, Some(&schemas));
        assert!(settled.status.is_none(), "{:?}", settled.status);
        assert!(settled.events.is_empty(), "{:?}", settled.events);
    }

    #[test]
    fn ready_is_announced_after_a_problem_not_after_progress() {
        let rule = ruleop_lang::load::parse_rule("d.yaml".as_ref(), DEPLOYMENT).unwrap();
        let now: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        let first = plan(
            &rule,
            Input {
                parent: &deployment(json!({})),
                observed: &[],
                now,
                schemas: None,
            },
        );
        let mut child = first.apply[0].object.clone();
        child["metadata"]["uid"] = json!("c1");
        child["metadata"]["managedFields"] = json!([{"manager": meta::FIELD_MANAGER}]);
        let after = |reason: &str| {
            let status = json!({"conditions": [{"type": READY, "status": "False",
                "reason": reason, "message": "m", "lastTransitionTime": "2025-01-01T00:00:00Z"}]});
            let p = plan(
                &rule,
                Input {
                    parent: &deployment(status),
                    observed: std::slice::from_ref(&child),
                    now,
                    schemas: None,
                },
            );
            assert_eq!(
                p.status.as_ref().unwrap()["conditions"][0]["status"],
                "True"
            );
            p.events
                .iter()
                .map(|e| e.reason.clone())
                .collect::<Vec<_>>()
        };
        assert!(after(crate::reason::PROGRESSING).is_empty());
        assert_eq!(after(crate::reason::RENDER_FAILED), [READY]);
        assert_eq!(after("LookupMissing"), [READY]);
    }

    #[test]
    fn the_waiting_reason_is_the_rules_own_when_it_declares_ready() {
        let memcached = include_str!("../../../rules/memcached.yaml");
        let declared = ruleop_lang::load::parse_rule("m.yaml".as_ref(), memcached).unwrap();
        assert_eq!(crate::ready::waiting_reason(&declared), "NotReady");
        let generic = ruleop_lang::load::parse_rule("d.yaml".as_ref(), DEPLOYMENT).unwrap();
        assert_eq!(
            crate::ready::waiting_reason(&generic),
            crate::reason::PROGRESSING
        );
    }
}
