//! `ruleop rollout status|pause|resume|undo RULE`: look at and steer the staged rollout of a
//! rule. The rollout is the new `RuleRevision`'s `status.rollout`; pause, resume and undo
//! are annotations on it that the leader reads within a second (`kubectl annotate` does the
//! same, see the README).

use std::io::Write;
use std::path::PathBuf;

use kube::api::{Api, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::{Value as Json, json};

use super::CliError;
use crate::revisions::resource;
use crate::revisions::rollout::{HALTED, PAUSED, PROGRESSING, RESUME, UNDO};
use ruleop_lang::staged::{Phase, RolloutState};
use ruleop_schema::meta;

/// What to do with the rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RolloutVerb {
    /// Print the rule's revisions and the rollout's step, phase and failing parents.
    Status,
    /// Hold the rollout at its step (parents already moved stay moved).
    Pause,
    /// Go on after a pause, or past a halted step.
    Resume,
    /// Send every parent back to the revision the rollout started from.
    Undo,
}

/// Options of `ruleop rollout`.
#[derive(Debug, Clone, clap::Args)]
pub struct RolloutArgs {
    /// status, pause, resume or undo.
    #[arg(value_enum)]
    pub verb: RolloutVerb,
    /// The rule's name (`metadata.name`).
    pub rule: String,
    /// Path of the kubeconfig (default: $KUBECONFIG, ~/.kube/config, or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// The kubeconfig context to use (default: its current context).
    #[arg(long)]
    pub context: Option<String>,
}

fn cluster_err(what: impl std::fmt::Display) -> CliError {
    CliError::Cluster(what.to_string())
}

/// Runs `ruleop rollout`.
pub async fn rollout(args: &RolloutArgs, out: &mut impl Write) -> Result<(), CliError> {
    let client = crate::client::connect_to(args.kubeconfig.as_deref(), args.context.as_deref())
        .await
        .map_err(cluster_err)?;
    let api: Api<DynamicObject> = Api::all_with(client, &resource());
    let selector = format!("{}={}", meta::RULE_LABEL, args.rule);
    let listed = api
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| cluster_err(format!("cannot list RuleRevisions of {}: {e}", args.rule)))?;
    let mut revisions: Vec<Json> = listed
        .items
        .iter()
        .filter_map(|o| serde_json::to_value(o).ok())
        .collect();
    revisions.sort_by_key(|r| r.pointer("/spec/revision").and_then(Json::as_u64));
    if revisions.is_empty() {
        return Err(cluster_err(format!(
            "rule {} has no RuleRevision (is it loaded, with --revisions?)",
            args.rule
        )));
    }
    // The rollout: the newest revision that has one.
    let rolling = revisions
        .iter()
        .rev()
        .find_map(|r| Some((r, RolloutState::from_json(r.get("status")?)?)));
    if args.verb == RolloutVerb::Status {
        return status(&revisions, rolling, out);
    }
    let Some((rev, state)) = rolling.filter(|(_, s)| s.in_progress()) else {
        return Err(cluster_err(format!(
            "rule {} has no staged rollout in progress",
            args.rule
        )));
    };
    let name = meta::name(rev).to_string();
    let annotations = match args.verb {
        RolloutVerb::Pause => json!({ PAUSED: "true" }),
        RolloutVerb::Resume if state.phase == Phase::Halted => {
            json!({ PAUSED: null, RESUME: state.step.to_string() })
        }
        RolloutVerb::Resume => json!({ PAUSED: null }),
        RolloutVerb::Undo => json!({ UNDO: "true" }),
        RolloutVerb::Status => json!({}),
    };
    api.patch(
        &name,
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": annotations}})),
    )
    .await
    .map_err(|e| cluster_err(format!("cannot annotate RuleRevision {name}: {e}")))?;
    let done = match args.verb {
        RolloutVerb::Pause => "paused",
        RolloutVerb::Resume => "resumed",
        _ => "undone: every parent goes back to the revision it started from",
    };
    writeln!(out, "rulerevision/{name}: rollout {done}")?;
    Ok(())
}

fn status(
    revisions: &[Json],
    rolling: Option<(&Json, RolloutState)>,
    out: &mut impl Write,
) -> Result<(), CliError> {
    writeln!(
        out,
        "{:<10} {:<10} {:>8} {:>6} {:>8}",
        "REVISION", "STATE", "PARENTS", "READY", "FAILING"
    )?;
    for r in revisions {
        let n = |p: &str| r.pointer(p).and_then(Json::as_u64).unwrap_or(0);
        writeln!(
            out,
            "{:<10} {:<10} {:>8} {:>6} {:>8}",
            n("/spec/revision"),
            r.pointer("/status/state")
                .and_then(Json::as_str)
                .unwrap_or("-"),
            n("/status/parents"),
            n("/status/ready"),
            n("/status/failing"),
        )?;
    }
    let Some((rev, state)) = rolling else {
        writeln!(out, "no staged rollout recorded")?;
        return Ok(());
    };
    let paused = meta::annotation(rev, PAUSED) == Some("true");
    writeln!(
        out,
        "rollout to revision {} from {}: {:?}{}, step {} of {} (started {}), {} parents moved",
        rev.pointer("/spec/revision")
            .and_then(Json::as_u64)
            .unwrap_or(0),
        state.from,
        state.phase,
        if paused { " (paused)" } else { "" },
        state.step + 1,
        state.steps,
        state.step_started_at,
        state.moved,
    )?;
    for type_ in [PROGRESSING, HALTED] {
        if let Some(c) = rev
            .pointer("/status/conditions")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .find(|c| c.get("type").and_then(Json::as_str) == Some(type_))
        {
            writeln!(
                out,
                "{type_}={}: {}",
                c.get("status").and_then(Json::as_str).unwrap_or("?"),
                c.get("message").and_then(Json::as_str).unwrap_or("")
            )?;
        }
    }
    Ok(())
}
