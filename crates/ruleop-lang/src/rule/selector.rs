//! Parent selectors: which objects of the parent kind a rule governs (`spec.parent.selector`,
//! a Kubernetes label selector, and `spec.parent.annotationSelector`, the same shape over
//! annotations, as metacontroller's DecoratorController has it).
//!
//! A parent outside the selection is not planned at all. The label selector is also sent to
//! the API server on the parent's watch (when the kind's cache serves no other purpose), so
//! unselected objects are not even held in memory; annotations cannot be selected
//! server-side and are matched in-process.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;

use super::compile::Checker;
use super::{ParentRef, RemovalPolicy};

/// A Kubernetes label selector: every `matchLabels` entry and every expression must hold.
/// An empty selector selects every object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct LabelSelector {
    /// Labels the parent must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Requirements on the parent's labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

/// A selector over annotations, shaped like a label selector (metacontroller's
/// `annotationSelector`). `matchExpressions: [{key: K, operator: Exists}]` selects the
/// parents that carry annotation `K` whatever its value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct AnnotationSelector {
    /// Annotations the parent must carry with exactly these values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_annotations: BTreeMap<String, String>,
    /// Requirements on the parent's annotations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<Requirement>,
}

/// One requirement on a label or annotation.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Requirement {
    /// The label or annotation key.
    pub key: String,
    /// How the key's value is tested.
    pub operator: Operator,
    /// The values for `In` and `NotIn` (at least one); empty for `Exists` and
    /// `DoesNotExist`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

/// A requirement's operator, as in Kubernetes label selectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
pub enum Operator {
    /// The key is present with one of `values`.
    In,
    /// The key is absent, or present with none of `values`.
    NotIn,
    /// The key is present (any value).
    Exists,
    /// The key is absent.
    DoesNotExist,
}

impl Requirement {
    fn holds(&self, value: Option<&str>) -> bool {
        let listed = || value.is_some_and(|v| self.values.iter().any(|x| x == v));
        match self.operator {
            Operator::In => listed(),
            Operator::NotIn => !listed(),
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
        }
    }

    /// The requirement in the API server's `labelSelector` syntax.
    fn to_query(&self) -> String {
        let values = || self.values.join(",");
        match self.operator {
            Operator::In => format!("{} in ({})", self.key, values()),
            Operator::NotIn => format!("{} notin ({})", self.key, values()),
            Operator::Exists => self.key.clone(),
            Operator::DoesNotExist => format!("!{}", self.key),
        }
    }

    fn describe(&self) -> String {
        let values = self.values.join(", ");
        match self.operator {
            Operator::In => format!("{} in ({values})", self.key),
            Operator::NotIn => format!("{} not in ({values})", self.key),
            Operator::Exists => format!("{} present", self.key),
            Operator::DoesNotExist => format!("{} absent", self.key),
        }
    }
}

/// The first unmet requirement of `exact` (key = value) and `expressions` over `get`.
fn unmet(
    exact: &BTreeMap<String, String>,
    expressions: &[Requirement],
    get: &dyn Fn(&str) -> Option<String>,
) -> Option<String> {
    for (k, v) in exact {
        if get(k).as_deref() != Some(v.as_str()) {
            return Some(format!("{k}={v}"));
        }
    }
    expressions
        .iter()
        .find(|r| !r.holds(get(&r.key).as_deref()))
        .map(Requirement::describe)
}

impl LabelSelector {
    /// Whether labels read through `label` match.
    pub fn matches(&self, label: &dyn Fn(&str) -> Option<String>) -> bool {
        unmet(&self.match_labels, &self.match_expressions, label).is_none()
    }

    /// One `labelSelector` query per requirement, each selecting the objects that fail it:
    /// together (their union) exactly the objects the selector does not select.
    pub fn negations(&self) -> Vec<String> {
        let exact = self.match_labels.iter().map(|(k, v)| format!("{k}!={v}"));
        let expressions = self.match_expressions.iter().map(|r| {
            let values = r.values.join(",");
            match r.operator {
                Operator::In => format!("{} notin ({values})", r.key),
                Operator::NotIn => format!("{} in ({values})", r.key),
                Operator::Exists => format!("!{}", r.key),
                Operator::DoesNotExist => r.key.clone(),
            }
        });
        exact.chain(expressions).collect()
    }

    /// The selector in the API server's `labelSelector` query syntax; `None` when empty.
    pub fn to_query(&self) -> Option<String> {
        let parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .chain(self.match_expressions.iter().map(Requirement::to_query))
            .collect();
        (!parts.is_empty()).then(|| parts.join(","))
    }
}

impl RemovalPolicy {
    /// Whether this is the default (`KeepChildren`), left out when a rule is printed.
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

impl ParentRef {
    /// Whether the rule selects its parents at all (a selector or annotation selector).
    pub fn is_selective(&self) -> bool {
        self.selector.is_some() || self.annotation_selector.is_some()
    }

    /// Why `parent` is not selected (the first unmet requirement); `None` when it is.
    pub fn unselected(&self, parent: &Json) -> Option<String> {
        let field = |map: &str, key: &str| {
            parent
                .pointer(&format!("/metadata/{map}"))
                .and_then(|m| m.get(key))
                .and_then(Json::as_str)
                .map(str::to_string)
        };
        self.unselected_by(&|k| field("labels", k), &|k| field("annotations", k))
    }

    /// [`ParentRef::unselected`] over accessors of the parent's labels and annotations.
    pub fn unselected_by(
        &self,
        label: &dyn Fn(&str) -> Option<String>,
        annotation: &dyn Fn(&str) -> Option<String>,
    ) -> Option<String> {
        if let Some(s) = &self.selector
            && let Some(why) = unmet(&s.match_labels, &s.match_expressions, label)
        {
            return Some(format!("label {why} required by spec.parent.selector"));
        }
        if let Some(s) = &self.annotation_selector
            && let Some(why) = unmet(&s.match_annotations, &s.match_expressions, annotation)
        {
            return Some(format!(
                "annotation {why} required by spec.parent.annotationSelector"
            ));
        }
        None
    }
}

/// Whether `key` is a qualified name as Kubernetes accepts for labels and annotations: an
/// optional DNS subdomain prefix and `/`, then a name of at most 63 characters.
fn key_problem(key: &str) -> Option<String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        let subdomain = !p.is_empty()
            && p.len() <= 253
            && p.split('.').all(|l| {
                !l.is_empty()
                    && l.chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                    && !l.starts_with('-')
                    && !l.ends_with('-')
            });
        if !subdomain {
            return Some(format!(
                "key {key:?}: the prefix before '/' must be a DNS subdomain"
            ));
        }
    }
    if name.is_empty() || !is_label_value(name) {
        return Some(format!(
            "key {key:?}: the name must be 1-63 characters of [A-Za-z0-9-_.], starting and ending alphanumeric"
        ));
    }
    None
}

/// A label value: at most 63 characters of `[A-Za-z0-9-_.]`, alphanumeric at both ends
/// (or empty).
fn is_label_value(v: &str) -> bool {
    v.len() <= 63
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && v.chars().next().is_none_or(|c| c.is_ascii_alphanumeric())
        && v.chars().last().is_none_or(|c| c.is_ascii_alphanumeric())
}

fn check_requirements(c: &mut Checker<'_>, base: &str, list: &[Requirement], labels: bool) {
    for (i, r) in list.iter().enumerate() {
        let at = format!("{base}.matchExpressions[{i}]");
        if let Some(p) = key_problem(&r.key) {
            c.error(&format!("{at}.key"), p);
        }
        match (r.operator, r.values.is_empty()) {
            (Operator::In | Operator::NotIn, true) => c.error(
                &at,
                format!("operator {:?} needs at least one value", r.operator),
            ),
            (Operator::Exists | Operator::DoesNotExist, false) => c.error(
                &format!("{at}.values"),
                format!("operator {:?} takes no values", r.operator),
            ),
            _ => {}
        }
        for (j, v) in r.values.iter().enumerate() {
            if labels && !is_label_value(v) {
                c.error(
                    &format!("{at}.values[{j}]"),
                    format!("{v:?} is not a valid label value"),
                );
            }
        }
    }
}

/// Checks the parent's selectors: valid keys and values, operators with the values they
/// need. Errors are placed at the offending entry (file:line).
pub(super) fn check(c: &mut Checker<'_>, parent: &ParentRef) {
    if let Some(s) = &parent.selector {
        let base = "spec.parent.selector";
        for (k, v) in &s.match_labels {
            let at = format!("{base}.matchLabels.{k}");
            if let Some(p) = key_problem(k) {
                c.error(&at, p);
            }
            if !is_label_value(v) {
                c.error(&at, format!("{v:?} is not a valid label value"));
            }
        }
        check_requirements(c, base, &s.match_expressions, true);
    }
    if let Some(s) = &parent.annotation_selector {
        let base = "spec.parent.annotationSelector";
        for k in s.match_annotations.keys() {
            if let Some(p) = key_problem(k) {
                c.error(&format!("{base}.matchAnnotations.{k}"), p);
            }
        }
        check_requirements(c, base, &s.match_expressions, false);
    }
}

#[cfg(test)]
#[path = "selector_tests.rs"]
mod tests;
