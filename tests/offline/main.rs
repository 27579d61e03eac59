//! Integration tests that need no cluster: `ruleop check`, `plan`, `test` and the golden
//! files, through the library and the `ruleop` binary. Run them with `cargo test --test offline`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad fixtures

#[path = "../support/cli.rs"]
mod cli;

mod admission;
mod check_crd;
mod check_errors;
mod check_resource;
mod decorations;
mod golden;
mod plan_language;
mod plan_lifecycle;
mod plan_lookups;
mod plan_steps;
mod plan_uptodate;
mod selectors;
mod template_values;
mod testkit;
