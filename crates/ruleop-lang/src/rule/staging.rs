//! `spec.rollout`: how a change of the rule reaches its parents (all at once, or in steps
//! that halt by themselves). Named `Staging*` so it does not clash with the replica rollout
//! of `spec.children[].replicas.rollout` ([`super::Rollout`]).

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// How a change of this rule reaches the parents it governs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StagingPolicy {
    /// `Immediate` (default): every parent is planned with the new rule at once. `Staged`:
    /// parents move to it step by step; the others stay on the revision they are on.
    #[serde(default)]
    pub strategy: StagingStrategy,
    /// The steps of a `Staged` rollout, in order. Parents not covered by the last step move
    /// with it (an implicit `{percent: 100}`).
    #[serde(default)]
    pub steps: Vec<StagingStep>,
    /// How many of the moved parents may fail to plan or stay not Ready before the rollout
    /// halts: a number, or a share of the moved parents like `"10%"`. Default 0.
    #[serde(default)]
    pub max_failures: MaxFailures,
    /// How long a step waits for its parents to be Ready before it is judged, e.g. `5m`
    /// (default `10m`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_timeout: Option<String>,
}

impl StagingPolicy {
    /// Whether a change moves parents step by step.
    pub fn is_staged(&self) -> bool {
        self.strategy == StagingStrategy::Staged
    }

    /// Whether this is the default (nothing to serialize).
    pub fn is_default(&self) -> bool {
        self == &StagingPolicy::default()
    }
}

/// All parents at once, or step by step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum StagingStrategy {
    /// Every parent is planned with the new rule at once.
    #[default]
    Immediate,
    /// Parents move to the new rule step by step (`steps`), halting on failures.
    Staged,
}

/// One step of a staged rollout: the parents a label selector matches, or a share of the
/// parents not moved yet.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum StagingStep {
    /// The parents whose labels match, e.g. `{selector: {matchLabels: {tier: canary}}}`.
    Selector {
        /// Which parents.
        selector: StagingSelector,
    },
    /// This share (1 to 100) of the parents not moved by earlier steps, chosen stably by
    /// the hash of their uid.
    Percent {
        /// Percent of the remaining parents.
        percent: u8,
    },
}

/// A label selector (`matchLabels` only).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StagingSelector {
    /// Labels a parent must carry, all of them.
    #[serde(default)]
    pub match_labels: BTreeMap<String, String>,
}

/// A count or a share (`"25%"`) of the moved parents.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum MaxFailures {
    /// A number of parents.
    Count(u64),
    /// A share, like `"10%"`.
    Share(String),
}

impl Default for MaxFailures {
    fn default() -> Self {
        MaxFailures::Count(0)
    }
}

impl MaxFailures {
    /// The failures allowed among `moved` parents (`None`: not a valid share).
    pub fn allowed(&self, moved: usize) -> Option<usize> {
        match self {
            MaxFailures::Count(n) => Some(usize::try_from(*n).unwrap_or(usize::MAX)),
            MaxFailures::Share(s) => {
                let p: u64 = s.trim().strip_suffix('%')?.trim().parse().ok()?;
                (p <= 100).then(|| (moved as u64 * p / 100) as usize)
            }
        }
    }
}

/// Refuses a policy that cannot run: a share out of range, a bad duration, steps without
/// `Staged`, an empty selector.
pub(super) fn check(c: &mut super::compile::Checker<'_>, spec: &super::RuleSpec) {
    let policy = &spec.rollout;
    if !policy.is_staged() && !policy.steps.is_empty() {
        c.error(
            "spec.rollout.steps",
            "steps are used only with strategy: Staged",
        );
    }
    for (i, step) in policy.steps.iter().enumerate() {
        match step {
            StagingStep::Percent { percent } if !(1..=100).contains(percent) => c.error(
                &format!("spec.rollout.steps[{i}].percent"),
                format!("{percent} is not a share between 1 and 100"),
            ),
            StagingStep::Selector { selector } if selector.match_labels.is_empty() => c.error(
                &format!("spec.rollout.steps[{i}].selector"),
                "an empty selector selects every parent: use {percent: 100}",
            ),
            _ => {}
        }
    }
    if policy.max_failures.allowed(0).is_none() {
        c.error(
            "spec.rollout.maxFailures",
            "use a number or a share like \"10%\"",
        );
    }
    if let Some(text) = policy.step_timeout.as_deref()
        && super::parse_duration(text).is_none()
    {
        c.error(
            "spec.rollout.stepTimeout",
            format!("invalid duration {text:?} (use e.g. 30s, 5m, 1h)"),
        );
    }
}
