//! The reasons of the conditions and Events ruleop writes (the planner's and the actor's
//! vocabulary; the language names them in its messages).

/// Validation failed (default).
pub const VALIDATION_FAILED: &str = "ValidationFailed";
/// A template, expression or projection failed.
pub const RENDER_FAILED: &str = "RenderFailed";
/// A child's name is taken by an object this parent does not own.
pub const CONFLICT: &str = "Conflict";
/// Children are being created or scaled.
pub const PROGRESSING: &str = "Progressing";
/// Everything is in place.
pub const READY: &str = "Ready";
/// Cleanup is running.
pub const DELETING: &str = "Deleting";
/// An object a required lookup names does not exist.
pub const LOOKUP_MISSING: &str = "LookupMissing";
/// Two renderings (children, copies or replicas) name one object.
pub const DUPLICATE_NAME: &str = "DuplicateName";
/// The API server refused ruleop's status as invalid (a CRD that does not match the rule).
pub const STATUS_REFUSED: &str = "StatusRefused";
