//! Failed API calls, classified: transient or permanent, a race, throttled (with the
//! server's `Retry-After`), and the reason shown on the parent.

use std::time::Duration;

/// The condition reason of a write the API server throttled (429).
pub const THROTTLED: &str = "Throttled";

/// A failed API call, classified.
#[derive(Debug, thiserror::Error)]
#[error("failed to {verb} {object}: {source}")]
pub struct ActError {
    /// What was attempted (`apply`, `delete`, ...).
    pub verb: &'static str,
    /// The object.
    pub object: String,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

/// The reason of a write RBAC (or an admission policy) refused.
pub const FORBIDDEN: &str = "Forbidden";

/// The reason of a write the API server refused as invalid.
pub const INVALID: &str = "Invalid";

impl ActError {
    /// Whether a retry may succeed without anything changing.
    pub fn is_transient(&self) -> bool {
        match &self.source {
            // Server-side apply reports a manifest that does not fit the schema as a 500.
            kube::Error::Api(s) if s.message.contains("failed to create typed patch object") => {
                false
            }
            kube::Error::Api(status) => {
                matches!(status.code, 404 | 409 | 429) || status.code >= 500
            }
            _ => true,
        }
    }

    /// A race the next attempt usually resolves (the object changed or went away meanwhile):
    /// shown on the parent only when it persists.
    pub fn is_race(&self) -> bool {
        matches!(&self.source, kube::Error::Api(s) if s.code == 404 || s.code == 409)
    }

    /// Whether the API server answered (as opposed to a timeout or a broken connection).
    pub fn is_answer(&self) -> bool {
        matches!(&self.source, kube::Error::Api(_))
    }

    /// How long the server asked to wait before a retry (`Retry-After`), if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match &self.source {
            kube::Error::Api(s) => s
                .details
                .as_ref()
                .map(|d| d.retry_after_seconds)
                .filter(|secs| *secs > 0)
                .map(|secs| Duration::from_secs(secs.into())),
            _ => None,
        }
    }

    /// The CamelCase reason shown in the condition.
    pub fn reason(&self) -> &'static str {
        match &self.source {
            kube::Error::Api(s) if s.code == 429 => THROTTLED,
            kube::Error::Api(s) if s.code == 403 => FORBIDDEN,
            kube::Error::Api(s) if s.code == 422 || s.code == 400 => INVALID,
            kube::Error::Api(s) if s.code == 409 => "Conflict",
            kube::Error::Api(s) if s.message.contains("failed to create typed patch object") => {
                INVALID
            }
            _ => "ApplyFailed",
        }
    }

    /// The API server's own message.
    pub fn message(&self) -> String {
        match &self.source {
            kube::Error::Api(s) => format!("{} {}: {}", self.verb, self.object, s.message),
            other => format!("{} {}: {other}", self.verb, self.object),
        }
    }
}

/// Whether the API server answered 404.
pub(super) fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// Whether the API server answered 409.
pub(super) fn is_conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn api_error(code: u16, retry_after: u32) -> ActError {
        let mut status = kube::core::Status::failure("no", "").with_code(code);
        if retry_after > 0 {
            let details = serde_json::from_value(json!({ "retryAfterSeconds": retry_after }));
            status = status.with_details(details.unwrap());
        }
        ActError {
            verb: "apply",
            object: "ConfigMap ns/x".into(),
            source: kube::Error::Api(status.boxed()),
        }
    }

    #[test]
    fn throttling_waits_as_asked_and_only_races_wait_to_be_shown() {
        let e = api_error(429, 5);
        assert!(e.is_transient() && !e.is_race() && e.is_answer());
        assert_eq!(
            (e.reason(), e.retry_after()),
            (THROTTLED, Some(Duration::from_secs(5)))
        );
        let e = api_error(503, 0);
        assert!(e.is_transient() && !e.is_race() && e.retry_after().is_none());
        assert!(api_error(409, 0).is_race() && api_error(404, 0).is_race());
        assert!(!api_error(403, 0).is_race() && !api_error(403, 0).is_transient());
    }
}
