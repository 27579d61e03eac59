//! Fault injection: a network fault proxy, killed and stopped processes, signals and stuck
//! pipes. A control plane of its own, away from the load of `cluster`, because the idle-window
//! audit assertions here are timing-sensitive. Run them with `cargo test --test faults`.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests may panic on bad fixtures

#[path = "../support/mod.rs"]
mod support;

mod faults_network;
mod faults_process;
mod process;
