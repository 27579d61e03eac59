//! CustomResourceDefinitions (read by the command line from files, directories or the cluster), indexed by group,
//! version and kind: each version's schema and whether it has the status subresource.

use std::collections::BTreeMap;

use serde_json::Value as Json;

/// The kind of a CustomResourceDefinition object.
pub const CRD_KIND: &str = "CustomResourceDefinition";
/// The origin of the CRD generated from a rule's own `spec.crd`.
pub const SPEC_CRD: &str = "spec.crd";
/// The API group of CustomResourceDefinitions.
pub const CRD_GROUP: &str = "apiextensions.k8s.io";

/// Where a CRD object lists its versions.
pub const VERSIONS: &str = "/spec/versions";

/// The group and kind a CRD object defines (`spec.group`, `spec.names.kind`), when it says.
pub fn defined_kind(crd: &Json) -> (Option<&str>, Option<&str>) {
    let text = |p: &str| crd.pointer(p).and_then(Json::as_str);
    (text("/spec/group"), text("/spec/names/kind"))
}

/// One served version of a CRD.
#[derive(Debug, Clone)]
pub struct CrdVersion {
    /// The CRD's name (`<plural>.<group>`).
    pub crd: String,
    /// The version's name.
    pub version: String,
    /// Where the CRD came from (a file, `the cluster`, `spec.crd`), for messages.
    pub origin: String,
    /// Its `openAPIV3Schema` (`{}` when it has none: nothing is pruned then).
    pub schema: Json,
    /// Whether it has `subresources.status`.
    pub status_subresource: bool,
}

impl CrdVersion {
    /// Version `version` of the CRD object `crd`, if it defines one.
    pub fn from_definition(crd: &Json, version: &str, origin: &str) -> Option<CrdVersion> {
        CrdVersion::all(crd, origin).find(|v| v.version == version)
    }

    /// Every version the CRD object `crd` defines (those with a name), in order.
    pub fn all<'a>(crd: &'a Json, origin: &'a str) -> impl Iterator<Item = CrdVersion> + 'a {
        let versions = crd.pointer(VERSIONS).and_then(Json::as_array);
        versions.into_iter().flatten().filter_map(move |v| {
            Some(CrdVersion {
                crd: crate::meta::name(crd).to_string(),
                version: v.get("name").and_then(Json::as_str)?.to_string(),
                origin: origin.to_string(),
                schema: v
                    .pointer("/schema/openAPIV3Schema")
                    .cloned()
                    .unwrap_or_else(|| Json::Object(Default::default())),
                status_subresource: v.pointer("/subresources/status").is_some(),
            })
        })
    }

    /// Whether the version has a schema at all (without one the API server prunes nothing
    /// and there is nothing to check against).
    pub fn has_schema(&self) -> bool {
        self.schema.as_object().is_none_or(|m| !m.is_empty())
    }

    /// `CRD <name> version <v> (<origin>)`, how messages name it.
    pub fn describe(&self) -> String {
        format!("CRD {} {} ({})", self.crd, self.version, self.origin)
    }
}

/// What is known of a kind's CRD in a [`CrdSet`].
#[derive(Debug, Clone)]
pub enum Lookup<'a> {
    /// The CRD and the version asked for.
    Found(&'a CrdVersion),
    /// A CRD defines the kind, but not this version; these are its versions.
    NoVersion {
        /// The CRD's name.
        crd: &'a str,
        /// Where it came from.
        origin: &'a str,
        /// The versions it defines.
        versions: Vec<&'a str>,
    },
    /// No CRD defines the kind.
    None,
}

/// CRDs by group and kind, then version.
#[derive(Debug, Clone, Default)]
pub struct CrdSet {
    kinds: BTreeMap<(String, String), BTreeMap<String, CrdVersion>>,
    /// The definitions as given, for what needs more than one version's schema (defaults of
    /// sample parents, schemas of CRD-kind children).
    definitions: BTreeMap<(String, String), Json>,
}

impl CrdSet {
    /// Adds `object` if it is a CRD; says whether it was. A later CRD of the same kind
    /// replaces an earlier one.
    pub fn add(&mut self, object: &Json, origin: &str) -> bool {
        if !is_crd(object) {
            return false;
        }
        let (group, kind) = defined_kind(object);
        let key = (
            group.unwrap_or_default().to_string(),
            kind.unwrap_or_default().to_string(),
        );
        let versions = CrdVersion::all(object, origin)
            .map(|v| (v.version.clone(), v))
            .collect();
        self.kinds.insert(key.clone(), versions);
        self.definitions.insert(key, object.clone());
        true
    }

    /// The CRDs among `objects`, all from `origin`.
    pub fn of<'a>(objects: impl IntoIterator<Item = &'a Json>, origin: &str) -> CrdSet {
        let mut set = CrdSet::default();
        for object in objects {
            set.add(object, origin);
        }
        set
    }

    /// Merges `other` in; its CRDs replace those of the same kind.
    pub fn extend(&mut self, other: CrdSet) {
        self.kinds.extend(other.kinds);
        self.definitions.extend(other.definitions);
    }

    /// The CRDs as given, one per kind.
    pub fn definitions(&self) -> impl Iterator<Item = &Json> {
        self.definitions.values()
    }

    /// Whether no CRD is known.
    pub fn is_empty(&self) -> bool {
        self.kinds.is_empty()
    }

    /// The schema of `kind` in `group`, version `version`.
    pub fn schema(&self, group: &str, version: &str, kind: &str) -> Option<&CrdVersion> {
        match self.lookup(group, version, kind) {
            Lookup::Found(v) => Some(v),
            _ => None,
        }
    }

    /// Like [`CrdSet::schema`], telling a missing version from a missing CRD.
    pub fn lookup(&self, group: &str, version: &str, kind: &str) -> Lookup<'_> {
        let Some(versions) = self.kinds.get(&(group.to_string(), kind.to_string())) else {
            return Lookup::None;
        };
        if let Some(v) = versions.get(version) {
            return Lookup::Found(v);
        }
        let any = versions.values().next();
        Lookup::NoVersion {
            crd: any.map(|v| v.crd.as_str()).unwrap_or_default(),
            origin: any.map(|v| v.origin.as_str()).unwrap_or_default(),
            versions: versions.keys().map(String::as_str).collect(),
        }
    }
}

/// How `crd` (installed, or given as a file) differs from `own`, the CRD a rule's `spec.crd`
/// generates (`ruleop crd`), at `crd`'s version: schema fields `own` has that `crd` lacks or
/// has otherwise, or a missing status subresource. Fields only `crd` has (the API server's
/// defaults) do not count.
pub fn differs_from_spec_crd(own: &Json, crd: &CrdVersion) -> Option<String> {
    let generated = CrdVersion::from_definition(own, &crd.version, SPEC_CRD)?;
    let mut fields: Vec<String> = crate::jsondiff::missing(&generated.schema, &crd.schema)
        .into_iter()
        .map(|c| format!("openAPIV3Schema.{}", c.path))
        .collect();
    if generated.status_subresource && !crd.status_subresource {
        fields.push("subresources.status".into());
    }
    if fields.is_empty() {
        return None;
    }
    let more = fields.len().saturating_sub(3);
    fields.truncate(3);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    Some(format!(
        "{} differs from the CRD spec.crd generates (`ruleop crd`) at {}{more}: the \
         controller meets that one; install the generated CRD",
        crd.describe(),
        fields.join(", ")
    ))
}

/// Whether `object` is an apiextensions CustomResourceDefinition.
pub fn is_crd(object: &Json) -> bool {
    crate::meta::kind(object) == CRD_KIND
        && crate::meta::api_version(object)
            .strip_prefix(CRD_GROUP)
            .is_some_and(|version| version.starts_with('/'))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn crd(status: bool) -> Json {
        let mut version = json!({"name": "v2", "served": true, "storage": true,
            "schema": {"openAPIV3Schema": {"type": "object",
                "properties": {"spec": {"type": "object"}}}}});
        if status {
            version["subresources"] = json!({"status": {}});
        }
        json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": "gadgets.toys.example.net"},
            "spec": {"group": "toys.example.net", "names": {"kind": "Gadget", "plural": "gadgets"},
                "scope": "Namespaced", "versions": [version]}})
    }

    #[test]
    fn crds_are_indexed_by_group_version_and_kind() {
        let mut set = CrdSet::default();
        assert!(set.add(&crd(true), "a.yaml"));
        assert!(!set.add(&json!({"apiVersion": "v1", "kind": "ConfigMap"}), "b.yaml"));
        let v = set.schema("toys.example.net", "v2", "Gadget").unwrap();
        assert!(v.status_subresource);
        assert_eq!(v.schema["properties"]["spec"]["type"], "object");
        assert_eq!(v.describe(), "CRD gadgets.toys.example.net v2 (a.yaml)");
        assert!(set.schema("toys.example.net", "v2", "Widget").is_none());
        assert!(matches!(
            set.lookup("toys.example.net", "v1", "Gadget"),
            Lookup::NoVersion { versions, .. } if versions == ["v2"]
        ));
    }
}
