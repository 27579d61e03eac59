//! The rule language: the rule file format, loading with located errors, compilation of every
//! template, expression and JSONPath, the template sandbox, and the static checks the
//! authoring commands run (`check`, `crd`).
//!
//! It sits on the schema model (`ruleop-schema`) and knows nothing of plans, the API client
//! or an async runtime (see ARCHITECTURE.md).

pub mod cel;
pub mod check;
pub mod crd;
pub mod load;
pub mod manifests;
pub mod reason;
pub mod revision;
pub mod rule;
pub mod ruleset;
pub mod staged;
pub mod template;
pub mod yaml;
