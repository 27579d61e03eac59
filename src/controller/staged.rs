//! Staged rollouts in the controller: which compiled rule plans each parent while a rule
//! change moves parents step by step (`spec.rollout.strategy: Staged`).
//!
//! The keeper of revisions (`src/revisions/rollout.rs`) decides the steps and hands the
//! controller a [`StagedView`]: the revision parents move to, the parents a step moved, and
//! the compiled rule of every other revision a parent is labelled with. A parent is planned
//! with the new revision when its label shows it (or it has none: a parent created during
//! the rollout), or a step moved it; else with the revision of its label; a revision whose
//! compiled rule is not known yet is not planned at all (never with the wrong one). An
//! `Immediate` rule never reads any of this.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, PoisonError};

use super::memo::PlanMemo;
use super::queue::Key;
use super::{ActiveRule, Controller, key_for};
use crate::cache::Cached;
use ruleop_lang::rule::CompiledRule;
use ruleop_lang::staged::Candidate;
use ruleop_schema::meta;

/// A rollout in progress for one rule, as the planner's choice needs it.
pub struct StagedView {
    /// The revision parents move to (the active one).
    pub to: u64,
    /// Every parent goes back to this revision (`ruleop rollout undo`).
    pub undo_to: Option<u64>,
    /// Parents (`namespace/name`) a step moved; `None` until the steps are computed (then
    /// only parents already on `to`, or without a label, are planned).
    pub moved: Option<HashSet<String>>,
    /// Compiled rules of the other revisions parents are labelled with, and their memos.
    pub compiled: BTreeMap<u64, (Arc<CompiledRule>, Arc<PlanMemo>)>,
}

/// How to plan one parent.
pub(super) enum Choice {
    /// With the active rule (and its revision).
    Active,
    /// With an older revision's compiled rule.
    Pinned(u64, Arc<CompiledRule>, Arc<PlanMemo>),
    /// Not now: its revision's compiled rule is not known yet (the keeper enqueues it).
    Wait,
}

/// `namespace/name` of a parent (`name` when cluster-scoped).
pub fn parent_key(namespace: &str, name: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{namespace}/{name}")
    }
}

/// How a parent's last reconcile ended, on which revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LastOutcome {
    /// The revision that planned it.
    pub revision: u64,
    /// Ready after it.
    pub ready: bool,
    /// Failed (plan or write).
    pub failing: bool,
}

/// A parent of a staged rule, for the keeper's steps.
pub struct StagedParent {
    /// Its key, uid and labels.
    pub candidate: Candidate,
    /// The revision its label shows.
    pub label: Option<u64>,
    /// Its last outcome.
    pub last: Option<LastOutcome>,
}

impl Controller {
    /// Installs (or with `None`, ends) the rollout view of `rule`, and reconciles the parents
    /// whose choice may have changed.
    pub fn set_staged(&self, rule: &str, view: Option<StagedView>) {
        let view = view.map(Arc::new);
        let before = {
            let mut views = self.staged.write().unwrap_or_else(PoisonError::into_inner);
            match &view {
                Some(v) => views.insert(rule.to_string(), v.clone()),
                None => views.remove(rule),
            }
        };
        if before.is_none() && view.is_none() {
            // No rollout before nor now (every `Immediate` reload): nothing to reconcile.
            return;
        }
        let Some(active) = self.rules_read().get(rule).cloned() else {
            return;
        };
        let Some(cache) = self.cache(&active.parent) else {
            return;
        };
        // Only the newly moved parents when just a step advanced; all otherwise.
        let only: Option<HashSet<String>> = match (&before, &view) {
            (Some(b), Some(v))
                if b.to == v.to
                    && b.undo_to == v.undo_to
                    && b.moved.is_some()
                    && b.compiled.keys().eq(v.compiled.keys()) =>
            {
                let (old, new) = (b.moved.as_ref(), v.moved.as_ref());
                Some(
                    new.into_iter()
                        .flatten()
                        .filter(|k| !old.is_some_and(|o| o.contains(*k)))
                        .cloned()
                        .collect(),
                )
            }
            _ => None,
        };
        for p in cache.list(None) {
            if only
                .as_ref()
                .is_none_or(|o| o.contains(&parent_key(p.namespace(), p.name())))
            {
                self.queue.add(key_for(rule, &p));
            }
        }
    }

    /// The rollout view of `rule`, if one is in progress.
    pub fn staged_view(&self, rule: &str) -> Option<Arc<StagedView>> {
        self.staged
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(rule)
            .cloned()
    }

    /// The parents of `rule` with their labels and last outcomes; `None` while the rule is
    /// not active or its parents' cache has not listed.
    pub fn staged_parents(&self, rule: &str) -> Option<Vec<StagedParent>> {
        let active = self.rules_read().get(rule).cloned()?;
        let parents = self.active_parents(rule)?;
        Some(
            parents
                .iter()
                // A rule with a parent selector moves only the parents it governs.
                .filter(|p| super::select::governs(&active, p))
                .map(|p| {
                    let key = Key {
                        rule: rule.to_string(),
                        namespace: p.namespace().to_string(),
                        name: p.name().to_string(),
                    };
                    StagedParent {
                        candidate: Candidate {
                            key: parent_key(p.namespace(), p.name()),
                            uid: p.uid().to_string(),
                            labels: p
                                .labels()
                                .map(|(k, v)| (k.to_string(), v.to_string()))
                                .collect(),
                        },
                        label: p.label(meta::REVISION_LABEL).and_then(|v| v.parse().ok()),
                        last: self.last_outcome(&key),
                    }
                })
                .collect(),
        )
    }

    /// How to plan `parent` of a `Staged` rule.
    pub(super) fn choose(&self, rule: &ActiveRule, parent: &Cached) -> Choice {
        let active = self.revision(&rule.rule().name, &rule.loaded.hash);
        let Some(view) = self.staged_view(&rule.rule().name) else {
            return Choice::Active;
        };
        if active != Some(view.to) {
            // The view is of another content (a reload is being recorded): wait for the new.
            return Choice::Wait;
        }
        let label: Option<u64> = parent
            .label(meta::REVISION_LABEL)
            .and_then(|v| v.parse().ok());
        let pinned = |n: u64| match view.compiled.get(&n) {
            Some((c, m)) => Choice::Pinned(n, c.clone(), m.clone()),
            None => Choice::Wait,
        };
        if let Some(back) = view.undo_to {
            return if back == view.to {
                Choice::Active
            } else {
                pinned(back)
            };
        }
        let moved = view
            .moved
            .as_ref()
            .is_some_and(|m| m.contains(&parent_key(parent.namespace(), parent.name())));
        match label {
            None => Choice::Active,
            Some(n) if n == view.to || moved => Choice::Active,
            Some(n) => pinned(n),
        }
    }
}

/// Memos of the revisions in `compiled`, kept from `before` where the revision is the same.
pub fn keep_memos(
    before: Option<&StagedView>,
    compiled: BTreeMap<u64, Arc<CompiledRule>>,
) -> BTreeMap<u64, (Arc<CompiledRule>, Arc<PlanMemo>)> {
    compiled
        .into_iter()
        .map(|(n, c)| {
            let memo = before
                .and_then(|b| b.compiled.get(&n))
                .filter(|(old, _)| Arc::ptr_eq(old, &c))
                .map(|(_, m)| m.clone())
                .unwrap_or_default();
            (n, (c, memo))
        })
        .collect()
}

/// The views of staged rules by rule name.
pub(super) type Views = HashMap<String, Arc<StagedView>>;
