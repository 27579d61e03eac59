//! The workers: observe → plan → act for one parent at a time.

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;

use super::gate::Snapshot;
use super::memo::PlanMemo;
use super::observe::conflicts_of;
use super::observe::{Observation, RuleKinds, observe, plan_observed};
use super::queue::{Key, Outcome};
use super::routes::{Facet, Interest};
use super::staged::Choice;
use super::{ActiveRule, Controller};
use crate::apply::Target;
use crate::cache::Cached;
use crate::telemetry::{ResultLabels, RuleLabels};
use ruleop_lang::rule::CompiledRule;
use ruleop_plan as plan;
use ruleop_schema::meta;

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
            // A selecting watch drops a parent that lost its label as if it were deleted.
            if parent_cache.label_selector.is_some() {
                return self.release_unselected(&rule, key, None).await;
            }
            self.queue.forget(key);
            self.forget_outcome(key);
            self.routes()
                .remove(&(key.rule.clone(), (key.namespace.clone(), key.name.clone())));
            return None;
        };
        if !super::select::governs(&rule, &cached_parent) {
            return self
                .release_unselected(&rule, key, Some(cached_parent))
                .await;
        }
        // A `Staged` rule plans a parent not moved yet with its revision's compiled rule.
        let pinned = if rule.rule().spec.rollout.is_staged() {
            match self.choose(&rule, &cached_parent) {
                Choice::Active => None,
                Choice::Pinned(n, compiled, memo) => Some((n, compiled, memo)),
                Choice::Wait => return None,
            }
        } else {
            None
        };
        let now = Timestamp::now();
        // Renders run on the blocking pool, never on the runtime's thread: a rule whose
        // templates keep a core busy for seconds must not hold up lease renewal, health
        // probes, the API client's connections or other rules' parents. Everything the plan
        // reads is owned or shared (`Arc`), the plan memo included.
        let planned = {
            let (this, rule) = (Arc::clone(self), Arc::clone(&rule));
            let with = pinned.as_ref().map(|(_, c, m)| (c.clone(), m.clone()));
            tokio::task::spawn_blocking(move || {
                let with = with.as_ref().map(|(c, m)| (&**c, &**m));
                this.observe_and_plan(&rule, with, &caches, &cached_parent, now)
            })
            .await
        };
        let (seen, plan) = match planned {
            Ok(planned) => planned,
            // A planner panic stays a panic of this worker, as it was on the runtime's thread.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down.
            Err(_) => return None,
        };
        let (parent, kinds) = (&seen.parent, &seen.kinds);
        self.routes().set(
            Facet::Conflicts,
            (key.rule.clone(), (key.namespace.clone(), key.name.clone())),
            conflicts_of(&plan),
        );
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
                kind = meta::kind(parent),
                namespace = %key.namespace,
                name = %key.name,
                reason = %f.reason,
                error = %f.message,
                "reconcile failed"
            );
        }
        let decorations = plan.decorate.len() + plan.undecorate.len();
        if writes > 0 || decorations > 0 || plan.status.is_some() {
            tracing::info!(
                parent = %key,
                apply = writes - plan.delete.len(),
                delete = plan.delete.len(),
                decorate = decorations,
                status = plan.status.is_some(),
                failure = plan.failure.as_ref().map(|f| f.message.as_str()),
                "reconciling"
            );
        }
        let revision = match &pinned {
            Some((n, _, _)) => Some(*n),
            None => self.revision(&key.rule, &rule.loaded.hash),
        };
        // What the parent shows once this plan is carried out, for its revision's counts.
        let ready = super::pins::ready_in(plan.status.as_ref().or(parent.get("status")));
        let target = Target {
            parent,
            parent_kind: &parent_cache,
            kinds,
            failures: self.queue.failures(key),
            revision,
            writer: &rule.writer,
        };
        let report = self.actor.execute(&target, plan).await;
        if let Some(revision) = revision {
            let ok = report.result == "ok";
            self.note_outcome(key, revision, ready && ok, !ok);
        }
        Some(report)
    }

    /// Observes `parent` from `caches` and plans it, within one plan's total fuel (related
    /// selectors and lookup targets are renders too), with the active rule or `with` (an
    /// older revision's compiled rule and its memo). Synchronous: run off the runtime.
    fn observe_and_plan(
        &self,
        rule: &ActiveRule,
        with: Option<(&CompiledRule, &PlanMemo)>,
        caches: &Snapshot,
        parent: &Cached,
        now: Timestamp,
    ) -> (Observation, plan::Plan) {
        let (compiled, memo) = with.unwrap_or((rule.rule(), &rule.memo));
        let _fuel = compiled.templates.plan_scope();
        let rule_kinds = RuleKinds {
            children: &rule.children,
            related: &rule.related,
            lookups: &rule.lookups,
            decorated: &rule.decorated,
        };
        let mut seen = observe(
            compiled,
            rule_kinds,
            caches,
            |gk| self.is_child_kind(gk),
            parent,
            now,
        );
        // Every parent change and every rule (re)start reconciles the parent, so the
        // routing indexes of related and looked-up objects are kept here, in one place.
        let decorated = seen.decorated.take();
        let selectors = seen.selectors.take();
        if selectors.is_some() || decorated.is_some() {
            let (decorations, names) = decorated.unwrap_or_default();
            let mut selectors = selectors.unwrap_or_default();
            // Decoration selectors are indexed after the related ones (see `route`).
            selectors.resize(compiled.spec.related.len(), plan::Selector::new());
            selectors.extend(decorations);
            self.record_selectors(rule, parent.key(), selectors);
            let names = names
                .into_iter()
                .map(|(kind, namespace, name)| Interest::Object(kind, namespace, name))
                .collect();
            self.routes().set(
                Facet::Decorations,
                (compiled.name.clone(), parent.key()),
                names,
            );
        }
        if let Some(lookups) = seen.take_lookup_interests() {
            self.routes().set(
                Facet::Lookups,
                (compiled.name.clone(), parent.key()),
                lookups,
            );
        }
        let schemas = rule.schemas.current();
        let plan = plan_observed(compiled, memo, &mut seen, Some(&schemas), now);
        (seen, plan)
    }
}
