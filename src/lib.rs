//! ruleop: a generic Kubernetes operator driven by YAML rule files.
//!
//! The reconcile path is observe → plan → act. [`plan`] is a pure function of a compiled
//! [`rule`], a parent and the observed objects; the command line's `render` and the controller
//! call the same planner.

pub mod apply;
pub mod cache;
pub mod cli;
pub mod controller;
pub mod defaults;
pub mod filters;
pub mod handover;
pub mod kubeclient;
pub mod leader;
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
pub mod status;
pub mod telemetry;
pub mod template;
