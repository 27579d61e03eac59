//! The API server's OpenAPI v3 documents: the index at `/openapi/v3` (each group-version's
//! document under a URL with its hash) and the documents it lists. Used by the controller's
//! schema cache and by `ruleop check --cluster`.

use kube::Client;
use serde_json::Value as Json;

/// The index of OpenAPI v3 documents.
pub const INDEX: &str = "/openapi/v3";

/// Why a document could not be read.
#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    /// The API server could not be asked.
    #[error("cannot read {path}: {source}")]
    Read {
        /// What was requested.
        path: String,
        /// The failure.
        #[source]
        source: kube::Error,
    },
    /// The request could not be built.
    #[error("cannot request {path}: {source}")]
    Request {
        /// What was requested.
        path: String,
        /// The failure.
        #[source]
        source: http::Error,
    },
}

/// The JSON at `path` (the index, or a URL it lists).
pub async fn get(client: &Client, path: &str) -> Result<Json, FetchError> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|source| FetchError::Request {
            path: path.to_string(),
            source,
        })?;
    client
        .request(request)
        .await
        .map_err(|source| FetchError::Read {
            path: path.to_string(),
            source,
        })
}

/// Every document `index` lists: its group-version path (`api/v1`, `apis/apps/v1`, also
/// others such as `openid/...`) and the URL (with its hash) it is served under.
pub fn published(index: &Json) -> impl Iterator<Item = (&str, &str)> {
    let paths = index.get("paths").and_then(Json::as_object);
    paths.into_iter().flatten().filter_map(|(path, entry)| {
        let url = entry.get("serverRelativeURL").and_then(Json::as_str)?;
        Some((path.as_str(), url))
    })
}

/// The URL (with its hash) under which `index` publishes the document at `path`.
pub fn published_url<'a>(index: &'a Json, path: &str) -> Option<&'a str> {
    published(index)
        .find(|(p, _)| *p == path)
        .map(|(_, url)| url)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_index_lists_each_document_under_its_hashed_url() {
        let index = json!({"paths": {
            "api/v1": {"serverRelativeURL": "/openapi/v3/api/v1?hash=A"},
            "apis/apps/v1": {"serverRelativeURL": "/openapi/v3/apis/apps/v1?hash=B"},
            "broken": {}}});
        let all: Vec<_> = published(&index).collect();
        assert_eq!(
            all,
            [
                ("api/v1", "/openapi/v3/api/v1?hash=A"),
                ("apis/apps/v1", "/openapi/v3/apis/apps/v1?hash=B")
            ]
        );
        assert_eq!(
            published_url(&index, "apis/apps/v1"),
            Some("/openapi/v3/apis/apps/v1?hash=B")
        );
        assert_eq!(published_url(&index, "broken"), None);
        assert_eq!(published(&Json::Null).count(), 0);
    }
}
