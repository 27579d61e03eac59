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
    /// The answer is not JSON.
    #[error("cannot parse {path}: {source}")]
    Parse {
        /// What was requested.
        path: String,
        /// The failure.
        #[source]
        source: serde_json::Error,
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

/// The JSON at `path` (the index, or a URL it lists), without its descriptions.
pub async fn get(client: &Client, path: &str) -> Result<Json, FetchError> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|source| FetchError::Request {
            path: path.to_string(),
            source,
        })?;
    let text = client
        .request_text(request)
        .await
        .map_err(|source| FetchError::Read {
            path: path.to_string(),
            source,
        })?;
    let slim: Slim = serde_json::from_str(&text).map_err(|source| FetchError::Parse {
        path: path.to_string(),
        source,
    })?;
    Ok(slim.0)
}

/// A JSON value read without the `description` texts of its schemas: they are most of a
/// document's bytes (core/v1 is about 1 MB of them) and nothing here reads them, so leaving
/// them out while parsing keeps the start-up peak of memory small.
struct Slim(Json);

impl<'de> serde::Deserialize<'de> for Slim {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(SlimVisitor).map(Slim)
    }
}

struct SlimVisitor;

impl<'de> serde::de::Visitor<'de> for SlimVisitor {
    type Value = Json;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
        Ok(Json::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Json::Null, Json::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::String(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<Json, E> {
        Ok(Json::String(v))
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(Slim(v)) = seq.next_element()? {
            items.push(v);
        }
        Ok(Json::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut out = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Slim(value) = map.next_value()?;
            // Only the text: a property named `description` (an object) stays.
            if key == "description" && value.is_string() {
                continue;
            }
            out.insert(key, value);
        }
        Ok(Json::Object(out))
    }
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
    fn documents_are_read_without_description_texts() {
        let text = r#"{"components": {"schemas": {"A": {"description": "long text",
            "type": "object", "properties": {"description": {"type": "string",
            "description": "a property named description"}, "n": {"type": "integer",
            "minimum": -1.5, "maximum": 18446744073709551615}},
            "x-kubernetes-list-map-keys": ["name"], "nullable": null}}}}"#;
        let Slim(slim) = serde_json::from_str(text).unwrap();
        assert_eq!(
            slim,
            json!({"components": {"schemas": {"A": {"type": "object", "properties": {
                "description": {"type": "string"},
                "n": {"type": "integer", "minimum": -1.5, "maximum": 18446744073709551615u64}},
                "x-kubernetes-list-map-keys": ["name"], "nullable": null}}}})
        );
    }

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
