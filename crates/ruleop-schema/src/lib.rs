//! ruleop's object and schema model: accessors for untyped Kubernetes objects, and one model of
//! OpenAPI/CRD schemas (parse, resolve `$ref`, validate, defaults, list types and quantities
//! for the up-to-date comparison, which status fields a parent may take).
//!
//! The bottom layer: it knows nothing of rules, plans or the API client (see ARCHITECTURE.md).

pub mod crds;
pub mod defaults;
pub mod jsondiff;
pub mod kinds;
pub mod meta;
pub mod openapi;
pub mod quantity;
pub mod schema;
pub mod status_shape;
pub mod walk;
