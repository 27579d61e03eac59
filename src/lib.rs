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
pub mod revisions;
pub mod run;
pub mod telemetry;
