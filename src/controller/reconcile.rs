//! The workers: observe → plan → act for one parent at a time.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use serde_json::Value as Json;

use super::Controller;
use super::conflicts::{conflicts_of, name_holders};
use super::queue::{Key, Outcome};
use crate::apply::Target;
use crate::cache::Cached;
use crate::meta;
use crate::plan::{self, Input};
use crate::rule::Scope;
use crate::telemetry::{ResultLabels, RuleLabels};

impl Controller {
    pub(super) async fn work(self: Arc<Self>) {
        loop {
            let next = tokio::select! {
                () = self.cancel.cancelled() => return,
                next = self.queue.next() => next,
            };
            let Some((key, waited)) = next else { return };
            self.metrics.queue_wait.observe(waited.as_secs_f64());
            self.metrics.queue_depth.set(self.queue.depth() as i64);
            let started = Instant::now();
            let (outcome, result) = match self.reconcile(&key).await {
                Some(report) => (report.outcome, Some((report.result, report.reason))),
                None => (Outcome::Ok(None), None),
            };
            if let Some((result, reason)) = result {
                let labels = RuleLabels {
                    rule: key.rule.clone(),
                };
                self.metrics
                    .duration
                    .get_or_create(&labels)
                    .observe(started.elapsed().as_secs_f64());
                self.metrics
                    .reconciles
                    .get_or_create(&ResultLabels {
                        rule: key.rule.clone(),
                        result: result.into(),
                    })
                    .inc();
                if let Some(reason) = reason {
                    self.metrics
                        .errors
                        .get_or_create(&crate::telemetry::ErrorLabels {
                            rule: key.rule.clone(),
                            reason,
                        })
                        .inc();
                }
            }
            self.queue.done(&key, outcome);
        }
    }

    /// Observe → plan → act for one parent. `None` when there is nothing to do (rule or
    /// parent gone).
    pub(super) async fn reconcile(self: &Arc<Self>, key: &Key) -> Option<crate::apply::Report> {
        let rule = self.rules_read().get(&key.rule).cloned()?;
        // Planned against a cache that has not listed, existing children would look missing;
        // the snapshot keeps a cache replaced meanwhile (re-watched in full) out of this plan.
        let caches = self.admit(&rule, key)?;
        let parent_cache = caches.get(&rule.parent)?.clone();
        let Some(cached_parent) = parent_cache.get(&key.namespace, &key.name) else {
            self.queue.forget(key);
            self.related_index()
                .remove(&key.rule, &(key.namespace.clone(), key.name.clone()));
            self.conflicts_lock().set(key, Vec::new());
            self.lookup_index()
                .remove(&key.rule, &(key.namespace.clone(), key.name.clone()));
            return None;
        };
        let parent = cached_parent.json();
        let compiled = rule.rule();
        let uid = meta::uid(&parent);
        // Owned objects of every watched kind: a changed rule may have dropped a kind whose
        // old children must still be pruned.
        let mut kinds = HashMap::new();
        let mut observed: Vec<Json> = Vec::new();
        // An object is observed once, even when it is both a child and related (a rule
        // whose replicas are also selected as related objects).
        let mut seen: HashSet<String> = HashSet::new();
        for (gk, cache) in &caches {
            if cache.managed_only || rule.children.contains(gk) || self.is_child_kind(gk) {
                extend_unique(&mut observed, &mut seen, cache.owned_by(uid));
                kinds.insert(gk.clone(), cache.clone());
            }
        }
        let namespace =
            (compiled.spec.parent.scope == Scope::Namespaced).then_some(key.namespace.as_str());
        let now = Timestamp::now();
        if !rule.related.is_empty() {
            // Every parent change and every rule (re)start reconciles the parent, so the
            // routing index is kept here, in one place.
            let selectors = plan::related_selectors(compiled, &parent, now).unwrap_or_default();
            for (gk, selector) in rule.related.iter().zip(&selectors) {
                if let Some(c) = caches.get(gk) {
                    let namespace = namespace.filter(|_| c.namespaced);
                    extend_unique(&mut observed, &mut seen, c.select(namespace, selector));
                }
            }
            self.record_selectors(&rule, cached_parent.key(), selectors);
        }
        if !rule.lookups.is_empty() {
            // As for related objects: the index is kept where every parent change lands.
            let targets = plan::lookup_targets(compiled, &parent, now).unwrap_or_default();
            let mut routed = Vec::new();
            for ((gk, namespaced), target) in rule.lookups.iter().zip(&targets) {
                let ns = if *namespaced {
                    target.namespace.as_str()
                } else {
                    ""
                };
                if let Some(found) = caches.get(gk).and_then(|c| c.get(ns, &target.name)) {
                    extend_unique(&mut observed, &mut seen, vec![found]);
                }
                routed.push((gk.clone(), ns.to_string(), target.name.clone()));
            }
            self.lookup_index()
                .set(&compiled.name, cached_parent.key(), routed);
        }
        let schemas = rule.schemas.current();
        let input = Input {
            parent: &parent,
            observed: &observed,
            now,
            schemas: Some(&schemas),
        };
        let mut plan = plan::plan(compiled, input);
        // An object that already holds a name the plan creates (another rule's child, or
        // anything else a cache holds) is shown to the planner, which leaves it alone.
        let holders = name_holders(&plan, &kinds);
        if !holders.is_empty() {
            observed.extend(holders);
            let input = Input {
                parent: &parent,
                observed: &observed,
                now,
                schemas: Some(&schemas),
            };
            plan = plan::plan(compiled, input);
        }
        self.conflicts_lock().set(key, conflicts_of(&plan));
        let writes = plan
            .apply
            .iter()
            .filter(|d| d.action != plan::Action::UpToDate)
            .count()
            + plan.delete.len();
        if let Some(f) = &plan.failure {
            // Bad input or a rule that cannot render: the parent's status and a Warning Event
            // say so too; the log names the parent in separate fields for searching.
            tracing::warn!(
                rule = %key.rule,
                kind = meta::kind(&parent),
                namespace = %key.namespace,
                name = %key.name,
                reason = %f.reason,
                error = %f.message,
                "reconcile failed"
            );
        }
        if writes > 0 || plan.status.is_some() {
            tracing::info!(
                parent = %key,
                apply = writes - plan.delete.len(),
                delete = plan.delete.len(),
                status = plan.status.is_some(),
                failure = plan.failure.as_ref().map(|f| f.message.as_str()),
                "reconciling"
            );
        }
        let target = Target {
            parent: &parent,
            parent_kind: &parent_cache,
            kinds: &kinds,
            failures: self.queue.failures(key),
        };
        Some(self.actor.execute(&target, plan).await)
    }
}

/// Adds the objects not seen yet (by uid).
pub(super) fn extend_unique(
    observed: &mut Vec<Json>,
    seen: &mut HashSet<String>,
    objects: Vec<Arc<Cached>>,
) {
    for o in objects {
        if seen.insert(o.uid().to_string()) {
            observed.push(o.json());
        }
    }
}
