//! What a plan would change on one live parent, as `ruleop diff` prints it: children created,
//! updated (field by field), recreated or deleted, and the status change.

use std::collections::BTreeMap;
use std::fmt::Write;

use serde_json::Value as Json;

use ruleop_plan::{Action, FinalizerChange, Plan};
use ruleop_schema::jsondiff::{self, Change};
use ruleop_schema::meta::{self, ObjectKey};

/// One child's change.
#[derive(Debug, Clone, PartialEq)]
pub enum ChildChange {
    /// Created with this manifest.
    Create(ObjectKey),
    /// Applied in place; the fields that change (live → rendered).
    Update(ObjectKey, Vec<Change>),
    /// Deleted and created again (`updateStrategy: Recreate`).
    Recreate(ObjectKey),
    /// Deleted, and why.
    Delete(ObjectKey, String),
    /// Its name is taken by an object this parent does not own: left alone.
    Conflict(ObjectKey),
}

impl ChildChange {
    /// The verb of the summary line (`created`, `updated`, ...).
    pub fn verb(&self) -> &'static str {
        match self {
            Self::Create(_) => "created",
            Self::Update(..) => "updated",
            Self::Recreate(_) => "recreated",
            Self::Delete(..) => "deleted",
            Self::Conflict(_) => "in conflict",
        }
    }

    /// The object.
    pub fn key(&self) -> &ObjectKey {
        match self {
            Self::Create(k)
            | Self::Update(k, _)
            | Self::Recreate(k)
            | Self::Delete(k, _)
            | Self::Conflict(k) => k,
        }
    }
}

/// What planning one parent would change.
#[derive(Debug, Clone, PartialEq)]
pub struct ParentDiff {
    /// The parent.
    pub parent: ObjectKey,
    /// Child changes, in plan order (applies, then deletions).
    pub children: Vec<ChildChange>,
    /// Status fields that change (current → planned).
    pub status: Vec<Change>,
    /// The finalizer change.
    pub finalizer: FinalizerChange,
    /// The plan's failure message, if it failed.
    pub failure: Option<String>,
}

impl ParentDiff {
    /// Whether applying the plan would write anything (a conflict writes nothing).
    pub fn changes(&self) -> bool {
        self.children
            .iter()
            .any(|c| !matches!(c, ChildChange::Conflict(_)))
            || !self.status.is_empty()
            || self.finalizer != FinalizerChange::None
    }
}

/// Fields of a rendered child that are ruleop's bookkeeping, not the author's content.
fn bookkeeping(change: &Change) -> bool {
    change.path == format!("metadata.annotations.{}", meta::HASH_ANNOTATION)
}

/// The fields ruleop's own apply owns on `live` (`fieldsV1` of its managed fields entry).
fn applied_fields(live: &Json) -> Option<&Json> {
    live.pointer("/metadata/managedFields")?
        .as_array()?
        .iter()
        .find(|e| {
            e.get("manager").and_then(Json::as_str) == Some(meta::FIELD_MANAGER)
                && e.get("operation").and_then(Json::as_str) == Some("Apply")
                && e.get("subresource")
                    .is_none_or(|s| s.as_str().unwrap_or_default().is_empty())
        })?
        .get("fieldsV1")
}

/// The difference `plan` makes to `parent`, whose children and related objects are
/// `observed`. An update lists the rendered fields whose live value differs.
pub fn diff(parent: &Json, observed: &[Json], plan: &Plan) -> ParentDiff {
    let mut children = Vec::new();
    for d in &plan.apply {
        let key = ObjectKey::of(&d.object);
        children.push(match d.action {
            Action::UpToDate => continue,
            Action::Create => ChildChange::Create(key),
            Action::Recreate => ChildChange::Recreate(key),
            Action::Conflict => ChildChange::Conflict(key),
            Action::Update => {
                let live = observed
                    .iter()
                    .find(|o| ObjectKey::of(o).same_object(&key))
                    .cloned()
                    .unwrap_or(Json::Null);
                // `missing(rendered, live)` reports rendered fields (old side) against the
                // live ones; swap so changes read live → rendered.
                let mut fields: Vec<Change> = jsondiff::missing(&d.object, &live)
                    .into_iter()
                    .map(|c| Change {
                        path: c.path,
                        old: c.new,
                        new: c.old,
                    })
                    .collect();
                // And the fields ruleop applied before that the rule no longer sets.
                if let Some(owned) = applied_fields(&live) {
                    fields.extend(jsondiff::removed(owned, &live, &d.object));
                }
                fields.retain(|c| !bookkeeping(c));
                fields.sort_by(|a, b| a.path.cmp(&b.path));
                ChildChange::Update(key, fields)
            }
        });
    }
    for d in &plan.delete {
        children.push(ChildChange::Delete(d.key.clone(), d.reason.clone()));
    }
    let status = match &plan.status {
        Some(new) => {
            let old = parent
                .get("status")
                .cloned()
                .unwrap_or(Json::Object(Default::default()));
            jsondiff::changes(&old, new)
        }
        None => Vec::new(),
    };
    ParentDiff {
        parent: ObjectKey::of(parent),
        children,
        status,
        finalizer: plan.finalizer,
        failure: plan.failure.as_ref().map(|f| f.message.clone()),
    }
}

/// The readable report of one parent that changes (or has conflicts).
pub fn render(d: &ParentDiff) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}:", d.parent);
    if let Some(f) = &d.failure {
        let _ = writeln!(out, "  ! plan failed: {f}");
    }
    for c in &d.children {
        let _ = match c {
            ChildChange::Create(k) => writeln!(out, "  + create {k}"),
            ChildChange::Recreate(k) => writeln!(out, "  ± recreate {k} (updateStrategy Recreate)"),
            ChildChange::Delete(k, why) => writeln!(out, "  - delete {k} ({why})"),
            ChildChange::Conflict(k) => writeln!(
                out,
                "  ! conflict {k}: exists and is not owned by this parent; left alone"
            ),
            ChildChange::Update(k, fields) => {
                let _ = writeln!(out, "  ~ update {k}");
                if fields.is_empty() {
                    // ruleop's managed fields were not readable: the rendering changed only
                    // by what it no longer sets.
                    let _ = writeln!(out, "      (fields the rule no longer sets are removed)");
                }
                fields.iter().try_for_each(|f| writeln!(out, "      {f}"))
            }
        };
    }
    match d.finalizer {
        FinalizerChange::Add => {
            let _ = writeln!(out, "  + finalizer {}", meta::FINALIZER);
        }
        FinalizerChange::Remove => {
            let _ = writeln!(out, "  - finalizer {}", meta::FINALIZER);
        }
        FinalizerChange::None => {}
    }
    if !d.status.is_empty() {
        let _ = writeln!(out, "  ~ status");
        for f in &d.status {
            let _ = writeln!(out, "      {f}");
        }
    }
    out
}

/// The summary line: `3 of 120 parents change: 3 Deployments updated, 1 status changed`.
pub fn summary(diffs: &[ParentDiff], total: usize) -> String {
    let changed = diffs.iter().filter(|d| d.changes()).count();
    let mut counts: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    let mut statuses = 0;
    for d in diffs {
        for c in &d.children {
            *counts.entry((c.verb(), c.key().kind.as_str())).or_default() += 1;
        }
        if !d.status.is_empty() {
            statuses += 1;
        }
    }
    let plural = |n: usize, word: &str| {
        if n == 1 {
            format!("{n} {word}")
        } else if word.ends_with('s') {
            format!("{n} {word}es")
        } else {
            format!("{n} {word}s")
        }
    };
    let mut parts: Vec<String> = counts
        .iter()
        .map(|((verb, kind), n)| format!("{} {verb}", plural(*n, kind)))
        .collect();
    if statuses > 0 {
        parts.push(format!("{} changed", plural(statuses, "status")));
    }
    let head = format!("{changed} of {} change", plural(total, "parent"));
    if parts.is_empty() {
        head
    } else {
        format!("{head}: {}", parts.join(", "))
    }
}

/// `namespace/name` of a parent, as staged rollouts name it.
pub fn parent_key(parent: &Json) -> String {
    crate::controller::staged::parent_key(meta::namespace(parent), meta::name(parent))
}

/// The parents the first step of a staged rollout moves (the same choice as the
/// controller's: selector, or a share by uid hash).
pub fn first_step(
    policy: &ruleop_lang::rule::StagingPolicy,
    parents: &[Json],
) -> std::collections::HashSet<String> {
    use ruleop_lang::staged::{Candidate, effective_steps, select};
    let candidates: Vec<Candidate> = parents
        .iter()
        .map(|p| Candidate {
            key: parent_key(p),
            uid: meta::uid(p).to_string(),
            labels: p
                .pointer("/metadata/labels")
                .and_then(Json::as_object)
                .into_iter()
                .flatten()
                .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                .collect(),
        })
        .collect();
    select(&effective_steps(policy), &candidates)
        .into_iter()
        .next()
        .unwrap_or_default()
        .into_iter()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ruleop_lang::rule::UpdateStrategy;
    use ruleop_plan::{Deletion, Desired};
    use serde_json::json;

    fn desired(object: Json, action: Action) -> Desired {
        Desired {
            child: "c".into(),
            object,
            action,
            strategy: UpdateStrategy::Apply,
            repair: None,
            handover: Vec::new(),
            uid: None,
            bindings: None,
        }
    }

    #[test]
    fn an_update_lists_rendered_fields_that_differ_from_the_live_object() {
        let parent = json!({"kind": "Shelf", "metadata": {"name": "p", "namespace": "ns"}, "status": {"n": 1}});
        let rendered = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns", "annotations": {"ruleop.dev/hash": "new"}}, "data": {"x": "2", "y": "same"}});
        let live = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "namespace": "ns", "uid": "u", "annotations": {"ruleop.dev/hash": "old"}}, "data": {"x": "1", "y": "same", "z": "other manager"}});
        let gone = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "ns"}});
        let plan = Plan {
            apply: vec![
                desired(rendered, Action::Update),
                desired(
                    json!({"kind": "Secret", "metadata": {"name": "s", "namespace": "ns"}}),
                    Action::UpToDate,
                ),
            ],
            delete: vec![Deletion {
                child: "c".into(),
                key: ObjectKey::of(&gone),
                uid: "u2".into(),
                reason: "no longer rendered by the rule".into(),
            }],
            status: Some(json!({"n": 2})),
            ..Plan::default()
        };
        let d = diff(&parent, &[live], &plan);
        assert!(d.changes());
        assert_eq!(
            render(&d),
            "Shelf/ns/p:\n  ~ update ConfigMap/ns/a\n      ~ data.x: \"1\" -> \"2\"\n  - delete ConfigMap/ns/b (no longer rendered by the rule)\n  ~ status\n      ~ n: 1 -> 2\n"
        );
        assert_eq!(
            summary(&[d], 7),
            "1 of 7 parents change: 1 ConfigMap deleted, 1 ConfigMap updated, 1 status changed"
        );
    }

    #[test]
    fn nothing_to_do_is_no_change_and_a_conflict_writes_nothing() {
        let parent = json!({"kind": "Shelf", "metadata": {"name": "p"}});
        let empty = diff(&parent, &[], &Plan::default());
        assert!(!empty.changes());
        let conflict = Plan {
            apply: vec![desired(
                json!({"kind": "ConfigMap", "metadata": {"name": "x"}}),
                Action::Conflict,
            )],
            ..Plan::default()
        };
        let d = diff(&parent, &[], &conflict);
        assert!(!d.changes());
        assert_eq!(
            summary(&[empty, d], 2),
            "0 of 2 parents change: 1 ConfigMap in conflict"
        );
    }
}
