//! The `RuleRevision` object (`ruleop.dev/v1alpha1`, cluster-scoped, `crds/ruleop.dev_rulerevisions.yaml`):
//! its body when created, what ruleop reads back from one, and its status.

use jiff::Timestamp;
use kube::api::ApiResource;
use serde_json::{Value as Json, json};

use crate::controller::Counts;
use ruleop_schema::meta;

/// The API resource of `RuleRevision`.
pub fn resource() -> ApiResource {
    ApiResource {
        group: "ruleop.dev".into(),
        version: "v1alpha1".into(),
        api_version: "ruleop.dev/v1alpha1".into(),
        kind: "RuleRevision".into(),
        plural: "rulerevisions".into(),
    }
}

/// The object name of revision `number` of `rule`.
pub fn name_of(rule: &str, number: u64) -> String {
    format!("{rule}-{number}")
}

/// A new revision (its spec is immutable: the CRD refuses a changed one).
pub fn body(rule: &str, number: u64, hash: &str, source: &str, text: &str) -> Json {
    json!({
        "apiVersion": "ruleop.dev/v1alpha1",
        "kind": "RuleRevision",
        "metadata": {
            "name": name_of(rule, number),
            "labels": {
                meta::RULE_LABEL: rule,
                meta::MANAGED_BY_LABEL: meta::MANAGED_BY,
            },
        },
        "spec": {
            "ruleName": rule,
            "revision": number,
            "contentHash": hash,
            "source": source,
            "text": text,
        },
    })
}

/// A stored revision as ruleop keeps it in memory.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The object's name.
    pub name: String,
    /// Its uid (for Events about it).
    pub uid: String,
    /// `spec.contentHash`.
    pub hash: String,
    /// Its status as last read or written.
    pub status: Json,
}

impl Stored {
    /// Reads a listed object of `rule`; `None` for one that is another rule's or malformed.
    pub fn read(rule: &str, obj: &Json) -> Option<(u64, Stored)> {
        let spec = obj.get("spec")?;
        if spec.get("ruleName").and_then(Json::as_str) != Some(rule) {
            return None;
        }
        let number = spec.get("revision").and_then(Json::as_u64)?;
        Some((
            number,
            Stored {
                name: meta::name(obj).to_string(),
                uid: meta::uid(obj).to_string(),
                hash: spec.get("contentHash")?.as_str()?.to_string(),
                status: obj.get("status").cloned().unwrap_or_else(|| json!({})),
            },
        ))
    }

    /// The refusal this revision shows, if it was refused.
    pub fn refusal(&self) -> Option<String> {
        condition(&self.status, ACCEPTED)
            .filter(|c| c.get("status").and_then(Json::as_str) == Some("False"))
            .map(|c| {
                c.get("message")
                    .and_then(Json::as_str)
                    .unwrap_or_default()
                    .to_string()
            })
    }

    /// The counts its status shows.
    pub fn counts(&self) -> Counts {
        let n = |k: &str| self.status.get(k).and_then(Json::as_u64).unwrap_or(0);
        Counts {
            parents: n("parents"),
            ready: n("ready"),
            failing: n("failing"),
        }
    }

    /// Whether its status says it is the running revision.
    pub fn is_active(&self) -> bool {
        condition(&self.status, ACTIVE)
            .is_some_and(|c| c.get("status").and_then(Json::as_str) == Some("True"))
    }

    /// A reference to it as JSON, enough for an Event about it.
    pub fn as_object(&self) -> Json {
        json!({
            "apiVersion": "ruleop.dev/v1alpha1",
            "kind": "RuleRevision",
            "metadata": {"name": self.name, "uid": self.uid},
        })
    }
}

/// The condition saying whether the content loads.
pub const ACCEPTED: &str = "Accepted";
/// The condition saying whether it is the revision running for its rule.
pub const ACTIVE: &str = "Active";
/// The reason of a refused revision (`Accepted=False`).
pub const REFUSED: &str = "Refused";

fn condition<'a>(status: &'a Json, type_: &str) -> Option<&'a Json> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c.get("type").and_then(Json::as_str) == Some(type_))
}

/// What a revision is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// `None` when it loads; the located errors when refused.
    pub refused: Option<String>,
    /// Whether it runs for its rule; else why not.
    pub active: Result<(), &'static str>,
    /// Its parents.
    pub counts: Counts,
}

/// The status of a revision in `state`, given its `previous` status: a condition whose
/// status, reason and message are unchanged keeps its `lastTransitionTime`, so an unchanged
/// state gives an equal status (and no write).
pub fn status(state: &State, previous: &Json, now: Timestamp) -> Json {
    let accepted = match &state.refused {
        None => (
            "True",
            "Loaded",
            "the rule compiled and passed its checks".to_string(),
        ),
        Some(error) => ("False", REFUSED, error.clone()),
    };
    let active = match (&state.refused, state.active) {
        (Some(_), _) => (
            "False",
            REFUSED,
            "refused: the last good revision runs".into(),
        ),
        (None, Ok(())) => ("True", "Running", "the rule runs this revision".into()),
        (None, Err(why)) => ("False", why, inactive_message(why)),
    };
    let conditions: Vec<Json> = [(ACCEPTED, accepted), (ACTIVE, active)]
        .into_iter()
        .map(|(type_, (status, reason, message))| {
            let old = condition(previous, type_);
            let same = old.is_some_and(|c| {
                c.get("status").and_then(Json::as_str) == Some(status)
                    && c.get("reason").and_then(Json::as_str) == Some(reason)
                    && c.get("message").and_then(Json::as_str) == Some(message.as_str())
            });
            let time = old
                .filter(|_| same)
                .and_then(|c| c.get("lastTransitionTime").cloned())
                .unwrap_or_else(|| json!(now.to_string()));
            json!({"type": type_, "status": status, "reason": reason, "message": message, "lastTransitionTime": time})
        })
        .collect();
    let state_name = match (&state.refused, state.active) {
        (Some(_), _) => "Refused",
        (None, Ok(())) => "Active",
        (None, Err(_)) => "Inactive",
    };
    // A staged rollout's conditions and progress are the rollout's to write: kept as they are.
    let mut conditions = conditions;
    conditions.extend(
        previous
            .get("conditions")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter(|c| {
                let t = c.get("type").and_then(Json::as_str);
                t != Some(ACCEPTED) && t != Some(ACTIVE)
            })
            .cloned(),
    );
    let mut out = json!({
        "state": state_name,
        "parents": state.counts.parents,
        "ready": state.counts.ready,
        "failing": state.counts.failing,
        "conditions": conditions,
    });
    if let Some(rollout) = previous.get("rollout") {
        out["rollout"] = rollout.clone();
    }
    out
}

fn inactive_message(why: &str) -> String {
    match why {
        SUPERSEDED => "another revision of the rule runs".into(),
        RULE_REMOVED => "the rule is no longer loaded".into(),
        other => other.to_string(),
    }
}

/// Why an accepted revision is not active: another one runs.
pub const SUPERSEDED: &str = "Superseded";
/// Why an accepted revision is not active: its rule was removed.
pub const RULE_REMOVED: &str = "RuleRemoved";

#[cfg(test)]
mod tests {
    use super::*;

    fn state(refused: Option<&str>, active: Result<(), &'static str>, parents: u64) -> State {
        State {
            refused: refused.map(str::to_string),
            active,
            counts: Counts {
                parents,
                ready: parents,
                failing: 0,
            },
        }
    }

    #[test]
    fn an_unchanged_state_gives_an_equal_status() {
        let t1: Timestamp = "2026-12-07T20:00:00Z".parse().unwrap();
        let t2: Timestamp = "2026-12-07T21:00:00Z".parse().unwrap();
        let first = status(&state(None, Ok(()), 3), &json!({}), t1);
        assert_eq!(first["state"], "Active");
        assert_eq!(first["parents"], 3);
        assert_eq!(status(&state(None, Ok(()), 3), &first, t2), first);
        // Counts change: conditions keep their times.
        let counted = status(&state(None, Ok(()), 4), &first, t2);
        assert_eq!(counted["conditions"], first["conditions"]);
        // Superseded: Active flips, with the new time; Accepted keeps its time.
        let old = status(&state(None, Err(SUPERSEDED), 0), &counted, t2);
        assert_eq!(old["state"], "Inactive");
        assert_eq!(old["conditions"][0], first["conditions"][0]);
        assert_eq!(old["conditions"][1]["status"], "False");
        assert_eq!(old["conditions"][1]["reason"], SUPERSEDED);
        assert_eq!(
            old["conditions"][1]["lastTransitionTime"],
            "2026-12-07T21:00:00Z"
        );
    }

    #[test]
    fn the_rollout_and_its_conditions_are_kept() {
        let t: Timestamp = "2026-12-07T20:00:00Z".parse().unwrap();
        let mut first = status(&state(None, Ok(()), 3), &json!({}), t);
        first["rollout"] = json!({"from": 1, "step": 0});
        first["conditions"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "RolloutHalted", "status": "True"}));
        let next = status(&state(None, Ok(()), 4), &first, t);
        assert_eq!(next["rollout"], first["rollout"]);
        assert_eq!(next["conditions"][2]["type"], "RolloutHalted");
        assert_eq!(next["parents"], 4);
    }

    #[test]
    fn a_refused_revision_shows_its_error() {
        let s = status(
            &state(Some("r.yaml:3:5: bad"), Ok(()), 0),
            &json!({}),
            Timestamp::UNIX_EPOCH,
        );
        assert_eq!(s["state"], "Refused");
        assert_eq!(s["conditions"][0]["status"], "False");
        assert_eq!(s["conditions"][0]["reason"], REFUSED);
        assert_eq!(s["conditions"][0]["message"], "r.yaml:3:5: bad");
        assert_eq!(s["conditions"][1]["status"], "False");
        let obj = json!({"metadata": {"name": "r-2", "uid": "u"}, "spec": {"ruleName": "r", "revision": 2, "contentHash": "h"}, "status": s});
        let (n, stored) = Stored::read("r", &obj).unwrap();
        assert_eq!(n, 2);
        assert_eq!(stored.refusal().as_deref(), Some("r.yaml:3:5: bad"));
        assert!(!stored.is_active());
        assert!(Stored::read("other", &obj).is_none(), "another rule's");
    }
}
