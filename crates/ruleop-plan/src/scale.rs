//! Scaling strategies for replicated children: which replicas to keep, create and delete in
//! one step. Pure: names come from a seed (the parent's uid), never from randomness, so a
//! step repeated on a stale view names the same replica and cannot create an extra one.

use serde_json::Value as Json;
use sha2::{Digest, Sha256};

use ruleop_lang::rule::{Naming, StepPolicy};
use ruleop_schema::meta;

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
    /// Existing replicas beyond the count, waiting for their turn to be deleted: neither
    /// re-rendered nor deleted this step.
    pub hold: Vec<Replica>,
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
            // The lowest free indexes below the count, like a StatefulSet; an index whose
            // object is still terminating is not free.
            Naming::Ordinal => (0..desired as u64)
                .filter(|i| !observed.iter().any(|r| r.ordinal == *i))
                .take(count)
                .collect(),
        }
    };

    let one_at_a_time = policy != StepPolicy::AllAtOnce;
    // Generated: any `desired` replicas will do, the oldest stay. Ordinal: exactly indexes
    // `0..desired`, so an index at or above the count is extra even while a lower one is
    // terminating.
    let split = match naming {
        Naming::Generated => desired.min(live.len()),
        Naming::Ordinal => live.partition_point(|r| r.ordinal < desired as u64),
    };
    let (kept, removed) = live.split_at(split);
    step.keep = kept.iter().map(|r| r.replica()).collect();
    if !removed.is_empty() {
        if one_at_a_time && terminating > 0 {
            step.hold = removed.iter().map(|r| r.replica()).collect();
            step.waiting = Some(format!("waiting for {terminating} replica(s) to terminate"));
            return step;
        }
        let count = if one_at_a_time { 1 } else { removed.len() };
        step.delete = removed
            .iter()
            .rev()
            .take(count)
            .map(|r| r.replica())
            .collect();
        step.hold = removed
            .iter()
            .rev()
            .skip(count)
            .rev()
            .map(|r| r.replica())
            .collect();
        if one_at_a_time {
            return step;
        }
    }

    // Ordinal: indexes below the count with no object, or one still terminating.
    let missing = desired.saturating_sub(kept.len());
    if missing == 0 {
        return step;
    }
    if one_at_a_time && terminating > 0 {
        step.waiting = Some(format!("waiting for {terminating} replica(s) to terminate"));
        return step;
    }
    if policy == StepPolicy::Ordered {
        let unready = kept.iter().filter(|r| !r.ready).count();
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

    fn ordinals(replicas: &[Replica]) -> Vec<u64> {
        replicas.iter().map(|r| r.ordinal).collect()
    }

    #[test]
    fn ordinal_indexes_above_the_count_go_while_a_lower_one_terminates() {
        // web-0 terminating (deleted by hand), count 2: web-2 is extra, not a stand-in.
        let pods = vec![
            pod("web-0", 0, true),
            pod("web-1", 1, false),
            pod("web-2", 2, false),
        ];
        let one = step(
            Naming::Ordinal,
            StepPolicy::OneAtATime,
            "web",
            "uid",
            2,
            &observe(&pods),
        );
        assert_eq!(ordinals(&one.keep), [1]);
        assert_eq!(ordinals(&one.hold), [2], "held for its turn, not kept");
        assert!(one.create.is_empty() && one.delete.is_empty());
        assert!(one.waiting.unwrap().contains("terminate"));
        let all = step(
            Naming::Ordinal,
            StepPolicy::AllAtOnce,
            "web",
            "uid",
            2,
            &observe(&pods),
        );
        assert_eq!(ordinals(&all.keep), [1]);
        assert_eq!(ordinals(&all.delete), [2]);
        assert!(all.create.is_empty(), "index 0 is still taken: {all:?}");
        // Count 3: the free index is never 3, whatever terminates below it.
        let all = step(
            Naming::Ordinal,
            StepPolicy::AllAtOnce,
            "web",
            "uid",
            3,
            &observe(&pods),
        );
        assert_eq!(ordinals(&all.keep), [1, 2]);
        assert!(all.create.is_empty() && all.delete.is_empty(), "{all:?}");
    }

    #[test]
    fn ordinal_replicas_converge_to_exactly_the_indexes_below_the_count() {
        let policies = [
            StepPolicy::OneAtATime,
            StepPolicy::AllAtOnce,
            StepPolicy::Ordered,
        ];
        // Every set of up to five indexes, each live or terminating, towards every count.
        for mask in 0..3u32.pow(5) {
            let mut start = Vec::new();
            let mut m = mask;
            for i in 0..5 {
                match m % 3 {
                    1 => start.push(pod(&format!("web-{i}"), i, false)),
                    2 => start.push(pod(&format!("web-{i}"), i, true)),
                    _ => {}
                }
                m /= 3;
            }
            for desired in 0..4usize {
                for policy in policies {
                    let mut pods = start.clone();
                    for round in 0..20 {
                        let s = step(
                            Naming::Ordinal,
                            policy,
                            "web",
                            "uid",
                            desired,
                            &observe(&pods),
                        );
                        let case = format!("{mask} {desired} {policy:?} {round}: {s:?}");
                        for r in s.keep.iter().chain(&s.create) {
                            assert!(r.ordinal < desired as u64, "{case}");
                            assert_eq!(r.name, format!("web-{}", r.ordinal), "{case}");
                        }
                        for c in &s.create {
                            assert!(!pods.iter().any(|p| meta::name(p) == c.name), "{case}");
                        }
                        let live_extra = pods
                            .iter()
                            .filter(|p| !meta::is_deleting(p))
                            .filter(|p| ordinal_of(p).unwrap() >= desired as u64)
                            .count();
                        assert_eq!(live_extra, s.delete.len() + s.hold.len(), "{case}");
                        // The cluster: terminating objects finish, deletions start.
                        pods.retain(|p| !meta::is_deleting(p));
                        for d in &s.delete {
                            if let Some(p) = pods.iter_mut().find(|p| meta::name(p) == d.name) {
                                p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
                            }
                        }
                        for c in &s.create {
                            pods.push(pod(&c.name, c.ordinal, false));
                        }
                    }
                    let mut names: Vec<&str> = pods.iter().map(meta::name).collect();
                    names.sort_unstable();
                    let want: Vec<String> = (0..desired).map(|i| format!("web-{i}")).collect();
                    assert_eq!(names, want, "{mask} {desired} {policy:?}");
                }
            }
        }
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
