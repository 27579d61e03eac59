//! The API server's OpenAPI v3 documents: the index at `/openapi/v3` (each group-version's
//! document under a URL with its hash) and the documents it lists. Used by the controller's
//! schema cache and by `ruleop check --cluster`.

use kube::Client;
use ruleop_schema::openapi::Document;
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
    let text = text(client, path).await?;
    let slim: Slim = serde_json::from_str(&text).map_err(|source| FetchError::Parse {
        path: path.to_string(),
        source,
    })?;
    Ok(slim.0)
}

/// The document at `path` (a URL the index lists), compiled as it is read: one component's
/// JSON at a time, so reading core/v1 never holds its whole tree.
pub async fn document(client: &Client, path: &str) -> Result<Document, FetchError> {
    let text = text(client, path).await?;
    let mut document = Document::default();
    let mut reader = serde_json::Deserializer::from_str(&text);
    serde::de::DeserializeSeed::deserialize(
        Within(&["components", "schemas"], &mut document),
        &mut reader,
    )
    .and_then(|()| reader.end())
    .map_err(|source| FetchError::Parse {
        path: path.to_string(),
        source,
    })?;
    Ok(document)
}

async fn text(client: &Client, path: &str) -> Result<String, FetchError> {
    let request = http::Request::get(path)
        .body(Vec::new())
        .map_err(|source| FetchError::Request {
            path: path.to_string(),
            source,
        })?;
    client
        .request_text(request)
        .await
        .map_err(|source| FetchError::Read {
            path: path.to_string(),
            source,
        })
}

/// Reads the object at the key path `.0` (e.g. `components.schemas`) of a JSON document into
/// `.1`, one entry at a time; every other part of the document is skipped unread.
struct Within<'a>(&'a [&'a str], &'a mut Document);

impl<'de> serde::de::DeserializeSeed<'de> for Within<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Within<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an OpenAPI document")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Within(path, document) = self;
        while let Some(key) = map.next_key::<String>()? {
            match path.split_first() {
                Some((first, rest)) if *first == key => {
                    map.next_value_seed(Within(rest, document))?;
                }
                Some(_) => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
                // At the components: each one compiled, its JSON dropped.
                None => {
                    let Slim(schema) = map.next_value()?;
                    document.add(key, &schema);
                }
            }
        }
        Ok(())
    }
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
    fn a_document_read_one_component_at_a_time_is_the_document_parsed_whole() {
        let text = r#"{"openapi": "3.0.0", "info": {"title": "x"}, "paths": {"/a": {}},
            "components": {"securitySchemes": {}, "schemas": {
            "io.k8s.api.apps.v1.Deployment": {"type": "object",
                "description": "long text",
                "properties": {"spec": {"properties": {"ports": {"type": "array",
                    "items": {"type": "object"}, "x-kubernetes-list-type": "map",
                    "x-kubernetes-list-map-keys": ["port"]}}}},
                "x-kubernetes-group-version-kind": [
                    {"group": "apps", "version": "v1", "kind": "Deployment"}]}}}}"#;
        let mut streamed = Document::default();
        let mut reader = serde_json::Deserializer::from_str(text);
        serde::de::DeserializeSeed::deserialize(
            Within(&["components", "schemas"], &mut streamed),
            &mut reader,
        )
        .unwrap();
        let whole = Document::parse(&serde_json::from_str(text).unwrap());
        assert_eq!(streamed, whole);
        assert!(
            std::sync::Arc::new(streamed)
                .kind("apps", "v1", "Deployment")
                .is_some()
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
