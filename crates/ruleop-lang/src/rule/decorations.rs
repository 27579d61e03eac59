//! Decorations: labels and annotations a rule sets on objects it does not own (a Pod of a
//! StatefulSet, a Namespace, a Secret), selected by label, by name or as one of the parent's
//! related objects. Only `metadata.labels` and `metadata.annotations` are ever written, with
//! server-side apply under a field manager of the decoration's own (see docs/rules.md).

use std::collections::{BTreeMap, BTreeSet};

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::compile::Checker;
use super::{RuleSpec, Scope, known_scope};
use crate::template::TemplateId;

/// Labels and annotations set on objects the rule does not own.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Decoration {
    /// The decoration's id within the rule.
    pub name: String,
    /// `group/version` of the decorated objects, e.g. `v1`.
    pub api_version: String,
    /// Kind of the decorated objects, e.g. `Pod`.
    pub kind: String,
    /// Which objects are decorated: exactly one of `selector`, `objectName`, `related`.
    /// A namespaced parent decorates objects of its own namespace only.
    pub target: DecorationTarget,
    /// Labels to set: key → template over the context plus `object` (the decorated object),
    /// e.g. `pod-name: "{{ object.metadata.name }}"`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Annotations to set, like `labels`.
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// The objects a decoration applies to.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct DecorationTarget {
    /// Label selector (`matchLabels`); values are templates over `parent`, e.g.
    /// `app: "{{ parent.metadata.name }}"`.
    #[serde(default)]
    pub selector: Option<BTreeMap<String, String>>,
    /// A template for one object's name, e.g. `"{{ parent.spec.configMap }}"`.
    #[serde(default)]
    pub object_name: Option<String>,
    /// The name of a `spec.related` entry of the same kind: its selected objects.
    #[serde(default)]
    pub related: Option<String>,
}

/// `spec.decorations[i]`, compiled.
#[derive(Debug, Clone)]
pub struct DecorationTemplates {
    /// `target.selector`: each label's value template, in key order.
    pub selector: Vec<(String, TemplateId)>,
    /// `target.objectName`.
    pub object_name: Option<TemplateId>,
    /// `target.related`: the index of the related entry.
    pub related: Option<usize>,
    /// `labels`, in key order.
    pub labels: Vec<(String, TemplateId)>,
    /// `annotations`, in key order.
    pub annotations: Vec<(String, TemplateId)>,
}

/// Whether `key` is a valid label or annotation key (`[prefix/]name`).
fn valid_key(key: &str) -> bool {
    let (prefix, name) = match key.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "-.".contains(c))
    });
    name_ok && prefix_ok
}

/// `spec.decorations`: names, targets and templates.
pub(super) fn compile(c: &mut Checker<'_>, spec: &RuleSpec) {
    let mut seen = BTreeSet::new();
    for (i, d) in spec.decorations.iter().enumerate() {
        let base = format!("spec.decorations[{i}]");
        c.name(&format!("{base}.name"), &d.name, &mut seen);
        if d.kind.is_empty() || d.api_version.is_empty() {
            c.error(&base, "a decoration needs apiVersion and kind");
        }
        if spec.parent.scope == Scope::Namespaced
            && known_scope(&d.api_version, &d.kind) == Some(Scope::Cluster)
        {
            c.error(
                &format!("{base}.kind"),
                format!(
                    "{}/{} is cluster-scoped: only a cluster-scoped parent may decorate it \
                     (a namespaced parent decorates objects of its own namespace)",
                    d.api_version, d.kind
                ),
            );
        }
        if d.labels.is_empty() && d.annotations.is_empty() {
            c.error(&base, "a decoration needs labels or annotations");
        }
        let t = &d.target;
        let targets = [
            t.selector.is_some(),
            t.object_name.is_some(),
            t.related.is_some(),
        ];
        if targets.iter().filter(|x| **x).count() != 1 {
            c.error(
                &format!("{base}.target"),
                "a decoration target needs exactly one of selector, objectName, related",
            );
        }
        if t.selector.as_ref().is_some_and(BTreeMap::is_empty) {
            c.error(
                &format!("{base}.target.selector"),
                "a decoration selector needs at least one label",
            );
        }
        let related = t.related.as_ref().and_then(|name| {
            let found = spec.related.iter().position(|r| &r.name == name);
            match found {
                Some(j)
                    if spec.related[j].kind == d.kind
                        && spec.related[j].api_version == d.api_version =>
                {
                    Some(j)
                }
                Some(_) => {
                    c.error(
                        &format!("{base}.target.related"),
                        format!(
                            "related {name:?} is not of the decoration's kind {}",
                            d.kind
                        ),
                    );
                    None
                }
                None => {
                    c.error(
                        &format!("{base}.target.related"),
                        format!("no related entry named {name:?}"),
                    );
                    None
                }
            }
        });
        let mut ok = true;
        let mut map = |c: &mut Checker<'_>, part: &str, entries: &BTreeMap<String, String>| {
            let mut out = Vec::new();
            for (key, value) in entries {
                let path = format!("{base}.{part}.{key}");
                if part != "target.selector" && !valid_key(key) {
                    c.error(&path, format!("{key:?} is not a valid {part} key"));
                }
                match c.template(&path, value) {
                    Some(id) => out.push((key.clone(), id)),
                    None => ok = false,
                }
            }
            out
        };
        let selector = map(
            c,
            "target.selector",
            t.selector.as_ref().unwrap_or(&BTreeMap::new()),
        );
        let labels = map(c, "labels", &d.labels);
        let annotations = map(c, "annotations", &d.annotations);
        let object_name = t
            .object_name
            .as_deref()
            .map(|n| c.template(&format!("{base}.target.objectName"), n));
        if object_name.is_some_and(|n| n.is_none()) {
            ok = false;
        }
        c.draft.decorations.push(ok.then(|| DecorationTemplates {
            selector,
            object_name: object_name.flatten(),
            related,
            labels,
            annotations,
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::valid_key;

    #[test]
    fn label_keys() {
        for ok in ["pod-name", "app.kubernetes.io/name", "a", "x_y.z"] {
            assert!(valid_key(ok), "{ok}");
        }
        for bad in ["", "-a", "a-", "UP/x", "a b", "/x", "p/"] {
            assert!(!valid_key(bad), "{bad}");
        }
    }
}
