//! Counting writes through the control plane's audit log (mutating requests, Metadata
//! level). ruleop sends `User-Agent: ruleop/<version>`, so its writes are told from the
//! test's own `kubectl` calls and the control plane's controllers.
//!
//! ```ignore
//! audit::assert_no_writes("converged", IDLE, |w| w.namespace == env.ns).await;
//! // or, around something other than a plain wait:
//! let mark = audit::Mark::now();
//! // ...
//! let writes = mark.operator_writes(&env.ns);
//! assert!(writes.is_empty(), "{}", audit::describe(&writes));
//! ```

use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::time::Duration;

use serde_json::Value as Json;

/// One audited request.
#[derive(Debug, Clone)]
pub struct Write {
    /// `create`, `update`, `patch`, `delete`, ...
    pub verb: String,
    /// Plural resource (`pods`, `deployments`, ...).
    pub resource: String,
    /// `status` for status writes, else empty.
    pub subresource: String,
    /// Namespace (empty when cluster-scoped).
    pub namespace: String,
    /// Object name (empty for a create whose name the server generates).
    pub name: String,
    /// The client's User-Agent.
    pub user_agent: String,
    /// HTTP status code of the answer.
    pub code: i64,
    /// When the API server received the request (RFC 3339, microseconds).
    pub received: String,
    /// The user the request was made as through impersonation (empty when none): a rule
    /// with a ServiceAccount writes as `system:serviceaccount:NS:NAME`.
    pub impersonated_user: String,
}

impl Write {
    /// Whether ruleop sent it.
    pub fn by_operator(&self) -> bool {
        self.user_agent.starts_with("ruleop/")
    }

    /// Whether a `ruleop run` process sent it: a replica names itself in its User-Agent
    /// (`ruleop/0.1.0 (host-1234)`); one-shot commands (`diff`, `check --cluster`) do not.
    pub fn by_replica(&self) -> bool {
        self.by_operator() && self.user_agent.ends_with(')')
    }

    /// Whether it was answered with success.
    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.code)
    }
}

impl std::fmt::Display for Write {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sub = if self.subresource.is_empty() {
            String::new()
        } else {
            format!("/{}", self.subresource)
        };
        write!(
            f,
            "{} {}{sub} {}/{} -> {} ({})",
            self.verb, self.resource, self.namespace, self.name, self.code, self.user_agent
        )?;
        if !self.impersonated_user.is_empty() {
            write!(f, " as {}", self.impersonated_user)?;
        }
        Ok(())
    }
}

/// One line per write, for assertion messages.
pub fn describe(writes: &[Write]) -> String {
    writes
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn log_path() -> &'static std::path::Path {
    super::audit_log().expect(
        "the test control plane has no audit log (set RULEOP_TEST_AUDIT_LOG with RULEOP_TEST_KUBECONFIG)",
    )
}

/// A position in the audit log: writes after it can be listed.
#[derive(Debug, Clone, Copy)]
pub struct Mark(u64);

impl Mark {
    /// The end of the log now. The API server writes audit events asynchronously: a short
    /// pause first lets requests that already finished reach the log.
    pub fn now() -> Mark {
        std::thread::sleep(Duration::from_millis(500));
        Mark(std::fs::metadata(log_path()).map(|m| m.len()).unwrap_or(0))
    }

    /// The log from its start.
    pub fn start() -> Mark {
        Mark(0)
    }

    /// Every write after the mark (waits briefly so recent requests are flushed). Fails the
    /// test when the log cannot be read: "no writes" must never mean "no log".
    pub fn writes(&self) -> Vec<Write> {
        std::thread::sleep(Duration::from_millis(500));
        let path = log_path();
        let mut file = std::fs::File::open(path)
            .unwrap_or_else(|e| panic!("audit log {}: {e}", path.display()));
        file.seek(SeekFrom::Start(self.0))
            .unwrap_or_else(|e| panic!("audit log {}: {e}", path.display()));
        BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|line| parse(&line))
            .collect()
    }

    /// Successful writes ruleop made after the mark to objects in `namespace` (`""`: to
    /// cluster-scoped objects).
    pub fn operator_writes(&self, namespace: &str) -> Vec<Write> {
        self.operator_writes_where(|w| w.namespace == namespace)
    }

    /// Successful writes ruleop made after the mark that `keep` selects. Events and leader
    /// Leases are not counted: they are not writes to the objects ruleop manages.
    pub fn operator_writes_where(&self, keep: impl Fn(&Write) -> bool) -> Vec<Write> {
        self.operator_requests(Events::Excluded, keep)
    }

    /// Like [`Mark::operator_writes_where`], Events included: an idle operator records none.
    pub fn operator_writes_and_events_where(&self, keep: impl Fn(&Write) -> bool) -> Vec<Write> {
        self.operator_requests(Events::Included, keep)
    }

    /// Asserts no one-shot ruleop command sent a mutating request after the mark, failed
    /// ones, Events and Leases included: for commands that must only read (`diff`,
    /// `check --cluster`). The operators of other tests on the same control plane
    /// (`ruleop run`, [`Write::by_replica`]) are not counted.
    pub fn assert_read_only(&self, what: &str) {
        let writes: Vec<Write> = self
            .writes()
            .into_iter()
            .filter(|w| w.by_operator() && !w.by_replica())
            .collect();
        assert!(writes.is_empty(), "{what} wrote: {}", describe(&writes));
    }

    fn operator_requests(&self, events: Events, keep: impl Fn(&Write) -> bool) -> Vec<Write> {
        self.writes()
            .into_iter()
            .filter(|w| {
                w.by_operator()
                    && w.succeeded()
                    && (events == Events::Included || w.resource != "events")
                    && w.resource != "leases"
                    && keep(w)
            })
            .collect()
    }
}

/// Whether the operator's Events count as writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Events {
    /// Events are not counted (a reconcile may report without changing anything).
    Excluded,
    /// Events are counted too.
    Included,
}

fn parse(line: &str) -> Option<Write> {
    let v: Json = serde_json::from_str(line).ok()?;
    let s = |p: &str| {
        v.pointer(p)
            .and_then(Json::as_str)
            .unwrap_or("")
            .to_string()
    };
    Some(Write {
        verb: s("/verb"),
        resource: s("/objectRef/resource"),
        subresource: s("/objectRef/subresource"),
        namespace: s("/objectRef/namespace"),
        name: s("/objectRef/name"),
        user_agent: s("/userAgent"),
        code: v
            .pointer("/responseStatus/code")
            .and_then(Json::as_i64)
            .unwrap_or(0),
        received: s("/requestReceivedTimestamp"),
        impersonated_user: s("/impersonatedUser/username"),
    })
}

/// Waits `window`, then asserts ruleop made none of the writes `keep` selects (Events and
/// leader Leases aside): a steady state is zero writes, not "eventually converged".
pub async fn assert_no_writes(what: &str, window: Duration, keep: impl Fn(&Write) -> bool) {
    assert_quiet(what, window, Events::Excluded, keep).await;
}

/// Like [`assert_no_writes`], Events included.
pub async fn assert_no_writes_or_events(
    what: &str,
    window: Duration,
    keep: impl Fn(&Write) -> bool,
) {
    assert_quiet(what, window, Events::Included, keep).await;
}

async fn assert_quiet(what: &str, window: Duration, events: Events, keep: impl Fn(&Write) -> bool) {
    let mark = Mark::now();
    tokio::time::sleep(window).await;
    let writes = mark.operator_requests(events, keep);
    assert!(
        writes.is_empty(),
        "{what}: the operator wrote while idle:\n{}",
        describe(&writes)
    );
}
