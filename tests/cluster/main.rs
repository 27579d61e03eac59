//! End-to-end tests against one local control plane shared by every test of this binary
//! (`make controlplane` builds it; see `support`). Each test works in its own namespace.
//! Run them with `cargo test --test cluster`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad fixtures

#[path = "../support/mod.rs"]
mod support;

mod admission;
mod caches;
mod controlplane;
mod decorations;
mod deploy;
mod diff;
mod errors;
mod examples_a;
mod examples_b;
mod identity;
mod language;
mod lifecycle;
mod lookups;
mod operators;
mod ownership;
mod rbac;
mod reload;
mod revisions;
mod rollout;
mod selectors;
mod ship;
mod uptodate;
