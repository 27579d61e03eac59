//! Rule revisions as cluster objects: each distinct content of a rule (by
//! [`ruleop_lang::revision::canonical_hash`]) is a `RuleRevision`, numbered per rule, created
//! by the leader when a rule is loaded (at start and on every reload), refused edits too.
//!
//! - **Numbers** continue from the highest revision of the rule in the cluster; a content
//!   equal to a stored revision's is that revision again (a revert is recognised so).
//! - **Only our rules' revisions** are read or written: listed by the `ruleop.dev/rule` label
//!   of each rule this process loads, never the whole kind.
//! - **Status** (`Accepted`/`Refused`, `Active`, and the parents on each revision: how many,
//!   Ready, failing) is written when a revision is created or changes state, and the counts
//!   by a flush every [`FLUSH`]: never per reconcile, and not at all while they stay equal.
//! - **History**: beyond `--revision-history-limit` the oldest revisions are deleted, never
//!   the active one nor one a parent is still labelled with.
//! - **Off** when the `RuleRevision` CRD is not installed or RBAC refuses it: a warning, and
//!   ruleop runs as without revisions (no parent label). `--revisions=false` turns it off.
//!
//! ## Kept for a staged rollout (design)
//!
//! The compiled rule of each accepted revision loaded by this process is kept by number while
//! a parent may be planned with it (the active revision, or one a parent is labelled with:
//! with `Immediate`, only the active one once every parent moved), see
//! [`Revisions::compiled`]; a revision only in the cluster (after a restart or a leader
//! change) is rebuilt from its stored text ([`ruleop_lang::revision::rebuild`], checked
//! against its hash). A rollout's progress must not live in memory: which parents are on
//! which revision is their `ruleop.dev/revision` label (written before their children), and
//! the rollout's step, its start time and a halt belong in the new revision's status
//! (conditions `Progressing`/`RolloutHalted`, `status.rollout.step`), written before a step
//! moves any parent. A new leader reads both and continues: parents are planned with the
//! revision of their label until the step that moves them. Implemented in [`rollout`] (the
//! keeper's side) and `controller/staged.rs` (which compiled rule plans a parent).

mod flush;
mod object;
pub mod rollout;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use serde_json::{Value as Json, json};

use crate::controller::{Controller, Counts};
use ruleop_lang::load::{LoadedRule, RuleError};
use ruleop_lang::revision::{Assigned, Known, assign, canonical_hash, declared_name};
use ruleop_lang::rule::CompiledRule;
use ruleop_lang::ruleset::{Diff, Snapshot};
use ruleop_plan::{EventType, PlanEvent};
use ruleop_schema::meta;

pub use object::{ACCEPTED, ACTIVE, REFUSED, resource};

/// How often the parents' counts are compared with the revisions' status (and written when
/// they differ), failed records retried and the history pruned.
pub const FLUSH: Duration = Duration::from_secs(3);

/// The default of `--revision-history-limit`.
pub const DEFAULT_HISTORY_LIMIT: usize = 10;

/// Why a revision could not be recorded or rebuilt.
#[derive(Debug, thiserror::Error)]
pub enum RevisionError {
    /// An API request failed.
    #[error("cannot {what} RuleRevision {name}: {source}")]
    Api {
        /// The request.
        what: &'static str,
        /// The object (or the rule's label selector).
        name: String,
        /// The API's error.
        #[source]
        source: kube::Error,
    },
    /// The stored text does not compile (or is not the content it claims).
    #[error("cannot rebuild RuleRevision {name}: {errors}")]
    Rebuild {
        /// The object.
        name: String,
        /// The located errors, one a line.
        errors: String,
    },
    /// The API server did not answer whether it serves RuleRevisions.
    #[error("cannot tell whether RuleRevisions are served")]
    Unavailable,
    /// No such revision.
    #[error("rule {rule} has no revision {number}")]
    Missing {
        /// The rule.
        rule: String,
        /// The number.
        number: u64,
    },
}

/// What a reload asks to record for one rule.
#[derive(Debug, Clone)]
enum Intent {
    /// This content (the rule file's text) runs now.
    Accepted(LoadedRule, String),
    /// This content was refused with these errors (the last good one, if any, runs).
    Refused {
        path: String,
        text: String,
        errors: String,
    },
    /// The rule is no longer loaded.
    Removed,
}

/// One rule's revisions, as read from the cluster and written since.
#[derive(Default)]
struct History {
    /// The rule's revisions by number.
    stored: BTreeMap<u64, object::Stored>,
    /// The running revision, if any.
    active: Option<u64>,
    /// Whether the rule is loaded (counted and pruned).
    loaded: bool,
    /// Compiled rules of accepted revisions, while a parent may be planned with them.
    compiled: BTreeMap<u64, Arc<CompiledRule>>,
    /// The staged rollout in progress (`spec.rollout.strategy: Staged`), if any.
    rollout: Option<rollout::Running>,
}

#[derive(Default)]
struct State {
    /// Whether the API serves RuleRevisions to us (`None`: not asked yet).
    on: Option<bool>,
    rules: BTreeMap<String, History>,
    /// Intents that could not be recorded yet, retried by the flush.
    pending: Vec<(String, Intent)>,
}

/// The leader's keeper of rule revisions.
pub struct Revisions {
    api: Api<DynamicObject>,
    controller: Arc<Controller>,
    limit: usize,
    state: tokio::sync::Mutex<State>,
}

fn api_error(what: &'static str, name: &str) -> impl FnOnce(kube::Error) -> RevisionError {
    let name = name.to_string();
    move |source| RevisionError::Api { what, name, source }
}

impl Revisions {
    /// A keeper writing through `client` (the fenced one: only a leader writes), keeping
    /// `limit` revisions per rule (0: all).
    pub fn new(client: kube::Client, controller: Arc<Controller>, limit: usize) -> Self {
        Revisions {
            api: Api::all_with(client, &resource()),
            controller,
            limit,
            state: tokio::sync::Mutex::default(),
        }
    }

    /// Records what a reload loads, refuses and removes. Called before the controller
    /// applies `diff`, so a changed rule's first reconciles already pin its new revision.
    pub async fn reload(&self, current: &[LoadedRule], diff: &Diff, snapshot: &Snapshot) {
        let mut intents: Vec<(String, Intent)> = Vec::new();
        let mut refused: BTreeMap<&Path, Vec<&RuleError>> = BTreeMap::new();
        for e in &diff.refused {
            refused.entry(e.file.as_path()).or_default().push(e);
        }
        for (path, errors) in refused {
            let Some((_, text)) = snapshot.files.iter().find(|(p, _)| p == path) else {
                continue;
            };
            let name = current
                .iter()
                .find(|r| r.path == path)
                .map(|r| r.rule.name.clone())
                .or_else(|| declared_name(text));
            let Some(name) = name else {
                tracing::debug!(file = %path.display(), "refused file names no rule: no revision");
                continue;
            };
            let errors: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            intents.push((
                name,
                Intent::Refused {
                    path: path.display().to_string(),
                    text: text.clone(),
                    errors: errors.join("\n"),
                },
            ));
        }
        // After the refusals: a content that runs is the rule's active revision.
        for r in diff.added.iter().chain(&diff.changed) {
            let Some((_, text)) = snapshot.files.iter().find(|(p, _)| p == &r.path) else {
                continue;
            };
            intents.push((
                r.rule.name.clone(),
                Intent::Accepted(r.clone(), text.clone()),
            ));
        }
        for r in &diff.removed {
            intents.push((r.rule.name.clone(), Intent::Removed));
        }
        let mut state = self.state.lock().await;
        // Once per reload while they are off (no CRD, no RBAC): they may have been installed.
        if !self.probe(&mut state).await && state.on == Some(false) {
            return;
        }
        for (name, intent) in intents {
            // A newer intent for a rule supersedes one still pending.
            state.pending.retain(|(n, _)| n != &name);
            if let Err(e) = self.record(&mut state, &name, &intent).await {
                if state.on == Some(false) {
                    continue;
                }
                tracing::warn!(rule = %name, error = %e, "cannot record the rule's revision; retrying");
                if let Intent::Accepted(r, _) = &intent {
                    // Unknown until recorded: no parent is labelled with a wrong number.
                    self.controller.set_revision(&name, &r.hash, None);
                }
                state.pending.push((name, intent));
            }
        }
    }

    /// Whether revisions are served to us; asks once, and again while they are not.
    async fn probe(&self, state: &mut State) -> bool {
        if state.on == Some(true) {
            return true;
        }
        let on = match self
            .api
            .list_metadata(&ListParams::default().limit(1))
            .await
        {
            Ok(_) => true,
            Err(kube::Error::Api(s)) if s.code == 404 || s.code == 403 => {
                if state.on.is_none() {
                    let fix = if s.code == 404 {
                        "install crds/ruleop.dev_rulerevisions.yaml"
                    } else {
                        "grant what `ruleop rbac` prints for rulerevisions"
                    };
                    tracing::warn!(
                        code = s.code,
                        fix,
                        "RuleRevisions are not available: running without revisions (no ruleop.dev/revision label on parents)"
                    );
                }
                false
            }
            // Unknown: asked again by the next record.
            Err(_) => return false,
        };
        state.on = Some(on);
        if on {
            tracing::info!("recording rule revisions (kubectl get rulerevisions)");
        }
        on
    }

    /// Reads the history of `rule` from the cluster the first time it is needed.
    async fn history<'s>(
        &self,
        state: &'s mut State,
        rule: &str,
    ) -> Result<&'s mut History, RevisionError> {
        if !state.rules.contains_key(rule) {
            let selector = format!("{}={rule}", meta::RULE_LABEL);
            let listed = self
                .api
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(api_error("list", &selector))?;
            let mut history = History::default();
            for obj in listed.items {
                let Ok(json) = serde_json::to_value(&obj) else {
                    continue;
                };
                if let Some((n, stored)) = object::Stored::read(rule, &json) {
                    if stored.is_active() {
                        history.active = Some(n);
                    }
                    history.stored.insert(n, stored);
                }
            }
            state.rules.insert(rule.to_string(), history);
        }
        state
            .rules
            .get_mut(rule)
            .ok_or_else(|| RevisionError::Missing {
                rule: rule.into(),
                number: 0,
            })
    }

    async fn record(
        &self,
        state: &mut State,
        rule: &str,
        intent: &Intent,
    ) -> Result<(), RevisionError> {
        if !self.probe(state).await {
            // Off (no CRD, no RBAC: asked again on the next reload) or not answered (`on`
            // still unknown: the intent waits for the next flush).
            return Err(RevisionError::Unavailable);
        }
        let history = self.history(state, rule).await?;
        match intent {
            Intent::Removed => {
                history.loaded = false;
                if let Some(active) = history.active.take() {
                    self.write_state(rule, history, active, Err(object::RULE_REMOVED))
                        .await?;
                }
                Ok(())
            }
            Intent::Accepted(loaded, text) => {
                let number = self
                    .ensure(rule, history, &loaded.path.display().to_string(), text)
                    .await?;
                history.loaded = true;
                history.compiled.insert(number, loaded.rule.clone());
                let before = history.active.replace(number);
                // Every other revision that says it runs (one, or stale ones) stops.
                let others: Vec<u64> = history
                    .stored
                    .iter()
                    .filter(|(n, s)| **n != number && (s.is_active() || before == Some(**n)))
                    .map(|(n, _)| *n)
                    .collect();
                self.write_state(rule, history, number, Ok(())).await?;
                for n in others {
                    self.write_state(rule, history, n, Err(object::SUPERSEDED))
                        .await?;
                }
                self.begin_rollout(rule, history, number, before, &loaded.rule)
                    .await?;
                if self
                    .controller
                    .set_revision(rule, &loaded.hash, Some(number))
                    && before.is_some()
                {
                    tracing::info!(rule, revision = number, "rule revision active");
                }
                Ok(())
            }
            Intent::Refused { path, text, errors } => {
                let number = self.ensure(rule, history, path, text).await?;
                self.write_refused(rule, history, number, errors).await?;
                // Each refused load is announced (a repeat within minutes joins the series
                // of the first Event).
                if let Some(s) = history.stored.get(&number) {
                    let running = match history.active {
                        Some(n) => format!("revision {n} keeps running"),
                        None => "no revision of it runs".into(),
                    };
                    let event = PlanEvent {
                        type_: EventType::Warning,
                        reason: object::REFUSED.into(),
                        message: format!(
                            "rule {rule}: edit refused (revision {number}); {running}: {errors}"
                        ),
                        related: None,
                    };
                    self.controller.publish(&s.as_object(), &[event]).await;
                }
                Ok(())
            }
        }
    }

    /// The number of `text` for `rule`: an existing revision with its content, else a new one
    /// created.
    async fn ensure(
        &self,
        rule: &str,
        history: &mut History,
        source: &str,
        text: &str,
    ) -> Result<u64, RevisionError> {
        let hash = canonical_hash(text);
        let known: Vec<Known> = history
            .stored
            .iter()
            .map(|(n, s)| Known {
                number: *n,
                hash: s.hash.clone(),
            })
            .collect();
        let number = match assign(&known, &hash) {
            Assigned::Existing(n) => return Ok(n),
            Assigned::New(n) => n,
        };
        let body = object::body(rule, number, &hash, source, text);
        let obj: DynamicObject =
            serde_json::from_value(body).map_err(|e| RevisionError::Rebuild {
                name: object::name_of(rule, number),
                errors: e.to_string(),
            })?;
        let created = self
            .api
            .create(&PostParams::default(), &obj)
            .await
            .map_err(api_error("create", &object::name_of(rule, number)))?;
        let json = serde_json::to_value(&created).unwrap_or(Json::Null);
        let (n, stored) =
            object::Stored::read(rule, &json).ok_or_else(|| RevisionError::Missing {
                rule: rule.into(),
                number,
            })?;
        tracing::info!(rule, revision = n, hash = %stored.hash, name = %stored.name, "rule revision created");
        history.stored.insert(n, stored);
        Ok(n)
    }

    async fn write_refused(
        &self,
        rule: &str,
        history: &mut History,
        number: u64,
        errors: &str,
    ) -> Result<(), RevisionError> {
        let state = object::State {
            refused: Some(errors.to_string()),
            active: Err(object::SUPERSEDED),
            counts: Counts::default(),
        };
        self.write_status(rule, history, number, &state).await
    }

    /// Writes the accepted state of revision `number` (running or not), its counts kept.
    async fn write_state(
        &self,
        rule: &str,
        history: &mut History,
        number: u64,
        active: Result<(), &'static str>,
    ) -> Result<(), RevisionError> {
        let Some(stored) = history.stored.get(&number) else {
            return Ok(());
        };
        let state = object::State {
            refused: None,
            active,
            counts: stored.counts(),
        };
        self.write_status(rule, history, number, &state).await
    }

    /// Writes the status of `state` on revision `number` if it differs from the stored one.
    async fn write_status(
        &self,
        _rule: &str,
        history: &mut History,
        number: u64,
        state: &object::State,
    ) -> Result<(), RevisionError> {
        let Some(stored) = history.stored.get_mut(&number) else {
            return Ok(());
        };
        let status = object::status(state, &stored.status, Timestamp::now());
        if status == stored.status {
            return Ok(());
        }
        self.api
            .patch_status(
                &stored.name,
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
            .map_err(api_error("update the status of", &stored.name))?;
        stored.status = status;
        Ok(())
    }

    /// The compiled rule of revision `number` of `rule`: kept from when this process loaded
    /// it, else rebuilt from the revision's stored text (and kept).
    pub async fn compiled(
        &self,
        rule: &str,
        number: u64,
    ) -> Result<Arc<CompiledRule>, RevisionError> {
        let mut state = self.state.lock().await;
        let history = self.history(&mut state, rule).await?;
        self.compiled_in(rule, history, number).await
    }

    /// [`Revisions::compiled`] with the history at hand.
    async fn compiled_in(
        &self,
        rule: &str,
        history: &mut History,
        number: u64,
    ) -> Result<Arc<CompiledRule>, RevisionError> {
        if let Some(compiled) = history.compiled.get(&number) {
            return Ok(compiled.clone());
        }
        let name = object::name_of(rule, number);
        let obj = self
            .api
            .get(&name)
            .await
            .map_err(api_error("read", &name))?;
        let spec = serde_json::to_value(&obj)
            .ok()
            .and_then(|o| o.get("spec").cloned())
            .unwrap_or(Json::Null);
        let field = |k: &str| spec.get(k).and_then(Json::as_str).unwrap_or_default();
        let compiled = ruleop_lang::revision::rebuild(
            rule,
            field("source"),
            field("text"),
            field("contentHash"),
        )
        .map_err(|errors| RevisionError::Rebuild {
            name: name.clone(),
            errors: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
        })?;
        let compiled = Arc::new(compiled);
        history.compiled.insert(number, compiled.clone());
        Ok(compiled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_what_failed() {
        let e = RevisionError::Missing {
            rule: "r".into(),
            number: 3,
        };
        assert_eq!(e.to_string(), "rule r has no revision 3");
    }
}
