//! Scaling strategies for replicated children: which replicas to keep, create and delete in
//! one step. Pure: names come from a seed (the parent's uid), never from randomness, so a
//! step repeated on a stale view names the same replica and cannot create an extra one.

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use crate::meta;
use crate::rule::{Naming, StepPolicy};

/// One replica: its name and sequence number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replica {
    /// The object name.
    pub name: String,
    /// Sequence number (Generated) or index (Ordinal); newest is highest.
    pub ordinal: u64,
}

/// What one step does to a replica set.
#[derive(Debug, Default, PartialEq)]
pub struct Step {
    /// Existing replicas to keep (re-rendered so template changes reach them).
    pub keep: Vec<Replica>,
    /// Replicas to create.
    pub create: Vec<Replica>,
    /// Existing replicas to delete, newest first.
    pub delete: Vec<Replica>,
    /// Why the step is holding back, if it is.
    pub waiting: Option<String>,
}

/// A replica as observed.
#[derive(Debug, Clone)]
pub struct ObservedReplica<'a> {
    /// The object.
    pub object: &'a Json,
    /// Its sequence number.
    pub ordinal: u64,
    /// Whether it counts as ready (for `Ordered`).
    pub ready: bool,
}

impl ObservedReplica<'_> {
    fn replica(&self) -> Replica {
        Replica {
            name: meta::name(self.object).to_string(),
            ordinal: self.ordinal,
        }
    }
}

/// The ordinal ruleop stored on a replica, if any.
pub fn ordinal_of(obj: &Json) -> Option<u64> {
    meta::annotation(obj, meta::REPLICA_ANNOTATION)?
        .parse()
        .ok()
}

const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// The generated name of replica `ordinal`: `<prefix><5 chars>` from a hash of the seed.
pub fn generated_name(prefix: &str, seed: &str, ordinal: u64) -> String {
    let digest = Sha256::digest(format!("{seed}/{ordinal}").as_bytes());
    let suffix: String = digest
        .iter()
        .take(5)
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    format!("{prefix}{suffix}")
}

/// Plans one step from `observed` towards `desired` replicas.
pub fn step(
    naming: Naming,
    policy: StepPolicy,
    prefix: &str,
    seed: &str,
    desired: usize,
    observed: &[ObservedReplica<'_>],
) -> Step {
    let mut live: Vec<&ObservedReplica> = observed
        .iter()
        .filter(|r| !meta::is_deleting(r.object))
        .collect();
    live.sort_by_key(|r| r.ordinal);
    let terminating = observed.len() - live.len();
    let mut step = Step::default();

    let name_for = |ordinal: u64| match naming {
        Naming::Generated => generated_name(prefix, seed, ordinal),
        Naming::Ordinal => format!("{prefix}-{ordinal}"),
    };
    let next_ordinals = |count: usize| -> Vec<u64> {
        match naming {
            // After the highest currently observed: a replacement for a middle replica gets a
            // new name; one for the newest may reuse its name (a new object, new uid).
            Naming::Generated => {
                let max = observed.iter().map(|r| r.ordinal + 1).max().unwrap_or(0);
                (max..).take(count).collect()
            }
            // The lowest free indexes, like a StatefulSet.
            Naming::Ordinal => (0..)
                .filter(|i| !observed.iter().any(|r| r.ordinal == *i))
                .take(count)
                .collect(),
        }
    };

    let one_at_a_time = policy != StepPolicy::AllAtOnce;
    if live.len() > desired {
        let extra = live.len() - desired;
        let (kept, removed) = live.split_at(desired);
        step.keep = kept.iter().map(|r| r.replica()).collect();
        if one_at_a_time && terminating > 0 {
            step.keep.extend(removed.iter().map(|r| r.replica()));
            step.waiting = Some(format!("waiting for {terminating} replica(s) to terminate"));
            return step;
        }
        let count = if one_at_a_time { 1 } else { extra };
        step.delete = removed
            .iter()
            .rev()
            .take(count)
            .map(|r| r.replica())
            .collect();
        step.keep
            .extend(removed.iter().rev().skip(count).rev().map(|r| r.replica()));
        return step;
    }

    step.keep = live.iter().map(|r| r.replica()).collect();
    let missing = desired - live.len();
    if missing == 0 {
        return step;
    }
    if one_at_a_time && terminating > 0 {
        step.waiting = Some(format!("waiting for {terminating} replica(s) to terminate"));
        return step;
    }
    if policy == StepPolicy::Ordered {
        let unready = live.iter().filter(|r| !r.ready).count();
        if unready > 0 {
            step.waiting = Some(format!("waiting for {unready} replica(s) to become ready"));
            return step;
        }
    }
    let count = if one_at_a_time { 1 } else { missing };
    step.create = next_ordinals(count)
        .into_iter()
        .map(|ordinal| Replica {
            name: name_for(ordinal),
            ordinal,
        })
        .collect();
    step
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, ordinal: u64, deleting: bool) -> Json {
        let mut p = json!({"kind": "Pod", "metadata": {"name": name,
            "annotations": {meta::REPLICA_ANNOTATION: ordinal.to_string()}}});
        if deleting {
            p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        }
        p
    }

    fn observe(pods: &[Json]) -> Vec<ObservedReplica<'_>> {
        pods.iter()
            .map(|p| ObservedReplica {
                object: p,
                ordinal: ordinal_of(p).unwrap(),
                ready: true,
            })
            .collect()
    }

    /// Applies a step to a simulated set of pods the way the cluster would.
    fn apply(pods: &mut Vec<Json>, step: &Step) {
        pods.retain(|p| !step.delete.iter().any(|d| d.name == meta::name(p)));
        for c in &step.create {
            pods.push(pod(&c.name, c.ordinal, false));
        }
    }

    #[test]
    fn scale_up_from_zero_one_per_step() {
        let mut pods = Vec::new();
        for expected in 1..=3 {
            let s = step(
                Naming::Generated,
                StepPolicy::OneAtATime,
                "ps-pod",
                "uid",
                3,
                &observe(&pods),
            );
            assert_eq!(s.create.len(), 1, "one create per step");
            assert!(s.delete.is_empty());
            apply(&mut pods, &s);
            assert_eq!(pods.len(), expected);
        }
        let s = step(
            Naming::Generated,
            StepPolicy::OneAtATime,
            "ps-pod",
            "uid",
            3,
            &observe(&pods),
        );
        assert_eq!(
            s,
            Step {
                keep: s.keep.clone(),
                ..Step::default()
            }
        );
        assert_eq!(s.keep.len(), 3);
        assert!(
            pods.iter()
                .all(|p| meta::name(p).starts_with("ps-pod") && meta::name(p).len() == 11)
        );
    }

    #[test]
    fn unobserved_create_is_repeated_not_duplicated() {
        let pods: Vec<Json> = Vec::new();
        let a = step(
            Naming::Generated,
            StepPolicy::OneAtATime,
            "p",
            "uid",
            3,
            &observe(&pods),
        );
        let b = step(
            Naming::Generated,
            StepPolicy::OneAtATime,
            "p",
            "uid",
            3,
            &observe(&pods),
        );
        assert_eq!(
            a.create, b.create,
            "same view, same name: applying twice is one pod"
        );
    }

    #[test]
    fn scale_down_five_to_two_newest_first() {
        let mut pods: Vec<Json> = (0..5).map(|i| pod(&format!("p{i}"), i, false)).collect();
        let mut deleted = Vec::new();
        for _ in 0..3 {
            let s = step(
                Naming::Generated,
                StepPolicy::OneAtATime,
                "p",
                "uid",
                2,
                &observe(&pods),
            );
            assert_eq!(s.delete.len(), 1);
            assert!(s.create.is_empty());
            deleted.push(s.delete[0].name.clone());
            apply(&mut pods, &s);
        }
        assert_eq!(deleted, ["p4", "p3", "p2"]);
        let names: Vec<&str> = pods.iter().map(meta::name).collect();
        assert_eq!(names, ["p0", "p1"]);
    }

    #[test]
    fn waits_while_a_deleted_replica_terminates() {
        let pods = vec![pod("p0", 0, false), pod("p1", 1, false), pod("p2", 2, true)];
        let s = step(
            Naming::Generated,
            StepPolicy::OneAtATime,
            "p",
            "uid",
            1,
            &observe(&pods),
        );
        assert!(s.delete.is_empty() && s.create.is_empty());
        assert!(s.waiting.unwrap().contains("terminate"));
    }

    #[test]
    fn deleted_replica_is_replaced_with_a_new_name() {
        let pods = vec![pod("p0", 0, false), pod("p2", 2, false)];
        let s = step(
            Naming::Generated,
            StepPolicy::OneAtATime,
            "p",
            "uid",
            3,
            &observe(&pods),
        );
        assert_eq!(s.create.len(), 1);
        assert_eq!(s.create[0].ordinal, 3);
        assert!(!["p0", "p2"].contains(&s.create[0].name.as_str()));
    }

    #[test]
    fn all_at_once() {
        let s = step(Naming::Ordinal, StepPolicy::AllAtOnce, "web", "uid", 3, &[]);
        let names: Vec<&str> = s.create.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["web-0", "web-1", "web-2"]);
        let pods: Vec<Json> = (0..5).map(|i| pod(&format!("web-{i}"), i, false)).collect();
        let s = step(
            Naming::Ordinal,
            StepPolicy::AllAtOnce,
            "web",
            "uid",
            2,
            &observe(&pods),
        );
        let names: Vec<&str> = s.delete.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["web-4", "web-3", "web-2"]);
    }

    #[test]
    fn ordinal_naming_fills_the_lowest_gap() {
        let pods = vec![pod("web-0", 0, false), pod("web-2", 2, false)];
        let s = step(
            Naming::Ordinal,
            StepPolicy::OneAtATime,
            "web",
            "uid",
            3,
            &observe(&pods),
        );
        assert_eq!(
            s.create,
            [Replica {
                name: "web-1".into(),
                ordinal: 1
            }]
        );
    }

    #[test]
    fn ordered_waits_for_readiness() {
        let pods = vec![pod("web-0", 0, false)];
        let mut observed = observe(&pods);
        observed[0].ready = false;
        let s = step(
            Naming::Ordinal,
            StepPolicy::Ordered,
            "web",
            "uid",
            2,
            &observed,
        );
        assert!(s.create.is_empty());
        assert!(s.waiting.unwrap().contains("ready"));
        observed[0].ready = true;
        let s = step(
            Naming::Ordinal,
            StepPolicy::Ordered,
            "web",
            "uid",
            2,
            &observed,
        );
        assert_eq!(s.create.len(), 1);
    }
}
