//! ruleop: a generic Kubernetes operator driven by YAML rule files.
//!
//! The reconcile path is observe → plan → act. [`plan`] is a pure function of a compiled
//! [`rule`], a parent and the observed objects; the command line's `render` and the controller
//! call the same planner.

pub mod apply;
pub mod cache;
pub mod check;
pub mod cli;
pub mod controller;
pub mod crd;
pub mod defaults;
pub mod fence;
pub mod filters;
pub mod handover;
pub mod health;
pub mod jsondiff;
pub mod kubeclient;
pub mod leader;
pub mod lint;
pub mod livediff;
pub mod logwriter;
pub mod manifests;
pub mod meta;
pub mod openapi;
pub mod plan;
pub mod quantity;
pub mod rbac;
pub mod reload;
pub mod repair;
pub mod rule;
pub mod run;
pub mod scale;
pub mod schema;
pub mod ssa;
pub mod status;
pub mod status_shape;
pub mod telemetry;
pub mod template;
pub mod testkit;
pub mod transport;
