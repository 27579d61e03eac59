//! The pure part of a staged rollout (`spec.rollout.strategy: Staged`): which parents each
//! step moves (stable, exact shares), whether a step is done or the rollout halts, and the
//! rollout's state as stored in the new `RuleRevision`'s `status.rollout`. No I/O, no clock:
//! the runtime (`src/revisions/rollout.rs`) passes times and outcomes in.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::rule::{StagingPolicy, StagingStep};

/// A parent as a step sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `namespace/name`, as reported in `status.rollout.failed`.
    pub key: String,
    /// Its uid (the stable order of percent steps).
    pub uid: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
}

/// The steps actually run: the rule's, then `{percent: 100}` unless the last one is already
/// that, so every parent is on the new revision when the last step is done.
pub fn effective_steps(policy: &StagingPolicy) -> Vec<StagingStep> {
    let mut steps = policy.steps.clone();
    if steps.last() != Some(&StagingStep::Percent { percent: 100 }) {
        steps.push(StagingStep::Percent { percent: 100 });
    }
    steps
}

/// FNV-1a: a hash that never changes between versions or processes (a restarted leader
/// must choose the same parents).
fn stable_hash(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The share `percent` of `n` parents, rounded up (a step of a few parents moves one).
pub fn share(n: usize, percent: u8) -> usize {
    (n * usize::from(percent)).div_ceil(100)
}

/// The keys each step moves, in order: a selector step the parents it matches (among those
/// not moved yet), a percent step that share of the parents not moved by earlier steps,
/// ordered by the hash of their uid. The same parents give the same steps, in any order.
pub fn select(steps: &[StagingStep], parents: &[Candidate]) -> Vec<Vec<String>> {
    let mut remaining: Vec<&Candidate> = parents.iter().collect();
    remaining.sort_by(|a, b| {
        (stable_hash(&a.uid), &a.uid, &a.key).cmp(&(stable_hash(&b.uid), &b.uid, &b.key))
    });
    let mut out = Vec::with_capacity(steps.len());
    for step in steps {
        let chosen: Vec<&Candidate> = match step {
            StagingStep::Selector { selector } => remaining
                .iter()
                .copied()
                .filter(|p| {
                    selector
                        .match_labels
                        .iter()
                        .all(|(k, v)| p.labels.get(k) == Some(v))
                })
                .collect(),
            StagingStep::Percent { percent } => remaining
                .iter()
                .copied()
                .take(share(remaining.len(), *percent))
                .collect(),
        };
        let keys: BTreeSet<&str> = chosen.iter().map(|p| p.key.as_str()).collect();
        remaining.retain(|p| !keys.contains(p.key.as_str()));
        out.push(keys.into_iter().map(str::to_string).collect());
    }
    out
}

/// How a moved parent ended its last reconcile on the new revision.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Ready on the new revision.
    Ready,
    /// Planned and written on it, not Ready (yet).
    NotReady,
    /// Failed to plan, or a write was refused.
    Failing,
    /// Not reconciled on the new revision yet.
    Pending,
}

/// What a step's parents say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Judgement {
    /// Wait for them.
    Wait,
    /// Every one Ready (or the timeout passed with at most the allowed failures): next step.
    Done,
    /// More than the allowed failures: stop here; these parents failed.
    Halt(Vec<String>),
}

/// Judges the moved parents (`key`, outcome): more than `allowed` failing (or, once
/// `timed_out`, not Ready) halts; all Ready, or the timeout within the allowance, is done.
pub fn judge(moved: &[(String, Outcome)], allowed: usize, timed_out: bool) -> Judgement {
    let failed: Vec<String> = moved
        .iter()
        .filter(|(_, o)| *o == Outcome::Failing || (timed_out && *o != Outcome::Ready))
        .map(|(k, _)| k.clone())
        .collect();
    if failed.len() > allowed {
        return Judgement::Halt(failed);
    }
    if timed_out || moved.iter().all(|(_, o)| *o == Outcome::Ready) {
        Judgement::Done
    } else {
        Judgement::Wait
    }
}

/// Where a rollout is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
pub enum Phase {
    /// Steps are moving parents.
    #[default]
    Progressing,
    /// Stopped by failures: the parents not moved stay on `from`.
    Halted,
    /// Every parent is on the new revision.
    Complete,
    /// Undone by `ruleop rollout undo`: every parent is planned with `from`.
    Undone,
}

/// A rollout's progress, stored as the new revision's `status.rollout` before a step moves
/// any parent: a restarted or new leader continues from it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    /// The revision parents leave.
    pub from: u64,
    /// The step in progress (0-based, into [`effective_steps`]).
    pub step: usize,
    /// The number of steps.
    pub steps: usize,
    /// When the step started (RFC 3339).
    pub step_started_at: String,
    /// Where the rollout is.
    pub phase: Phase,
    /// Parents moved so far.
    #[serde(default)]
    pub moved: u64,
    /// The parents that halted it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failed: Vec<String>,
}

impl RolloutState {
    /// Reads `status.rollout` (`None` when absent or not a state).
    pub fn from_json(status: &serde_json::Value) -> Option<RolloutState> {
        serde_json::from_value(status.get("rollout")?.clone()).ok()
    }

    /// As `status.rollout`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Whether parents may still move or be held back by it.
    pub fn in_progress(&self) -> bool {
        self.phase == Phase::Progressing || self.phase == Phase::Halted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rule::{MaxFailures, StagingSelector, StagingStrategy};

    fn parents(n: usize) -> Vec<Candidate> {
        (0..n)
            .map(|i| Candidate {
                key: format!("ns/p{i:03}"),
                uid: format!("uid-{i}"),
                labels: if i.is_multiple_of(20) {
                    [("tier".to_string(), "canary".to_string())].into()
                } else {
                    BTreeMap::new()
                },
            })
            .collect()
    }

    fn policy() -> StagingPolicy {
        StagingPolicy {
            strategy: StagingStrategy::Staged,
            steps: vec![
                StagingStep::Selector {
                    selector: StagingSelector {
                        match_labels: [("tier".to_string(), "canary".to_string())].into(),
                    },
                },
                StagingStep::Percent { percent: 25 },
                StagingStep::Percent { percent: 100 },
            ],
            max_failures: MaxFailures::Count(0),
            step_timeout: None,
        }
    }

    #[test]
    fn steps_move_exact_shares_and_every_parent_once() {
        let all = parents(200);
        let steps = select(&effective_steps(&policy()), &all);
        assert_eq!(steps.len(), 3, "no implicit step after 100%");
        assert_eq!(steps[0].len(), 10);
        assert!(steps[0].iter().all(|k| {
            let i: usize = k[4..].parse().unwrap();
            i.is_multiple_of(20)
        }));
        assert_eq!(steps[1].len(), 48, "25% of 190, rounded up");
        assert_eq!(steps[2].len(), 142);
        let mut seen: Vec<&String> = steps.iter().flatten().collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 200);
    }

    #[test]
    fn selection_is_stable_whatever_the_order() {
        let all = parents(50);
        let mut reversed = all.clone();
        reversed.reverse();
        let steps = effective_steps(&policy());
        assert_eq!(select(&steps, &all), select(&steps, &reversed));
        // A parent added later does not reshuffle the canaries.
        let mut more = all.clone();
        more.push(Candidate {
            key: "ns/new".into(),
            uid: "uid-new".into(),
            labels: BTreeMap::new(),
        });
        assert_eq!(select(&steps, &all)[0], select(&steps, &more)[0]);
    }

    #[test]
    fn a_last_partial_step_is_followed_by_the_rest() {
        let mut p = policy();
        p.steps.pop();
        let steps = effective_steps(&p);
        assert_eq!(steps.len(), 3);
        assert_eq!(share(7, 25), 2);
        assert_eq!(share(0, 25), 0);
        assert_eq!(share(4, 100), 4);
    }

    #[test]
    fn halt_needs_more_failures_than_allowed() {
        use Outcome::*;
        let m = |o: &[Outcome]| -> Vec<(String, Outcome)> {
            o.iter()
                .enumerate()
                .map(|(i, o)| (format!("p{i}"), *o))
                .collect()
        };
        assert_eq!(judge(&m(&[Ready, Ready]), 0, false), Judgement::Done);
        assert_eq!(judge(&m(&[Ready, Pending]), 0, false), Judgement::Wait);
        assert_eq!(judge(&m(&[Ready, NotReady]), 0, false), Judgement::Wait);
        assert_eq!(
            judge(&m(&[Ready, Failing]), 0, false),
            Judgement::Halt(vec!["p1".into()])
        );
        assert_eq!(judge(&m(&[Failing, NotReady]), 1, false), Judgement::Wait);
        assert_eq!(
            judge(&m(&[Failing, NotReady]), 1, true),
            Judgement::Halt(vec!["p0".into(), "p1".into()])
        );
        assert_eq!(judge(&m(&[Ready, NotReady]), 1, true), Judgement::Done);
        assert_eq!(MaxFailures::Share("10%".into()).allowed(30), Some(3));
        assert_eq!(MaxFailures::Share("ten".into()).allowed(30), None);
        assert_eq!(MaxFailures::Count(2).allowed(30), Some(2));
    }

    #[test]
    fn state_round_trips_through_status() {
        let state = RolloutState {
            from: 3,
            step: 1,
            steps: 3,
            step_started_at: "2026-12-07T23:00:00Z".into(),
            phase: Phase::Halted,
            moved: 10,
            failed: vec!["ns/p000".into()],
        };
        let status = serde_json::json!({"state": "Active", "rollout": state.to_json()});
        assert_eq!(status["rollout"]["stepStartedAt"], "2026-12-07T23:00:00Z");
        assert_eq!(status["rollout"]["phase"], "Halted");
        assert_eq!(RolloutState::from_json(&status), Some(state));
        assert_eq!(RolloutState::from_json(&serde_json::json!({})), None);
        let policy: StagingPolicy = serde_json::from_value(serde_json::json!({
            "strategy": "Staged",
            "steps": [{"selector": {"matchLabels": {"tier": "canary"}}}, {"percent": 25}],
            "maxFailures": "10%",
            "stepTimeout": "5m",
        }))
        .unwrap();
        assert_eq!(policy.steps.len(), 2);
        assert_eq!(policy.max_failures, MaxFailures::Share("10%".into()));
    }
}
