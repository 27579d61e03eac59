//! The soak's model of what the cluster should hold, and the checks of the end state: the
//! exact child set, truthful statuses and every write inside its replica's term.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value as Json;

use crate::support::audit::Write;
use crate::support::operator::jsonpath;
use crate::support::{TestEnv, is_live};

/// The leader Lease's duration (src/leader.rs) and a tolerance for the audit log's clock.
const LEASE: Duration = Duration::from_secs(15);
const TOLERANCE: Duration = Duration::from_secs(2);
/// The leader Lease's name (the default of `--leader-elect-name`).
pub const LEASE_NAME: &str = "ruleop-leader";
/// The label the rules put on every child: the rule file's revision.
pub const REV: &str = "soak.ruleop.test/rev";

/// splitmix64: small, seeded, the same sequence everywhere.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }

    pub fn secs(&mut self, from: u64, to: u64) -> Duration {
        Duration::from_secs(from + self.next() % (to - from + 1))
    }
}

/// What the parents should be: the test's model, changed with every step.
#[derive(Default)]
pub struct Model {
    /// Crate: slots, label.
    pub crates: BTreeMap<String, (usize, String)>,
    /// Bundle: items, tag.
    pub bundles: BTreeMap<String, (Vec<String>, String)>,
    /// Deployment (the built-in parent): replicas.
    pub deployments: BTreeMap<String, usize>,
    /// PodSet (the reference rule): replicas.
    pub podsets: BTreeMap<String, usize>,
    /// Furnace (the slow template): bricks.
    pub furnaces: BTreeMap<String, usize>,
    /// Each soak rule file's revision label.
    pub revs: BTreeMap<&'static str, u32>,
    pub serial: usize,
}

/// The soak's rule files (tests/rules/soak/) and the reference rule it adds.
pub const SOAK_RULES: [&str; 4] = ["crate", "bundle", "deco", "furnace"];

/// How much a furnace burns per brick: a render of a few tens of milliseconds each.
pub const BURN: usize = 60_000;

impl Model {
    pub fn name(&mut self, prefix: &str) -> String {
        self.serial += 1;
        format!("{prefix}{}", self.serial)
    }

    pub fn items(rng: &mut Rng) -> Vec<String> {
        let all = ["red", "green", "blue", "cyan", "plum"];
        let mut items: Vec<String> = all
            .iter()
            .filter(|_| rng.below(2) == 0)
            .map(|s| s.to_string())
            .collect();
        if items.is_empty() {
            items.push("gray".into());
        }
        items
    }

    pub fn crate_yaml(name: &str, (slots, label): &(usize, String)) -> String {
        format!(
            "---\napiVersion: soak.ruleop.test/v1\nkind: Crate\nmetadata: {{name: {name}}}\nspec: {{slots: {slots}, label: {label}}}\n"
        )
    }

    pub fn bundle_yaml(name: &str, (items, tag): &(Vec<String>, String)) -> String {
        format!(
            "---\napiVersion: soak.ruleop.test/v1\nkind: Bundle\nmetadata: {{name: {name}}}\nspec: {{items: [{}], tag: {tag}}}\n",
            items.join(", ")
        )
    }

    pub fn deployment_yaml(name: &str, replicas: usize) -> String {
        format!(
            "---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {replicas}\n  selector: {{matchLabels: {{soak: {name}}}}}\n  template:\n    metadata: {{labels: {{soak: {name}}}}}\n    spec: {{containers: [{{name: main, image: busybox}}]}}\n"
        )
    }

    pub fn podset_yaml(name: &str, replicas: usize) -> String {
        format!(
            "---\napiVersion: app.example.com/v1alpha1\nkind: PodSet\nmetadata: {{name: {name}}}\nspec: {{replicas: {replicas}}}\n"
        )
    }

    pub fn furnace_yaml(name: &str, heat: usize) -> String {
        format!(
            "---\napiVersion: soak.ruleop.test/v1\nkind: Furnace\nmetadata: {{name: {name}}}\nspec: {{heat: {heat}, burn: {BURN}}}\n"
        )
    }

    /// Every parent, as YAML for `kubectl apply`.
    pub fn all_yaml(&self) -> String {
        let mut yaml = String::new();
        for (n, c) in &self.crates {
            yaml += &Self::crate_yaml(n, c);
        }
        for (n, b) in &self.bundles {
            yaml += &Self::bundle_yaml(n, b);
        }
        for (n, r) in &self.deployments {
            yaml += &Self::deployment_yaml(n, *r);
        }
        for (n, r) in &self.podsets {
            yaml += &Self::podset_yaml(n, *r);
        }
        for (n, h) in &self.furnaces {
            yaml += &Self::furnace_yaml(n, *h);
        }
        yaml
    }

    /// The exact ConfigMaps and Secrets the rules must have made: name -> (rule, key data).
    pub fn expected(&self) -> BTreeMap<String, (&'static str, String)> {
        let mut want = BTreeMap::new();
        for (n, (slots, label)) in &self.crates {
            for i in 0..*slots {
                want.insert(format!("configmap/{n}-slot-{i}"), ("crate", label.clone()));
            }
            want.insert(format!("secret/{n}-key"), ("crate", label.clone()));
        }
        for (n, (items, tag)) in &self.bundles {
            for item in items {
                want.insert(format!("configmap/{n}-{item}"), ("bundle", tag.clone()));
            }
        }
        for (n, r) in &self.deployments {
            want.insert(format!("configmap/{n}-deco"), ("deco", r.to_string()));
        }
        for (n, heat) in &self.furnaces {
            for i in 0..*heat {
                want.insert(format!("configmap/{n}-b{i}"), ("furnace", String::new()));
            }
        }
        want
    }
}

/// `kubectl get` of one kind of the soak's children, by name.
fn children(env: &TestEnv, what: &str) -> BTreeMap<String, Json> {
    let out = env.kubectl(&["get", what, "-l", "ruleop.dev/rule", "-o", "json"]);
    let list: Json = serde_json::from_str(&out).unwrap();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|o| is_live(o))
        .map(|o| {
            let name = o["metadata"]["name"].as_str().unwrap_or_default();
            (format!("{what}/{name}"), o.clone())
        })
        .collect()
}

/// The children match the model exactly: names, data and the current revision labels.
pub fn children_match(env: &TestEnv, model: &Model) -> Result<(), String> {
    let want = model.expected();
    let mut have = children(env, "configmap");
    have.extend(children(env, "secret"));
    have.retain(|_, o| {
        o["metadata"]["labels"]["ruleop.dev/rule"]
            .as_str()
            .is_some_and(|r| r.starts_with("soak-"))
    });
    let want_names: BTreeSet<&String> = want.keys().collect();
    let have_names: BTreeSet<&String> = have.keys().collect();
    if want_names != have_names {
        let missing: Vec<_> = want_names.difference(&have_names).collect();
        let extra: Vec<_> = have_names.difference(&want_names).collect();
        return Err(format!("missing {missing:?}, extra {extra:?}"));
    }
    for (key, (rule, value)) in &want {
        let obj = &have[key];
        let rev = model.revs[rule].to_string();
        if obj["metadata"]["labels"][REV].as_str() != Some(rev.as_str()) {
            return Err(format!("{key}: revision label not {rev}"));
        }
        let data = match *rule {
            "crate" if key.starts_with("secret/") => {
                // Secrets are read back base64-encoded.
                let encoded = obj["data"]["label"].as_str().unwrap_or_default();
                (base64(value) == encoded).then_some(())
            }
            "crate" => (obj["data"]["label"].as_str() == Some(value)).then_some(()),
            "bundle" => (obj["data"]["tag"].as_str() == Some(value)).then_some(()),
            "deco" => (obj["data"]["replicas"].as_str() == Some(value)).then_some(()),
            _ => Some(()),
        };
        if data.is_none() {
            return Err(format!("{key}: data not {value:?}: {}", obj["data"]));
        }
    }
    Ok(())
}

fn base64(text: &str) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes = text.as_bytes();
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The pods of each PodSet: exactly `replicas` live ones, and the status listing them.
pub fn podsets_match(env: &TestEnv, model: &Model) -> Result<(), String> {
    let pods = children(env, "pod");
    for (name, replicas) in &model.podsets {
        let uid = jsonpath(env, "podset", name, "{.metadata.uid}");
        let owned = pods
            .values()
            .filter(|p| p["metadata"]["labels"]["ruleop.dev/owner"].as_str() == Some(uid.as_str()))
            .count();
        if owned != *replicas {
            return Err(format!("podset {name}: {owned} pods, want {replicas}"));
        }
    }
    Ok(())
}

/// Every soak parent with a status of ruleop's says Ready for its current generation, with
/// the fields the model implies.
pub fn statuses_match(env: &TestEnv, model: &Model) -> Result<(), String> {
    let kinds: [(&str, Vec<String>); 4] = [
        ("crate", model.crates.keys().cloned().collect()),
        ("bundle", model.bundles.keys().cloned().collect()),
        ("furnace", model.furnaces.keys().cloned().collect()),
        ("podset", model.podsets.keys().cloned().collect()),
    ];
    for (kind, names) in kinds {
        let out = env.kubectl(&["get", kind, "-o", "json"]);
        let list: Json = serde_json::from_str(&out).unwrap();
        let by_name: BTreeMap<&str, &Json> = list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|o| (o["metadata"]["name"].as_str().unwrap_or_default(), o))
            .collect();
        for name in names {
            let Some(obj) = by_name.get(name.as_str()) else {
                return Err(format!("{kind} {name} is gone"));
            };
            let ready = obj["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|c| c["type"] == "Ready");
            let generation = &obj["metadata"]["generation"];
            match ready {
                Some(c) if c["status"] == "True" && &c["observedGeneration"] == generation => {}
                other => {
                    return Err(format!(
                        "{kind} {name}: Ready is {other:?} at generation {generation}"
                    ));
                }
            }
            let status = &obj["status"];
            let listed = |field: &str| -> BTreeSet<String> {
                status[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|v| v.as_str().map(str::to_string))
                    .collect()
            };
            let truthful = match kind {
                "crate" => {
                    let (slots, label) = &model.crates[&name];
                    let want: BTreeSet<String> =
                        (0..*slots).map(|i| format!("{name}-slot-{i}")).collect();
                    listed("slots") == want && status["label"].as_str() == Some(label)
                }
                "bundle" => {
                    let (items, tag) = &model.bundles[&name];
                    let want: BTreeSet<String> =
                        items.iter().map(|i| format!("{name}-{i}")).collect();
                    listed("parts") == want && status["tag"].as_str() == Some(tag)
                }
                "furnace" => listed("bricks").len() == model.furnaces[&name],
                _ => listed("podNames").len() == model.podsets[&name],
            };
            if !truthful {
                return Err(format!(
                    "{kind} {name}: status {status} does not match the model"
                ));
            }
        }
    }
    Ok(())
}

/// A write is inside its replica's term when the last successful write of the leader Lease
/// before it came from the same replica (its User-Agent names it) and was less than a lease
/// duration earlier: after that, another replica may have taken over.
pub fn writes_outside_terms(writes: &[Write], ns: &str) -> Vec<String> {
    let mut holder: Option<(&str, jiff::Timestamp)> = None;
    let mut out = Vec::new();
    for w in writes.iter().filter(|w| w.by_operator() && w.succeeded()) {
        // Without the replica's name in the User-Agent, terms could not be told apart.
        if !w.user_agent.ends_with(')') {
            out.push(format!("no replica named in the User-Agent: {w}"));
        }
        let Ok(at) = w.received.parse::<jiff::Timestamp>() else {
            out.push(format!("unreadable time: {w}"));
            continue;
        };
        if w.resource == "leases" {
            if w.namespace == ns && w.name == LEASE_NAME {
                holder = Some((w.user_agent.as_str(), at));
            }
            continue;
        }
        if w.namespace != ns {
            continue;
        }
        let inside = holder.is_some_and(|(ua, renewed)| {
            ua == w.user_agent && at.duration_since(renewed).unsigned_abs() < LEASE + TOLERANCE
        });
        if !inside {
            out.push(format!(
                "{} {w} (lease last written by {holder:?})",
                w.received
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(resource: &str, name: &str, replica: &str, received: &str) -> Write {
        Write {
            verb: "patch".into(),
            resource: resource.into(),
            subresource: String::new(),
            namespace: "ns".into(),
            name: name.into(),
            user_agent: format!("ruleop/0.1.0 ({replica})"),
            code: 200,
            received: received.into(),
            impersonated_user: String::new(),
        }
    }

    #[test]
    fn a_write_is_inside_the_term_of_the_replica_that_last_renewed_the_lease() {
        let lease = |replica, at| write("leases", LEASE_NAME, replica, at);
        let child = |replica, at| write("configmaps", "x", replica, at);
        let ok = [
            lease("a", "2026-01-01T00:00:00.000000Z"),
            child("a", "2026-01-01T00:00:01.000000Z"),
            lease("b", "2026-01-01T00:00:20.000000Z"),
            child("b", "2026-01-01T00:00:21.000000Z"),
        ];
        assert_eq!(writes_outside_terms(&ok, "ns"), Vec::<String>::new());
        // The old leader writes after the new one took over; a leader writes long after its
        // last renewal; a replica writes before any lease was held.
        for bad in [
            [
                lease("a", "2026-01-01T00:00:00.000000Z"),
                lease("b", "2026-01-01T00:00:20.000000Z"),
                child("a", "2026-01-01T00:00:21.000000Z"),
            ],
            [
                lease("a", "2026-01-01T00:00:00.000000Z"),
                child("a", "2026-01-01T00:00:10.000000Z"),
                child("a", "2026-01-01T00:00:18.000000Z"),
            ],
            [
                child("a", "2026-01-01T00:00:00.000000Z"),
                lease("a", "2026-01-01T00:00:01.000000Z"),
                child("a", "2026-01-01T00:00:02.000000Z"),
            ],
        ] {
            assert_eq!(writes_outside_terms(&bad, "ns").len(), 1, "{bad:?}");
        }
    }
}
