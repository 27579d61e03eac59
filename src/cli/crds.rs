//! CustomResourceDefinitions for `check`: read from files and directories, or listed from the
//! cluster, into the schema model's [`CrdSet`].

use std::path::PathBuf;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use ruleop_lang::manifests::{ReadError, read_objects, yaml_files};
use ruleop_schema::crds::CrdSet;

/// Why CRDs could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CrdLoadError {
    /// A file or directory could not be read.
    #[error(transparent)]
    File(#[from] ReadError),
    /// The cluster's CRDs could not be listed.
    #[error("cannot list CustomResourceDefinitions: {0}")]
    Cluster(#[source] kube::Error),
    /// A listed CRD did not serialize back to JSON.
    #[error("cannot read a CustomResourceDefinition of the cluster: {0}")]
    Decode(#[source] serde_json::Error),
}

/// The CRDs in `paths`: files (multi-document YAML, `List`s) or directories (their
/// `*.yaml`/`*.yml` files, not recursive). Documents that are not CRDs are ignored.
pub fn load(paths: &[PathBuf]) -> Result<CrdSet, CrdLoadError> {
    let mut set = CrdSet::default();
    for path in paths {
        for file in yaml_files(path)? {
            for object in read_objects(&file)? {
                set.add(&object, &file.display().to_string());
            }
        }
    }
    Ok(set)
}

/// The cluster's CRDs (apiextensions.k8s.io/v1).
pub async fn from_cluster(client: kube::Client) -> Result<CrdSet, CrdLoadError> {
    let api = kube::Api::<CustomResourceDefinition>::all(client);
    let list = api
        .list(&kube::api::ListParams::default())
        .await
        .map_err(CrdLoadError::Cluster)?;
    let mut set = CrdSet::default();
    for crd in list.items {
        let value = serde_json::to_value(&crd).map_err(CrdLoadError::Decode)?;
        set.add(&value, "the cluster");
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value as Json, json};

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
    fn files_and_directories_are_read_multi_document() {
        let dir = tempfile::tempdir().unwrap();
        let doc = ruleop_lang::yaml::to_string(&crd(false));
        std::fs::write(
            dir.path().join("all.yaml"),
            format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: x}}\n---\n{doc}"),
        )
        .unwrap();
        std::fs::write(dir.path().join("notes.txt"), "{ not yaml").unwrap();
        let set = load(&[dir.path().to_path_buf()]).unwrap();
        let v = set.schema("toys.example.net", "v2", "Gadget").unwrap();
        assert!(!v.status_subresource);
        assert!(v.origin.ends_with("all.yaml"), "{}", v.origin);
        std::fs::write(dir.path().join("bad.yaml"), "a: [").unwrap();
        assert!(matches!(
            load(&[dir.path().to_path_buf()]),
            Err(CrdLoadError::File(ReadError::Parse { .. }))
        ));
    }
}
