//! Printing plans as multi-document YAML (`render`, `test` golden files, `diff`).

use std::fmt::Write;

use serde_json::{Value as Json, json};

use crate::{Action, FinalizerChange, Plan};

/// `value` as YAML text.
pub fn to_yaml(value: &Json) -> String {
    ruleop_lang::yaml::to_string(value)
}

/// The verb `render` prints for an action.
pub fn verb(action: Action) -> &'static str {
    match action {
        Action::Create => "create",
        Action::Update => "update",
        Action::Recreate => "recreate",
        Action::UpToDate => "unchanged",
        Action::Conflict => "conflict (not applied)",
    }
}

/// The plan as `render` prints it: children, deletions, events, finalizer, then the status.
pub fn plan_yaml(plan: &Plan) -> String {
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = write_plan(plan, &mut out);
    out
}

fn write_plan(plan: &Plan, out: &mut String) -> std::fmt::Result {
    if let Some(why) = &plan.not_selected {
        return writeln!(
            out,
            "# not selected ({why}): ruleop leaves this parent alone"
        );
    }
    if let Some(f) = &plan.failure {
        writeln!(out, "# plan failed ({}): {}", f.reason, f.message)?;
    }
    for d in &plan.apply {
        writeln!(out, "---\n# {}: child {}", verb(d.action), d.child)?;
        write!(out, "{}", to_yaml(&d.object))?;
    }
    for d in &plan.delete {
        writeln!(out, "---\n# delete: {} ({})", d.key, d.reason)?;
    }
    for d in &plan.decorate {
        let set = json!({"labels": d.labels, "annotations": d.annotations});
        writeln!(out, "# decorate: {} {set}", d.key)?;
    }
    for d in &plan.undecorate {
        writeln!(
            out,
            "# undecorate: {} (its decoration is no longer rendered)",
            d.key
        )?;
    }
    for e in &plan.events {
        writeln!(out, "# event {:?} {}: {}", e.type_, e.reason, e.message)?;
    }
    match plan.finalizer {
        FinalizerChange::Add => {
            writeln!(out, "# finalizer: add {}", ruleop_schema::meta::FINALIZER)?
        }
        FinalizerChange::Remove => writeln!(
            out,
            "# finalizer: remove {}",
            ruleop_schema::meta::FINALIZER
        )?,
        FinalizerChange::None => {}
    }
    if let Some(after) = plan.requeue_after {
        writeln!(out, "# requeue after {}s", after.as_secs())?;
    }
    match &plan.status {
        Some(status) => write!(
            out,
            "---\n# status\n{}",
            to_yaml(&json!({ "status": status }))
        )?,
        None => writeln!(out, "---\n# status unchanged")?,
    }
    Ok(())
}
