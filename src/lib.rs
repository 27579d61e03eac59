//! ruleop: a generic Kubernetes operator driven by YAML rule files.
//!
//! This package is the runtime and the command line on top of three layer crates:
//! `ruleop-schema` (objects and the one schema model) ← `ruleop-lang` (the rule language) ←
//! `ruleop-plan` (the pure planner). The reconcile path is observe ([`cache`],
//! [`controller`]) → plan (`ruleop_plan::plan`) → act ([`apply`]). See ARCHITECTURE.md.

pub mod apply;
pub mod cache;
pub mod cli;
pub mod client;
pub mod controller;
pub mod reload;
pub mod run;
pub mod telemetry;

// The layers under their former paths, for the integration tests and benches written against
// the single crate.
pub use ruleop_lang::template::filters;
pub use ruleop_lang::{check, crd, manifests, template, yaml};
pub use ruleop_plan::{self as plan, scale, status, testkit};
pub use ruleop_schema::{defaults, meta, openapi, quantity, schema, status_shape};
/// The rule language's types and its loader, under one path.
pub mod rule {
    pub use ruleop_lang::load::*;
    pub use ruleop_lang::rule::*;
}
