//! Parent selectors in the controller (`spec.parent.selector`, `annotationSelector`): the
//! label selector sent with the parent watch, which parent events are routed, and the
//! release of a parent that stopped matching.
//!
//! An unselected parent is never planned. One that carries something of ruleop's (its
//! finalizer, or the rule's condition or status fields) stopped matching: it is released
//! once, and from then on nothing routes it.

use std::sync::Arc;

use kube::api::{Api, DynamicObject, ListParams};
use serde_json::Value as Json;

use super::queue::{Key, Outcome};
use super::{ActiveRule, Controller};
use crate::apply::Report;
use crate::cache::{Cached, Change, GroupKind};
use ruleop_lang::rule::{LabelSelector, RemovalPolicy};
use ruleop_schema::meta;

/// Whether `rule` governs `parent`: no selector, or every requirement met. Annotations are
/// read from the object's body only for rules that select by them.
pub(super) fn governs(rule: &ActiveRule, parent: &Cached) -> bool {
    let selection = &rule.rule().spec.parent;
    if !selection.is_selective() {
        return true;
    }
    let body = selection
        .annotation_selector
        .is_some()
        .then(|| parent.json());
    let label = |k: &str| parent.label(k).map(str::to_string);
    let annotation = |k: &str| {
        body.as_ref()
            .and_then(|b| meta::annotation(b, k))
            .map(str::to_string)
    };
    selection.unselected_by(&label, &annotation).is_none()
}

/// Whether `parent` carries something ruleop put there for `rule`: what a release removes.
fn holds_something(rule: &ActiveRule, parent: &Json) -> bool {
    meta::has_finalizer(parent, meta::FINALIZER)
        || ruleop_plan::shows_rule_status(rule.rule(), parent)
}

/// Whether a change of a parent-kind object is queued for `rule`: it is selected, was
/// selected before the change (or arrives as a deletion from a selecting watch, which sends
/// the object as it last matched), or still carries ruleop's finalizer or condition (it
/// stopped matching while no transition was seen: a restart, a reload).
pub(super) fn routes_parent(rule: &ActiveRule, change: &Change) -> bool {
    governs(rule, &change.object)
        || change.old.as_ref().is_some_and(|o| governs(rule, o))
        || (rule.rule().spec.parent.is_selective() && holds_something(rule, &change.object.json()))
}

/// Whether a cached parent is queued when its rule (re)starts.
pub(super) fn enqueued_at_start(rule: &ActiveRule, parent: &Cached) -> bool {
    governs(rule, parent) || holds_something(rule, &parent.json())
}

impl Controller {
    /// The label selector a watch of `gk` may send: `Some` only when every active rule that
    /// uses the kind has it as parent with the same non-empty label selector (a kind also
    /// used as child, related or looked-up kind, or by a rule selecting other labels, is
    /// watched whole and selected in-process).
    pub(super) fn watch_selector(&self, gk: &GroupKind) -> Option<String> {
        let rules = self.rules_read();
        let mut wanted: Option<String> = None;
        for r in rules.values() {
            let other_use = r.children.contains(gk)
                || r.related.contains(gk)
                || r.lookups.iter().any(|(k, _)| k == gk);
            if other_use {
                return None;
            }
            if &r.parent != gk {
                continue;
            }
            let query = r
                .rule()
                .spec
                .parent
                .selector
                .as_ref()
                .and_then(LabelSelector::to_query)?;
            match &wanted {
                Some(w) if *w != query => return None,
                _ => wanted = Some(query),
            }
        }
        wanted
    }

    /// A parent the rule does not select: `cached` when the cache holds it (its annotations
    /// or labels no longer match), `None` when the selecting watch dropped it. A dropped
    /// object may have been deleted or may only have lost its label, so it is read from the
    /// API server first: only an existing, unselected object is released, never as a
    /// deletion (no cleanup runs). A parent holding nothing of ruleop's gets no write.
    pub(super) async fn release_unselected(
        &self,
        rule: &ActiveRule,
        key: &Key,
        cached: Option<Arc<Cached>>,
    ) -> Option<Report> {
        let parents = self.cache(&rule.parent)?;
        // The rule's writer: the release's writes go out as its account (reads stay the
        // operator's).
        let api = crate::apply::api_for(&rule.writer.client, &parents, &key.namespace);
        let parent = match cached {
            Some(c) => c.json(),
            None => match api.get_opt(&key.name).await {
                Ok(Some(o)) => serde_json::to_value(o).unwrap_or(Json::Null),
                Ok(None) => Json::Null,
                Err(e) => {
                    tracing::warn!(parent = %key, error = %e, "cannot read a parent the watch no longer selects; retrying");
                    return Some(Report {
                        outcome: Outcome::Retry,
                        result: "error",
                        reason: Some("ReadFailed".into()),
                    });
                }
            },
        };
        let parent_key = (key.rule.clone(), (key.namespace.clone(), key.name.clone()));
        // Deleted, or matching again (the watch brings it back): nothing to release.
        let selected = rule.rule().spec.parent.unselected(&parent).is_none();
        if parent.is_null() || selected {
            if parent.is_null() {
                self.queue.forget(key);
                self.routes().remove(&parent_key);
            }
            return None;
        }
        self.queue.forget(key);
        self.routes().remove(&parent_key);
        if !holds_something(rule, &parent) {
            return None;
        }
        let name = &rule.rule().name;
        tracing::info!(rule = %name, parent = %key, "parent no longer selected: releasing it");
        if rule.rule().spec.parent.on_release == RemovalPolicy::DeleteChildren {
            self.delete_children_of(rule, meta::uid(&parent)).await;
        }
        let fail = |e: crate::apply::ActError| {
            tracing::warn!(rule = %name, parent = %key, error = %e.message(), "cannot release parent; retrying");
            Some(Report {
                outcome: Outcome::Retry,
                result: "error",
                reason: Some(e.reason().into()),
            })
        };
        if ruleop_plan::shows_rule_status(rule.rule(), &parent)
            && let Err(e) = self.actor.clear_status(&api, &parent).await
        {
            return fail(e);
        }
        if meta::has_finalizer(&parent, meta::FINALIZER) {
            // The status write changed the resourceVersion the finalizer patch is guarded
            // by: read the parent again.
            let current = match api.get_opt(&key.name).await {
                Ok(Some(o)) => serde_json::to_value(o).unwrap_or(Json::Null),
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!(parent = %key, error = %e, "cannot read parent to release; retrying");
                    return Some(Report {
                        outcome: Outcome::Retry,
                        result: "error",
                        reason: Some("ReadFailed".into()),
                    });
                }
            };
            // A release queued twice (the status write's own event) finds it gone already.
            if meta::has_finalizer(&current, meta::FINALIZER)
                && let Err(e) = self.actor.set_finalizer(&api, &current, false).await
            {
                return fail(e);
            }
        }
        Some(Report {
            outcome: Outcome::Ok(None),
            result: "ok",
            reason: None,
        })
    }

    /// At a rule's start, finds the parents its label selector does not select that still
    /// carry something of ruleop's (they stopped matching while ruleop was not running, or
    /// an edited rule selects differently): the selecting watch never shows them. One list
    /// per requirement, each of the objects failing it; each found parent is queued and
    /// released as any dropped one. A rule whose parents are watched whole needs none of
    /// this: its start queues every parent holding something.
    pub(super) async fn sweep_unselected(&self, name: &str) {
        let Some(rule) = self.rules_read().get(name).cloned() else {
            return;
        };
        let Some(selector) = rule.rule().spec.parent.selector.clone() else {
            return;
        };
        let Some(cache) = self.cache(&rule.parent) else {
            return;
        };
        if cache.label_selector.is_none() {
            return;
        }
        let apis: Vec<Api<DynamicObject>> =
            if self.config.namespaces.is_empty() || !cache.namespaced {
                vec![Api::all_with(self.client.clone(), &cache.resource)]
            } else {
                self.config
                    .namespaces
                    .iter()
                    .map(|ns| crate::apply::api_for(&self.client, &cache, ns))
                    .collect()
            };
        for api in &apis {
            for query in selector.negations() {
                let mut params = ListParams::default().labels(&query).limit(500);
                loop {
                    let page = match api.list(&params).await {
                        Ok(page) => page,
                        Err(e) => {
                            tracing::warn!(rule = %name, error = %e, "cannot list parents the selector no longer selects; those stay unreleased until they match again");
                            break;
                        }
                    };
                    for o in page.items {
                        let parent = serde_json::to_value(o).unwrap_or(Json::Null);
                        if holds_something(&rule, &parent) {
                            self.queue.add(Key {
                                rule: name.to_string(),
                                namespace: meta::namespace(&parent).to_string(),
                                name: meta::name(&parent).to_string(),
                            });
                        }
                    }
                    match page.metadata.continue_ {
                        Some(token) if !token.is_empty() => {
                            params = params.continue_token(&token);
                        }
                        _ => break,
                    }
                }
            }
        }
    }

    /// Deletes the children `rule` rendered for the parent with `uid` (`onRelease:
    /// DeleteChildren`).
    async fn delete_children_of(&self, rule: &ActiveRule, uid: &str) {
        let name = &rule.rule().name;
        for gk in &rule.children {
            let Some(cache) = self.cache(gk) else {
                continue;
            };
            for obj in cache
                .owned_by(uid)
                .iter()
                .filter(|o| o.label(meta::RULE_LABEL) == Some(name.as_str()))
            {
                if let Err(e) = self
                    .actor
                    .delete_object(&rule.writer.client, &cache, &obj.json())
                    .await
                {
                    tracing::warn!(rule = %name, error = %e, "cannot delete child of released parent");
                }
            }
        }
    }
}
