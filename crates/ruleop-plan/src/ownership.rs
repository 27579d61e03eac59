//! Which observed objects are provably a parent's children. ruleop never adopts an object it
//! did not make, and still recognises its own child when a label or the ownerReference was
//! removed by hand (so it repairs that child instead of creating a second one).

use serde_json::Value as Json;

use ruleop_lang::rule::CompiledRule;
use ruleop_schema::meta;

/// Whether `obj` is provably a child that rule `rule` made for the parent with `parent_uid`:
/// no other object controls it, and either it carries ruleop's owner and rule labels for
/// this parent, or the parent is its controller and ruleop's field manager wrote it.
pub fn is_ours(obj: &Json, rule: &str, parent_uid: &str) -> bool {
    let labelled = meta::label(obj, meta::OWNER_LABEL) == Some(parent_uid)
        && meta::label(obj, meta::RULE_LABEL) == Some(rule);
    match meta::controller_uid(obj) {
        // Controlled by something else: someone else's, whatever its labels say.
        Some(controller) if controller != parent_uid => false,
        // The field manager tells ruleop's child from an object another controller made
        // for the same parent (a Job's Pods, a Deployment's ReplicaSets).
        Some(_) => labelled || meta::written_by(obj, meta::FIELD_MANAGER),
        None => labelled,
    }
}

/// The rule's child (or cleanup step) an object of this parent was rendered for: its
/// `ruleop.dev/child` label, else the only child of its kind (when the label was removed).
pub(super) fn child_name<'a>(rule: &'a CompiledRule, obj: &'a Json) -> Option<&'a str> {
    if let Some(name) = meta::label(obj, meta::CHILD_LABEL) {
        return Some(name);
    }
    let same_kind = |api_version: &str, kind: &str| {
        kind == meta::kind(obj)
            && ruleop_lang::rule::split_api_version(api_version).0 == meta::group(obj)
    };
    let replicated = meta::annotation(obj, meta::REPLICA_ANNOTATION).is_some();
    let mut candidates: Vec<(&str, bool)> = rule
        .spec
        .children
        .iter()
        .filter(|c| same_kind(&c.api_version, &c.kind))
        .map(|c| (c.name.as_str(), c.replicas.is_some()))
        .chain(
            rule.spec
                .finalizer
                .iter()
                .flat_map(|f| &f.cleanup)
                .filter(|s| same_kind(&s.api_version, &s.kind))
                .map(|s| (s.name.as_str(), false)),
        )
        .collect();
    if candidates.len() > 1 {
        candidates.retain(|(_, r)| *r == replicated);
    }
    match candidates.as_slice() {
        [(name, _)] => Some(name),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(labels: Json, owner_refs: Json, managers: &[&str]) -> Json {
        let managed: Vec<Json> = managers.iter().map(|m| json!({"manager": m})).collect();
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": labels,
            "ownerReferences": owner_refs, "managedFields": managed}})
    }

    fn controller(uid: &str) -> Json {
        json!([{"uid": uid, "controller": true}])
    }

    #[test]
    fn ours_by_labels_or_by_controller_and_field_manager() {
        let labels = json!({meta::OWNER_LABEL: "p1", meta::RULE_LABEL: "r"});
        // Labels and controller: ours; labels alone (ownerReference removed): ours.
        assert!(is_ours(
            &object(labels.clone(), controller("p1"), &[]),
            "r",
            "p1"
        ));
        assert!(is_ours(&object(labels.clone(), json!([]), &[]), "r", "p1"));
        // Labels removed, controller left, written by ruleop: ours.
        assert!(is_ours(
            &object(
                json!({}),
                controller("p1"),
                &["kubectl", meta::FIELD_MANAGER]
            ),
            "r",
            "p1"
        ));
        // Controlled by the parent but made by someone else (a Job's Pod): not ours.
        assert!(!is_ours(
            &object(json!({}), controller("p1"), &["kube-controller-manager"]),
            "r",
            "p1"
        ));
        // Another controller, another parent, another rule, nothing at all: not ours.
        assert!(!is_ours(
            &object(labels.clone(), controller("x"), &[]),
            "r",
            "p1"
        ));
        assert!(!is_ours(&object(labels.clone(), json!([]), &[]), "r", "p2"));
        assert!(!is_ours(&object(labels, json!([]), &[]), "other", "p1"));
        assert!(!is_ours(
            &object(json!({}), json!([]), &[meta::FIELD_MANAGER]),
            "r",
            "p1"
        ));
    }
}
