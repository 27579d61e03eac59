//! Reads the API server's OpenAPI v3 documents (one per group-version, kept until the hash
//! the server publishes for it changes) and picks out the schemas of a rule's child kinds;
//! kinds not published yet are looked for again a few times, and a rule's schemas (and its
//! parent's status shape) are read again when their document's hash changes.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use kube::Client;
use kube::api::ApiResource;
use serde_json::Value as Json;

use ruleop_lang::rule::CompiledRule;
use ruleop_schema::openapi::{Document, Schemas};

use super::openapi_fetch::{self, FetchError, INDEX, published_url};

/// How many times (one per discovery tick) a child kind's schema is looked for again before
/// its children are compared without it.
const RETRIES: u32 = 12;

/// Why a kind's schema is not known.
#[derive(Debug, thiserror::Error)]
pub enum SchemaError {
    /// A document (or the index) could not be read.
    #[error(transparent)]
    Fetch(#[from] FetchError),
    /// The index lists no document for the group-version.
    #[error("the API server publishes no OpenAPI v3 document for {0}")]
    NoDocument(String),
    /// The document does not describe the kind (yet: a new CRD's schema is published a
    /// moment after the CRD is served).
    #[error("the OpenAPI v3 document of {0} does not describe {1}")]
    NoKind(String, String),
}

/// A rule's child kinds' schemas, and the kinds still without one.
pub struct ChildSchemas(Mutex<ChildState>);

struct ChildState {
    known: Arc<Schemas>,
    /// Every kind whose schema the rule uses (the parent's too): read again when the
    /// document of its group-version changes.
    kinds: Vec<ApiResource>,
    missing: Vec<ApiResource>,
    attempts: u32,
    /// The parent kind and the rule's status fields.
    parent: Option<ParentStatus>,
    /// Whether the parent's schema was read since the shape of its status was decided.
    undecided: bool,
}

/// What decides the shape of a rule's status on its parent: the parent kind (its schema is
/// fetched with the child kinds') and the rule's status fields.
pub struct ParentStatus {
    resource: ApiResource,
    builtin: bool,
    fields: Vec<String>,
}

impl ParentStatus {
    /// `rule`'s status on its parent kind `resource`.
    pub fn of(rule: &CompiledRule, resource: ApiResource) -> Self {
        Self {
            builtin: ruleop_schema::status_shape::is_builtin_group(&rule.spec.parent.api_version),
            fields: rule.status_fields().map(str::to_string).collect(),
            resource,
        }
    }
}

impl ChildState {
    /// Decides the parent's status shape once its schema is known (again after it is read
    /// again: a CRD that gains `status.conditions` gets them written).
    fn decide_status(&mut self) {
        let Some(parent) = self.parent.as_ref().filter(|_| self.undecided) else {
            return;
        };
        let Some(schema) = self
            .known
            .get(&parent.resource.api_version, &parent.resource.kind)
        else {
            return;
        };
        let shape = ruleop_schema::status_shape::StatusShape::decide(
            &schema.root(),
            parent.builtin,
            parent.fields.iter().map(String::as_str),
        );
        let mut known = (*self.known).clone();
        tracing::debug!(kind = %parent.resource.kind, ?shape, "status shape decided");
        known.set_status_shape(shape);
        self.known = Arc::new(known);
        self.undecided = false;
    }

    /// Takes in the schemas `found` (read now) and the kinds `still` missing. Whether what
    /// the planner compares with changed (a schema new or different, or the status shape).
    fn take(&mut self, found: Schemas, still: Vec<ApiResource>) -> bool {
        if let Some(p) = &self.parent
            && found.contains(&p.resource.group, &p.resource.kind)
        {
            self.undecided = true;
        }
        let same = self.known.holds(&found);
        let shape = self.known.status_shape().cloned();
        let mut known = (*self.known).clone();
        known.extend(found);
        self.known = Arc::new(known);
        for kind in still {
            if !self.missing.contains(&kind) {
                self.missing.push(kind);
            }
        }
        self.decide_status();
        !same || self.known.status_shape() != shape.as_ref()
    }
}

impl ChildSchemas {
    fn lock(&self) -> std::sync::MutexGuard<'_, ChildState> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// No schema known, none missing (offline tests).
    pub fn none() -> Self {
        Self(Mutex::new(ChildState {
            known: Arc::default(),
            kinds: Vec::new(),
            missing: Vec::new(),
            attempts: 0,
            parent: None,
            undecided: false,
        }))
    }

    /// The schemas known now.
    pub fn current(&self) -> Arc<Schemas> {
        self.lock().known.clone()
    }
}

/// The group-versions whose published document changed since it was read, and the index
/// that says so.
pub struct Changes {
    index: Json,
    paths: BTreeSet<String>,
}

impl Changes {
    /// Whether no document changed.
    pub fn is_empty(&self) -> bool {
        self.paths.is_empty()
    }
}

/// The path of `kind`'s group-version in the index (`api/v1`, `apis/apps/v1`).
fn group_version_path(kind: &ApiResource) -> String {
    if kind.group.is_empty() {
        format!("api/{}", kind.version)
    } else {
        format!("apis/{}/{}", kind.group, kind.version)
    }
}

/// Documents read so far, by group-version path (`api/v1`, `apis/apps/v1`).
pub struct SchemaCache {
    client: Client,
    docs: Mutex<HashMap<String, (String, Arc<Document>)>>,
}

impl SchemaCache {
    /// A cache reading through `client`.
    pub fn new(client: Client) -> Self {
        Self {
            client,
            docs: Mutex::default(),
        }
    }

    async fn get(&self, path: &str) -> Result<Json, SchemaError> {
        Ok(openapi_fetch::get(&self.client, path).await?)
    }

    /// The schemas of a rule's child kinds, and (when `parent` is given) the shape of its
    /// status on the parent kind (the status is then written only as that schema allows).
    pub async fn for_children(
        &self,
        rule: &str,
        mut kinds: Vec<ApiResource>,
        parent: Option<ParentStatus>,
    ) -> ChildSchemas {
        if let Some(p) = &parent
            && !kinds.contains(&p.resource)
        {
            kinds.push(p.resource.clone());
        }
        let (known, missing) = self.fetch(rule, &kinds).await;
        let mut state = ChildState {
            known: Arc::new(known),
            kinds,
            missing,
            attempts: 0,
            undecided: parent.is_some(),
            parent,
        };
        state.decide_status();
        ChildSchemas(Mutex::new(state))
    }

    /// Looks again for the schemas still missing (a CRD's schema is published a moment
    /// after the CRD is served), up to [`RETRIES`] times.
    pub async fn retry(&self, rule: &str, schemas: &ChildSchemas) {
        let missing = {
            let mut s = schemas.lock();
            if s.missing.is_empty() || s.attempts >= RETRIES {
                return;
            }
            s.attempts += 1;
            s.missing.clone()
        };
        let (found, still) = self.fetch(rule, &missing).await;
        let mut s = schemas.lock();
        s.missing.clear();
        s.take(found, still);
    }

    /// Which documents read so far the index now publishes under another hash (or no more):
    /// they are dropped, to be read again by [`SchemaCache::refresh`]. One read of the
    /// index; none while no document was read (no rule active).
    pub async fn changed(&self) -> Result<Changes, SchemaError> {
        if self.lock().is_empty() {
            return Ok(Changes {
                index: Json::Null,
                paths: BTreeSet::new(),
            });
        }
        let index = self.get(INDEX).await?;
        let mut paths = BTreeSet::new();
        self.lock().retain(|path, (url, _)| {
            let same = published_url(&index, path) == Some(url.as_str());
            if !same {
                paths.insert(path.clone());
            }
            same
        });
        Ok(Changes { index, paths })
    }

    /// Reads again the schemas of `rule`'s kinds whose document `changes` lists, and decides
    /// its parent's status shape again if the parent's was among them. Whether any schema
    /// or the shape differs now.
    pub async fn refresh(&self, rule: &str, schemas: &ChildSchemas, changes: &Changes) -> bool {
        let kinds: Vec<ApiResource> = schemas
            .lock()
            .kinds
            .iter()
            .filter(|k| changes.paths.contains(&group_version_path(k)))
            .cloned()
            .collect();
        if kinds.is_empty() {
            return false;
        }
        let (found, still) = self.fetch_in(rule, &changes.index, &kinds).await;
        let mut s = schemas.lock();
        // A kind the changed document no longer describes is looked for again a few times.
        s.attempts = 0;
        s.take(found, still)
    }

    /// The schemas of `kinds` that are published, and the kinds without one (logged).
    async fn fetch(&self, rule: &str, kinds: &[ApiResource]) -> (Schemas, Vec<ApiResource>) {
        if kinds.is_empty() {
            return (Schemas::default(), Vec::new());
        }
        match self.get(INDEX).await {
            Ok(index) => self.fetch_in(rule, &index, kinds).await,
            Err(e) => {
                let all = kinds.iter().map(|k| k.kind.clone()).collect::<Vec<_>>();
                tracing::info!(rule, kind = all.join(", "), error = %e, "no schema for a child kind yet; its lists are compared by the fallback");
                (Schemas::default(), kinds.to_vec())
            }
        }
    }

    /// [`SchemaCache::fetch`] with the index read.
    async fn fetch_in(
        &self,
        rule: &str,
        index: &Json,
        kinds: &[ApiResource],
    ) -> (Schemas, Vec<ApiResource>) {
        let (known, why) = self.schemas(index, kinds).await;
        for (kind, e) in &why {
            tracing::info!(rule, kind, error = %e, "no schema for a child kind yet; its lists are compared by the fallback");
        }
        let missing = kinds
            .iter()
            .filter(|k| !known.contains(&k.group, &k.kind))
            .cloned()
            .collect();
        (known, missing)
    }

    /// The schemas of `kinds` that the API server publishes, and why each other one is not
    /// known (those are compared by the planner's fallback).
    async fn schemas(
        &self,
        index: &Json,
        kinds: &[ApiResource],
    ) -> (Schemas, Vec<(String, SchemaError)>) {
        let mut schemas = Schemas::default();
        let mut missing = Vec::new();
        for kind in kinds {
            if schemas.contains(&kind.group, &kind.kind) {
                continue;
            }
            match self.document(index, kind).await {
                Ok(doc) => match doc.kind(&kind.group, &kind.version, &kind.kind) {
                    Some(schema) => schemas.insert(&kind.group, &kind.kind, schema),
                    None => missing.push((
                        kind.kind.clone(),
                        SchemaError::NoKind(kind.api_version.clone(), kind.kind.clone()),
                    )),
                },
                Err(e) => missing.push((kind.kind.clone(), e)),
            }
        }
        (schemas, missing)
    }

    /// The document of `kind`'s group-version, read again only when its hash changed.
    async fn document(
        &self,
        index: &Json,
        kind: &ApiResource,
    ) -> Result<Arc<Document>, SchemaError> {
        let path = group_version_path(kind);
        let url = published_url(index, &path)
            .ok_or_else(|| SchemaError::NoDocument(kind.api_version.clone()))?
            .to_string();
        if let Some((cached_url, doc)) = self.lock().get(&path)
            && *cached_url == url
        {
            return Ok(doc.clone());
        }
        let doc = Arc::new(openapi_fetch::document(&self.client, &url).await?);
        self.lock().insert(path, (url, doc.clone()));
        Ok(doc)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Arc<Document>)>> {
        self.docs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use serde_json::json;

    /// The served document of `x.dev/v1` Widget with `status` as given.
    fn widget(status: Json) -> Schemas {
        let doc = Arc::new(Document::parse(&json!({"components": {"schemas": {
            "dev.x.v1.Widget": {"type": "object",
                "x-kubernetes-group-version-kind": [{"group": "x.dev", "version": "v1", "kind": "Widget"}],
                "properties": {"status": status}},
        }}})));
        let mut schemas = Schemas::default();
        schemas.insert(
            "x.dev",
            "Widget",
            doc.kind("x.dev", "v1", "Widget").unwrap(),
        );
        schemas
    }

    #[test]
    fn a_changed_parent_schema_decides_the_status_shape_again() {
        let resource = ApiResource {
            group: "x.dev".into(),
            version: "v1".into(),
            api_version: "x.dev/v1".into(),
            kind: "Widget".into(),
            plural: "widgets".into(),
        };
        let mut state = ChildState {
            known: Arc::default(),
            kinds: vec![resource.clone()],
            missing: Vec::new(),
            attempts: 0,
            parent: Some(ParentStatus {
                resource,
                builtin: false,
                fields: vec!["replicas".into()],
            }),
            undecided: true,
        };
        let closed = json!({"type": "object", "properties": {"replicas": {"type": "integer"}}});
        assert!(state.take(widget(closed.clone()), Vec::new()));
        let shape = state.known.status_shape().unwrap().clone();
        assert!(shape.allows_field("replicas") && !shape.allows_conditions());
        // The same content read again (another hash, same schema): nothing to reconcile.
        assert!(!state.take(widget(closed), Vec::new()));
        let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
        assert!(state.take(widget(open), Vec::new()));
        assert!(state.known.status_shape().unwrap().allows_conditions());
    }
}
