//! Kubernetes objects read from YAML files: multi-document streams, `List` items, directories.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

/// Why objects could not be read from a file or directory.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// A file could not be read.
    #[error("{path}: cannot read: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not YAML.
    #[error("{path}: not YAML: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and why.
        source: crate::yaml::YamlError,
    },
    /// A directory could not be listed.
    #[error(transparent)]
    Directory(#[from] crate::load::RuleError),
    /// A document is YAML but not a mapping (a scalar or a sequence).
    #[error("{path}: expected Kubernetes objects, document {document} is not a mapping")]
    NotAnObject {
        /// The file.
        path: PathBuf,
        /// The document's position in the stream (1 is the first).
        document: usize,
    },
}

/// Every object in the YAML stream of `path`: its documents, and the `items` of `List`
/// documents. Empty documents are skipped.
pub fn read_objects(path: &Path) -> Result<Vec<Json>, ReadError> {
    let text = std::fs::read_to_string(path).map_err(|source| ReadError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let mut objects = Vec::new();
    let docs = crate::yaml::from_str_multiple(&text).map_err(|source| ReadError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    for (index, value) in docs.into_iter().enumerate() {
        match value {
            Json::Null => {}
            Json::Object(mut m) if is_list(&m) => {
                if let Some(Json::Array(items)) = m.remove("items") {
                    objects.extend(items);
                }
            }
            Json::Object(m) => objects.push(Json::Object(m)),
            _ => {
                return Err(ReadError::NotAnObject {
                    path: path.to_path_buf(),
                    document: index + 1,
                });
            }
        }
    }
    Ok(objects)
}

fn is_list(m: &serde_json::Map<String, Json>) -> bool {
    m.get("kind")
        .and_then(Json::as_str)
        .is_some_and(|k| k.ends_with("List"))
}

/// `path` itself, or a directory's YAML files sorted by name (not recursive, hidden files
/// skipped), as the rule loader lists them.
pub fn yaml_files(path: &Path) -> Result<Vec<PathBuf>, ReadError> {
    crate::load::rule_files(path).map_err(ReadError::Directory)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("objects.yaml");
        std::fs::write(&path, text).unwrap();
        (dir, path)
    }

    #[test]
    fn documents_and_list_items_are_objects_empty_documents_are_skipped() {
        let (_dir, path) = write(
            "kind: ConfigMap\nmetadata: {name: a}\n---\n# nothing\n---\n\
             kind: List\nitems: [{kind: Secret, metadata: {name: b}}, {kind: Pod}]\n",
        );
        let kinds: Vec<String> = read_objects(&path)
            .unwrap()
            .iter()
            .map(|o| ruleop_schema::meta::kind(o).to_string())
            .collect();
        assert_eq!(kinds, ["ConfigMap", "Secret", "Pod"]);
    }

    #[test]
    fn a_scalar_document_or_bad_yaml_is_a_located_error() {
        let (_dir, path) = write("kind: ConfigMap\n---\njust text\n");
        let err = read_objects(&path).unwrap_err();
        assert!(
            matches!(err, ReadError::NotAnObject { document: 2, .. }),
            "{err}"
        );
        let (_dir, path) = write("a: [");
        let err = read_objects(&path).unwrap_err().to_string();
        assert!(err.contains("objects.yaml: not YAML: "), "{err}");
        let missing = Path::new("/nonexistent/objects.yaml");
        assert!(matches!(read_objects(missing), Err(ReadError::Read { .. })));
    }
}
