//! The sandbox limits of one render, as a rule states them (`spec.limits`).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Sandbox limits.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Limits {
    /// Template instructions per render.
    #[serde(default = "default_fuel")]
    pub fuel: u64,
    /// Bytes of output per render.
    #[serde(default = "default_max_output")]
    pub max_output_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            fuel: default_fuel(),
            max_output_bytes: default_max_output(),
        }
    }
}

fn default_fuel() -> u64 {
    100_000
}

fn default_max_output() -> usize {
    256 * 1024
}
