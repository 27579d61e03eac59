//! Converged plans remembered by the identity of their inputs: a parent whose object and
//! observed objects are, by uid and resourceVersion, those of an earlier plan that wrote
//! nothing is not planned again (issue 16: skip parents whose inputs did not change).
//!
//! The planner is a pure function of the rule, the parent, the observed objects, the
//! schemas and the time, so its result can be reused when all of them are the same: the
//! memo is the runtime's, one per active rule (a reloaded rule starts empty), the key holds every
//! object's uid and resourceVersion in order (the API server changes the resourceVersion on
//! every write) and the schemas' version, and a rule whose templates may read `now` is never
//! remembered. Only plans that write nothing are kept: their only use of the time would be a
//! condition's transition time, which a plan that writes no status does not carry.
//!
//! What is kept is the quiet plan's outcome, not its renderings: the up-to-date children's
//! manifests are dropped (acting on an up-to-date child sends nothing), because a parsed
//! manifest costs about ten times its text and the memo holds one entry per parent: at 5,000
//! parents the full plans were about 80 MiB of the operator's memory.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};

use serde_json::Value as Json;

use ruleop_lang::rule::CompiledRule;
use ruleop_plan::{Action, FinalizerChange, Input, Plan, plan};
use ruleop_schema::meta;
use ruleop_schema::openapi::Schemas;

/// Parents remembered per rule; past this the memo starts over (memory stays bounded). Above
/// the parent counts the scale bench runs (10,000): a cap below the number of parents would
/// clear the memo over and over and it would rarely hit. An entry is the key's ids and the
/// owned status (no manifests), about a kilobyte.
const MAX_PARENTS: usize = 32_768;

/// The identity of a plan's inputs, owned: built only when a plan is remembered.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    parent: (String, String),
    observed: Vec<(String, String)>,
    schemas: Option<u64>,
}

impl Key {
    /// The key of `input`; `None` when some object has no identity.
    fn of(input: &Input<'_>) -> Option<Self> {
        let owned = |(uid, version): (&str, &str)| (uid.to_string(), version.to_string());
        Some(Self {
            parent: owned(identity(input.parent)?),
            observed: input
                .observed
                .iter()
                .map(|o| identity(o).map(owned))
                .collect::<Option<_>>()?,
            schemas: input.schemas.map(Schemas::version),
        })
    }

    /// Whether `input` has exactly these identities, compared in place: a lookup, done on
    /// every reconcile, allocates nothing.
    fn matches(&self, input: &Input<'_>) -> bool {
        let same = |known: &(String, String), obj: &Json| {
            identity(obj) == Some((known.0.as_str(), known.1.as_str()))
        };
        same(&self.parent, input.parent)
            && self.schemas == input.schemas.map(Schemas::version)
            && self.observed.len() == input.observed.len()
            && self
                .observed
                .iter()
                .zip(input.observed)
                .all(|(known, obj)| same(known, obj))
    }
}

/// Converged plans by parent uid, with the inputs they were planned from.
#[derive(Debug, Default)]
pub struct PlanMemo(Mutex<HashMap<String, (Key, Plan)>>);

/// `uid` and `resourceVersion`; `None` when either is missing (an object not read from the
/// API server, as in `ruleop render` and tests: its content has no identity to key on).
fn identity(obj: &Json) -> Option<(&str, &str)> {
    let uid = meta::uid(obj);
    let version = meta::at(obj, "/metadata/resourceVersion")?.as_str()?;
    (!uid.is_empty() && !version.is_empty()).then_some((uid, version))
}

/// Whether the plan of `input` may be remembered: not when the rule's templates may read
/// the time, nor for a parent being deleted (cleanup steps wait on the clock).
fn applies(rule: &CompiledRule, input: &Input<'_>) -> bool {
    !rule.templates.reads_now() && !meta::is_deleting(input.parent)
}

/// Whether `plan` writes nothing and reports nothing.
fn is_quiet(plan: &Plan) -> bool {
    plan.apply.iter().all(|d| d.action == Action::UpToDate)
        && plan.delete.is_empty()
        && plan.decorate.is_empty()
        && plan.undecorate.is_empty()
        && plan.status.is_none()
        && plan.events.is_empty()
        && plan.finalizer == FinalizerChange::None
        && plan.failure.is_none()
}

/// What acting on the quiet `plan` needs: nothing to apply (its children are up to date),
/// the requeue and the status ruleop owns (read when an act fails).
fn outcome(plan: &Plan) -> Plan {
    Plan {
        owned_status: plan.owned_status.clone(),
        status_shape: plan.status_shape.clone(),
        requeue_after: plan.requeue_after,
        ..Plan::default()
    }
}

impl PlanMemo {
    /// [`plan`], for the controller: a plan that writes nothing is remembered by its inputs'
    /// identity (uids and resourceVersions from the API server) and returned again while they
    /// stay the same. `render` and `ruleop test` plan from scratch: their objects'
    /// resourceVersions are not kept by a server.
    pub fn plan(&self, rule: &CompiledRule, input: Input<'_>) -> Plan {
        if !applies(rule, &input) {
            return plan(rule, input);
        }
        if let Some(known) = self.get(&input) {
            return known;
        }
        let plan = plan(rule, input);
        self.put(&input, &plan);
        plan
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Key, Plan)>> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The plan remembered for exactly the inputs of `input`.
    fn get(&self, input: &Input<'_>) -> Option<Plan> {
        let (uid, _) = identity(input.parent)?;
        let memo = self.lock();
        let (known, plan) = memo.get(uid)?;
        known.matches(input).then(|| plan.clone())
    }

    /// Remembers the plan of `input` when it is quiet and every input has an identity;
    /// otherwise forgets the parent's entry.
    fn put(&self, input: &Input<'_>, plan: &Plan) {
        let key = Key::of(input).filter(|_| is_quiet(plan));
        let mut memo = self.lock();
        let Some(key) = key else {
            if let Some((uid, _)) = identity(input.parent) {
                memo.remove(uid);
            }
            return;
        };
        if memo.len() >= MAX_PARENTS {
            memo.clear();
        }
        memo.insert(key.parent.0.clone(), (key, outcome(plan)));
    }

    /// How many parents are remembered.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use ruleop_lang::load::parse_rule;
    use serde_json::json;

    /// A compiled rule with the memo the controller keeps for it.
    struct Rule {
        compiled: CompiledRule,
        memo: PlanMemo,
    }

    impl std::ops::Deref for Rule {
        type Target = CompiledRule;
        fn deref(&self) -> &CompiledRule {
            &self.compiled
        }
    }

    /// A rule unlike the reference ones: a ConfigMap whose data repeats the parent's spec,
    /// generic readiness; `time` puts `now` in the data.
    fn rule(time: bool) -> Rule {
        let stamp = if time {
            "\n          at: \"{{ now }}\""
        } else {
            ""
        };
        let source = format!(
            "apiVersion: ruleop.dev/v1alpha1\nkind: Rule\nmetadata: {{name: echo}}\nspec:\n  parent: {{apiVersion: example.com/v1, kind: Echo}}\n  allow: [{{apiVersion: v1, kind: ConfigMap}}]\n  children:\n    - name: copy\n      apiVersion: v1\n      kind: ConfigMap\n      template: |\n        metadata: {{name: \"{{{{ parent.metadata.name }}}}-copy\"}}\n        data:\n          word: \"{{{{ parent.spec.word }}}}\"{stamp}\n"
        );
        Rule {
            compiled: parse_rule("echo.yaml".as_ref(), &source).unwrap(),
            memo: PlanMemo::default(),
        }
    }

    fn parent(word: &str, version: &str) -> Json {
        json!({"apiVersion": "example.com/v1", "kind": "Echo",
            "metadata": {"name": "e", "namespace": "ns", "uid": "p-1", "generation": 1,
                "resourceVersion": version},
            "spec": {"word": word}})
    }

    fn run(rule: &Rule, parent: &Json, observed: &[Json], schemas: Option<&Schemas>) -> Plan {
        let now = "2026-01-01T00:00:00Z".parse().unwrap();
        rule.memo.plan(
            rule,
            Input {
                parent,
                observed,
                now,
                schemas,
            },
        )
    }

    /// The parent and its child once converged, as the API server holds them.
    fn converged(rule: &Rule, word: &str) -> (Json, Vec<Json>) {
        let mut p = parent(word, "1");
        let first = run(rule, &p, &[], None);
        let mut child = first.apply[0].object.clone();
        child["metadata"]["uid"] = json!("c-1");
        child["metadata"]["resourceVersion"] = json!("5");
        let observed = vec![child];
        let second = run(rule, &p, &observed, None);
        if let Some(status) = second.status {
            p["status"] = status;
        }
        p["metadata"]["resourceVersion"] = json!("2");
        (p, observed)
    }

    #[test]
    fn a_converged_plan_is_reused_while_its_inputs_stay_the_same() {
        let rule = rule(false);
        let (p, observed) = converged(&rule, "hi");
        rule.memo.lock().clear();
        let fresh = run(&rule, &p, &observed, None);
        assert!(is_quiet(&fresh), "{fresh:?}");
        assert_eq!(rule.memo.len(), 1, "remembered");
        let again = run(&rule, &p, &observed, None);
        assert_eq!(rule.memo.len(), 1);
        // The remembered outcome: nothing to do, the same requeue and owned status, and no
        // copy of the up-to-date manifests.
        assert!(is_quiet(&again) && again.apply.is_empty(), "{again:?}");
        assert_eq!(again.requeue_after, fresh.requeue_after);
        assert_eq!(again.owned_status, fresh.owned_status);
        assert!(!fresh.apply.is_empty());
    }

    #[test]
    fn any_changed_input_is_planned_again() {
        let rule = rule(false);
        let (p, observed) = converged(&rule, "hi");
        assert!(is_quiet(&run(&rule, &p, &observed, None)));
        // The child edited by hand: a new resourceVersion, so the plan sees the drift.
        let mut edited = observed.clone();
        edited[0]["data"]["word"] = json!("bye");
        edited[0]["metadata"]["resourceVersion"] = json!("6");
        let drift = run(&rule, &p, &edited, None);
        assert_eq!(drift.apply[0].action, Action::Update);
        assert_eq!(rule.memo.len(), 0, "a plan that writes is not remembered");
        // The parent changed.
        assert!(is_quiet(&run(&rule, &p, &observed, None)));
        let mut changed = p.clone();
        changed["spec"]["word"] = json!("new");
        changed["metadata"]["resourceVersion"] = json!("3");
        assert_eq!(
            run(&rule, &changed, &observed, None).apply[0].action,
            Action::Update
        );
        // Other schemas: compared again, not taken from the memo.
        assert!(is_quiet(&run(&rule, &p, &observed, None)));
        let schemas = Schemas::default();
        let input = |s| Input {
            parent: &p,
            observed: &observed,
            now: "2026-01-01T00:00:00Z".parse().unwrap(),
            schemas: s,
        };
        assert!(rule.memo.get(&input(Some(&schemas))).is_none());
        assert!(rule.memo.get(&input(None)).is_some());
        // The same objects in another order, one more or one fewer: not the same inputs.
        let mut more = observed.clone();
        more.push(p.clone());
        let reordered: Vec<Json> = more.iter().rev().cloned().collect();
        for other in [&more, &reordered, &Vec::new()] {
            let input = Input {
                observed: other,
                ..input(None)
            };
            assert!(rule.memo.get(&input).is_none(), "{other:?}");
        }
        // A reloaded rule starts empty.
        let reloaded = super::tests::rule(false);
        assert!(reloaded.memo.is_empty());
    }

    #[test]
    fn plans_that_may_depend_on_the_time_or_lack_identities_are_not_remembered() {
        let timed = rule(true);
        let (p, observed) = converged(&timed, "hi");
        assert!(timed.templates.reads_now());
        run(&timed, &p, &observed, None);
        assert!(timed.memo.is_empty());
        let plain = rule(false);
        let (p, mut observed) = converged(&plain, "hi");
        observed[0]["metadata"]
            .as_object_mut()
            .unwrap()
            .remove("resourceVersion");
        assert!(is_quiet(&run(&plain, &p, &observed, None)));
        assert!(plain.memo.is_empty());
    }
}
