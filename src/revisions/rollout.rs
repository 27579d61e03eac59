//! Staged rollouts (`spec.rollout.strategy: Staged`), run by the leader's keeper of
//! revisions: a change of the rule starts a rollout from the revision that ran before; every
//! [`TICK`] the steps are computed from the parents (stable: by selector, and by uid hash for
//! shares), the moved parents' last outcomes on the new revision judged, and the next step
//! taken, or the rollout halted.
//!
//! Its progress is the new revision's `status.rollout` (written before a step moves any
//! parent) and the parents' `ruleop.dev/revision` labels, so a restarted or new leader
//! continues from the same step. `ruleop rollout pause|resume|undo` are annotations on that
//! revision ([`PAUSED`], [`RESUME`], [`UNDO`]), read each tick.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Patch, PatchParams};
use serde_json::{Value as Json, json};
use tokio_util::sync::CancellationToken;

use super::{History, RevisionError, Revisions, api_error};
use crate::controller::staged::{StagedView, keep_memos};
use ruleop_lang::rule::{CompiledRule, StagingPolicy, parse_duration};
use ruleop_lang::staged::{
    Judgement, Outcome, Phase, RolloutState, effective_steps, judge, select,
};
use ruleop_plan::{EventType, PlanEvent};

/// How often rollouts in progress are looked at.
pub const TICK: Duration = Duration::from_secs(1);
/// A step's timeout when the rule sets none.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(600);
/// Annotation on the new revision: `"true"` holds the rollout at its step.
pub const PAUSED: &str = "ruleop.dev/rollout-paused";
/// Annotation on the new revision: the number of a halted step to go on past.
pub const RESUME: &str = "ruleop.dev/rollout-resume";
/// Annotation on the new revision: `"true"` sends every parent back to the old revision.
pub const UNDO: &str = "ruleop.dev/rollout-undo";
/// The condition saying a rollout is moving parents.
pub const PROGRESSING: &str = "Progressing";
/// The condition saying a rollout halted, naming the failing parents.
pub const HALTED: &str = "RolloutHalted";

/// A rollout in progress for one rule.
pub(super) struct Running {
    /// The revision parents move to.
    to: u64,
    policy: StagingPolicy,
    state: RolloutState,
}

impl Revisions {
    /// Starts, continues (after a restart) or ends the staged rollout of `rule` whose
    /// revision `number` was just recorded as active; `before` ran until now.
    pub(super) async fn begin_rollout(
        &self,
        rule: &str,
        history: &mut History,
        number: u64,
        before: Option<u64>,
        compiled: &CompiledRule,
    ) -> Result<(), RevisionError> {
        let policy = &compiled.spec.rollout;
        let stored = history
            .stored
            .get(&number)
            .and_then(|s| RolloutState::from_json(&s.status));
        let state = match (before, stored) {
            // A revert (an older content): a rollback, every parent on it at once.
            (Some(b), _) if b > number => None,
            (_, _) if !policy.is_staged() => None,
            // The same content again (a restart, a leader change): continue.
            (None, Some(s)) if s.in_progress() || s.phase == Phase::Undone => Some((s, false)),
            (Some(b), Some(s)) if b == number && (s.in_progress() || s.phase == Phase::Undone) => {
                Some((s, false))
            }
            (Some(b), _) if b < number => Some((
                RolloutState {
                    from: b,
                    step: 0,
                    steps: effective_steps(policy).len(),
                    step_started_at: Timestamp::now().to_string(),
                    phase: Phase::Progressing,
                    moved: 0,
                    failed: Vec::new(),
                },
                true,
            )),
            _ => None,
        };
        let Some((state, new)) = state else {
            history.rollout = None;
            self.controller.set_staged(rule, None);
            return Ok(());
        };
        let from = self.compiled_in(rule, history, state.from).await?;
        if new && kinds(&from) != kinds(compiled) {
            // The controller watches and admits the running rule's kinds only: an old
            // revision planned without its kinds' caches would see its children missing.
            tracing::warn!(
                rule,
                from = state.from,
                to = number,
                "the change adds or removes kinds: rolled out at once, not in stages"
            );
            history.rollout = None;
            self.controller.set_staged(rule, None);
            return Ok(());
        }
        if new {
            // Before any parent moves.
            self.write_rollout(history, number, &state).await?;
            tracing::info!(
                rule,
                from = state.from,
                to = number,
                "staged rollout started"
            );
        } else {
            tracing::info!(rule, from = state.from, to = number, step = state.step, phase = ?state.phase, "staged rollout continues");
        }
        let view = StagedView {
            to: number,
            undo_to: (state.phase == Phase::Undone).then_some(state.from),
            moved: None,
            compiled: keep_memos(None, BTreeMap::from([(state.from, from)])),
        };
        history.rollout = Some(Running {
            to: number,
            policy: policy.clone(),
            state,
        });
        self.controller.set_staged(rule, Some(view));
        Ok(())
    }

    /// Every [`TICK`] until `cancel`: advances the rollouts in progress.
    pub async fn rollouts_every(self: Arc<Self>, cancel: CancellationToken) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                _ = tick.tick() => {
                    let mut state = self.state.lock().await;
                    let rules: Vec<String> = state
                        .rules
                        .iter()
                        .filter(|(_, h)| h.loaded && h.rollout.is_some())
                        .map(|(n, _)| n.clone())
                        .collect();
                    for rule in rules {
                        let Some(history) = state.rules.get_mut(&rule) else { continue };
                        if let Err(e) = self.advance(&rule, history).await {
                            tracing::warn!(rule = %rule, error = %e, "cannot advance the staged rollout; retrying");
                        }
                    }
                }
            }
        }
    }

    /// One look at the rollout of `rule`: controls, steps, judgement, the controller's view.
    async fn advance(&self, rule: &str, history: &mut History) -> Result<(), RevisionError> {
        let Some(parents) = self.controller.staged_parents(rule) else {
            return Ok(());
        };
        let Some(run) = history.rollout.as_ref() else {
            return Ok(());
        };
        let (to, policy, mut state) = (run.to, run.policy.clone(), run.state.clone());
        let name = super::object::name_of(rule, to);
        let obj = self
            .api
            .get(&name)
            .await
            .map_err(api_error("read", &name))?;
        let annotation = |k: &str| obj.metadata.annotations.as_ref().and_then(|a| a.get(k));
        let paused = annotation(PAUSED).is_some_and(|v| v == "true");
        let before = state.clone();
        if annotation(UNDO).is_some_and(|v| v == "true") && state.phase != Phase::Undone {
            state.phase = Phase::Undone;
        }
        let steps = effective_steps(&policy);
        if state.phase == Phase::Halted
            && annotation(RESUME).is_some_and(|v| v == &state.step.to_string())
        {
            state.phase = Phase::Progressing;
            state.failed.clear();
            state.step += 1;
            state.step_started_at = Timestamp::now().to_string();
        }
        let candidates: Vec<_> = parents.iter().map(|p| p.candidate.clone()).collect();
        let sets = select(&steps, &candidates);
        let moved_by = |step: usize| -> HashSet<String> {
            sets.iter().take(step + 1).flatten().cloned().collect()
        };
        if state.phase == Phase::Progressing && !paused && state.step < steps.len() {
            let moved = moved_by(state.step);
            let outcomes: Vec<(String, Outcome)> = parents
                .iter()
                .filter(|p| moved.contains(&p.candidate.key))
                .map(|p| {
                    let o = match p.last {
                        Some(l) if l.revision == to && l.failing => Outcome::Failing,
                        Some(l) if l.revision == to && l.ready => Outcome::Ready,
                        Some(l) if l.revision == to => Outcome::NotReady,
                        _ => Outcome::Pending,
                    };
                    (p.candidate.key.clone(), o)
                })
                .collect();
            let timeout = policy
                .step_timeout
                .as_deref()
                .and_then(parse_duration)
                .unwrap_or(DEFAULT_STEP_TIMEOUT);
            let started: Timestamp = state
                .step_started_at
                .parse()
                .unwrap_or_else(|_| Timestamp::now());
            let timed_out = Timestamp::now().duration_since(started).unsigned_abs() > timeout;
            let allowed = policy.max_failures.allowed(outcomes.len()).unwrap_or(0);
            match judge(&outcomes, allowed, timed_out) {
                Judgement::Wait => {}
                Judgement::Done if state.step + 1 >= steps.len() => {
                    state.phase = Phase::Complete;
                }
                Judgement::Done => {
                    state.step += 1;
                    state.step_started_at = Timestamp::now().to_string();
                }
                Judgement::Halt(failed) => {
                    state.phase = Phase::Halted;
                    state.failed = failed;
                }
            }
        }
        let moved = moved_by(state.step.min(steps.len().saturating_sub(1)));
        state.moved = moved.len() as u64;
        if state != before {
            // Before any parent of a new step moves.
            self.write_rollout(history, to, &state).await?;
            self.announce(rule, history, to, &before, &state).await;
        }
        if state.phase == Phase::Complete {
            tracing::info!(rule, revision = to, "staged rollout complete");
            history.rollout = None;
            self.controller.set_staged(rule, None);
            return Ok(());
        }
        if let Some(run) = history.rollout.as_mut() {
            run.state = state.clone();
        }
        // The compiled rule of every revision a parent is on (rebuilt after a restart).
        let mut compiled = BTreeMap::new();
        let mut wanted: Vec<u64> = parents.iter().filter_map(|p| p.label).collect();
        wanted.push(state.from);
        wanted.sort_unstable();
        wanted.dedup();
        for n in wanted.into_iter().filter(|n| *n != to) {
            match self.compiled_in(rule, history, n).await {
                Ok(c) => {
                    compiled.insert(n, c);
                }
                Err(e) => {
                    tracing::warn!(rule, revision = n, error = %e, "cannot rebuild a revision: its parents wait")
                }
            }
        }
        let old = self.controller.staged_view(rule);
        let view = StagedView {
            to,
            undo_to: (state.phase == Phase::Undone).then_some(state.from),
            moved: Some(moved),
            compiled: keep_memos(old.as_deref(), compiled),
        };
        self.controller.set_staged(rule, Some(view));
        Ok(())
    }

    /// Writes `state` as `status.rollout` of revision `number`, with its conditions.
    async fn write_rollout(
        &self,
        history: &mut History,
        number: u64,
        state: &RolloutState,
    ) -> Result<(), RevisionError> {
        let Some(stored) = history.stored.get_mut(&number) else {
            return Ok(());
        };
        let mut status = stored.status.clone();
        if !status.is_object() {
            status = json!({});
        }
        status["rollout"] = state.to_json();
        let now = Timestamp::now().to_string();
        let step = format!("step {} of {}", state.step + 1, state.steps);
        let (progressing, halted) = match state.phase {
            Phase::Progressing => (
                (
                    "True",
                    "Step",
                    format!("{step}: {} parents moved", state.moved),
                ),
                ("False", "Healthy", "no step failed".to_string()),
            ),
            Phase::Halted => (
                ("False", "Halted", format!("halted at {step}")),
                (
                    "True",
                    "TooManyFailures",
                    format!(
                        "halted at {step}: parents failing or not Ready: {}",
                        state.failed.join(", ")
                    ),
                ),
            ),
            Phase::Complete => (
                (
                    "False",
                    "Complete",
                    "every parent is on this revision".into(),
                ),
                ("False", "Healthy", "no step failed".to_string()),
            ),
            Phase::Undone => (
                (
                    "False",
                    "Undone",
                    format!("every parent is back on revision {}", state.from),
                ),
                ("False", "Undone", "undone".to_string()),
            ),
        };
        set_condition(&mut status, PROGRESSING, progressing, &now);
        set_condition(&mut status, HALTED, halted, &now);
        self.api
            .patch_status(
                &stored.name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .map_err(api_error("update the rollout of", &stored.name))?;
        stored.status = status;
        Ok(())
    }

    /// Logs a change of the rollout, and records an Event on the revision for a halt.
    async fn announce(
        &self,
        rule: &str,
        history: &History,
        to: u64,
        before: &RolloutState,
        state: &RolloutState,
    ) {
        tracing::info!(rule, revision = to, step = state.step, phase = ?state.phase, moved = state.moved, "staged rollout");
        if state.phase != Phase::Halted || before.phase == Phase::Halted {
            return;
        }
        let Some(stored) = history.stored.get(&to) else {
            return;
        };
        let event = PlanEvent {
            type_: EventType::Warning,
            reason: HALTED.into(),
            message: format!(
                "rule {rule}: rollout of revision {to} halted at step {} of {}; parents failing or not Ready: {}; the others stay on revision {}",
                state.step + 1,
                state.steps,
                state.failed.join(", "),
                state.from
            ),
            related: None,
        };
        self.controller.publish(&stored.as_object(), &[event]).await;
    }
}

/// Sets condition `type_` in `status` (its time kept when nothing else changed).
fn set_condition(
    status: &mut Json,
    type_: &str,
    (s, reason, message): (&str, &str, String),
    now: &str,
) {
    if !status.get("conditions").is_some_and(Json::is_array) {
        status["conditions"] = json!([]);
    }
    let Some(conditions) = status.get_mut("conditions").and_then(Json::as_array_mut) else {
        return;
    };
    let new = json!({"type": type_, "status": s, "reason": reason, "message": message, "lastTransitionTime": now});
    match conditions
        .iter_mut()
        .find(|c| c.get("type").and_then(Json::as_str) == Some(type_))
    {
        Some(c) => {
            let same = c.get("status").and_then(Json::as_str) == Some(s)
                && c.get("reason").and_then(Json::as_str) == Some(reason)
                && c.get("message").and_then(Json::as_str) == Some(message.as_str());
            if !same {
                *c = new;
            }
        }
        None => conditions.push(new),
    }
}

/// Every kind a rule names (parent, children, cleanup steps, related, lookups).
fn kinds(rule: &CompiledRule) -> std::collections::BTreeSet<(String, String)> {
    let spec = &rule.spec;
    let pair = |a: &str, k: &str| (a.to_string(), k.to_string());
    std::iter::once(pair(&spec.parent.api_version, &spec.parent.kind))
        .chain(spec.children.iter().map(|c| pair(&c.api_version, &c.kind)))
        .chain(
            spec.finalizer
                .iter()
                .flat_map(|f| &f.cleanup)
                .map(|c| pair(&c.api_version, &c.kind)),
        )
        .chain(spec.related.iter().map(|r| pair(&r.api_version, &r.kind)))
        .chain(spec.lookups.iter().map(|l| pair(&l.api_version, &l.kind)))
        .collect()
}
