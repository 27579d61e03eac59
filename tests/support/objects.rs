//! Objects through kubectl: the live (not terminating) objects of a kind, and CRD installs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde_json::Value as Json;

use super::kubectl;

/// Where a list is taken.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// One namespace (`-n`).
    Namespace(&'a str),
    /// Cluster-scoped kinds (no `-n`).
    Cluster,
    /// Every namespace and cluster-scoped objects (`-A`).
    All,
}

/// Whether an object is live: not being deleted.
pub fn is_live(obj: &Json) -> bool {
    obj["metadata"]["deletionTimestamp"].is_null()
}

/// The live objects of `what` (one kind or a comma-separated list) in `scope`, matching
/// `selector` when given. Fails the test when kubectl does, so a misspelt kind is not read
/// as "none left".
pub fn live_objects(scope: Scope, what: &str, selector: Option<&str>) -> Vec<Json> {
    let mut args = vec!["get", what, "-o", "json"];
    match scope {
        Scope::Namespace(ns) => args.extend(["-n", ns]),
        Scope::Cluster => {}
        Scope::All => args.push("-A"),
    }
    if let Some(selector) = selector {
        args.extend(["-l", selector]);
    }
    let mut list: Json = serde_json::from_str(&kubectl(&args)).unwrap();
    let items = list["items"].take();
    let Json::Array(items) = items else {
        panic!("kubectl get {what}: no items in {list}")
    };
    items.into_iter().filter(is_live).collect()
}

/// Sorted names of the live objects of `what` in `scope` matching `selector`.
pub fn live_names(scope: Scope, what: &str, selector: Option<&str>) -> Vec<String> {
    let mut names: Vec<String> = live_objects(scope, what, selector)
        .iter()
        .map(|o| name(o).to_string())
        .collect();
    names.sort();
    names
}

/// The live objects of `what` in `scope` matching `selector`, as `Kind/name` → uid.
pub fn live_uids(scope: Scope, what: &str, selector: Option<&str>) -> BTreeMap<String, String> {
    live_objects(scope, what, selector)
        .iter()
        .map(|o| {
            let kind = o["kind"].as_str().unwrap();
            let uid = o["metadata"]["uid"].as_str().unwrap();
            (format!("{kind}/{}", name(o)), uid.to_string())
        })
        .collect()
}

fn name(obj: &Json) -> &str {
    obj["metadata"]["name"].as_str().unwrap()
}

/// Applies the CRDs at `path` (a file or a directory) and waits until they are served; once
/// per path and test binary, however many tests ask at the same time.
pub fn install_crds_at(path: &Path) {
    static INSTALLED: Mutex<BTreeSet<PathBuf>> = Mutex::new(BTreeSet::new());
    // Held while installing: a second test asking for the same CRDs waits until they serve.
    let mut installed = INSTALLED.lock().unwrap_or_else(|e| e.into_inner());
    if installed.contains(path) {
        return;
    }
    let file = path.to_str().unwrap();
    kubectl(&["apply", "-f", file]);
    kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "-f",
        file,
    ]);
    installed.insert(path.to_path_buf());
}
