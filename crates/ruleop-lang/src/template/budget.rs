//! The memory budget of one render, and size measures that stop at a cap instead of building
//! what they measure.
//!
//! minijinja has no allocation limit, and values can grow exponentially in a few instructions
//! (`s ~ s` doubles, so fuel cannot bound them). Every operation that builds new content
//! (see `guard`) asks this budget first: it charges the bytes it is about to build and fails
//! the render when the render's total would pass the budget. The budget lives in a thread-local
//! for the duration of one render, since renders are synchronous.

use std::cell::Cell;
use std::fmt::{self, Write as _};

use minijinja::value::{Value, ValueKind};
use minijinja::{Error, ErrorKind};

/// How many bytes of values a render may build, as a multiple of the rule's `maxOutputBytes`.
pub const BUDGET_PER_OUTPUT_BYTE: usize = 32;

/// What one element of a built list or map costs (the size of a minijinja value).
pub const ELEMENT_BYTES: usize = std::mem::size_of::<Value>();

thread_local! {
    /// Bytes the current render may still build; `None` outside a render.
    static LEFT: Cell<Option<usize>> = const { Cell::new(None) };
    /// The current render's whole budget, for messages.
    static LIMIT: Cell<usize> = const { Cell::new(0) };
}

/// The budget of the render running on this thread; restores the previous one when dropped.
pub struct Scope {
    left: Option<usize>,
    limit: usize,
}

impl Scope {
    /// Starts a render that may build `limit` bytes.
    pub fn enter(limit: usize) -> Scope {
        Scope {
            left: LEFT.replace(Some(limit)),
            limit: LIMIT.replace(limit),
        }
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        LEFT.set(self.left);
        LIMIT.set(self.limit);
    }
}

/// Bytes the current render may still build (unlimited outside a render).
pub fn remaining() -> usize {
    LEFT.get().unwrap_or(usize::MAX)
}

/// The error of a render over its budget.
pub fn exhausted(what: &str) -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!(
            "`{what}` would build more than the render's memory budget of {} bytes ({BUDGET_PER_OUTPUT_BYTE} × spec.limits.maxOutputBytes)",
            LIMIT.get()
        ),
    )
}

/// Fails unless `bytes` more can be built; does not charge them.
pub fn check(bytes: Option<usize>, what: &str) -> Result<(), Error> {
    match bytes {
        Some(b) if b <= remaining() => Ok(()),
        _ => Err(exhausted(what)),
    }
}

/// Charges `bytes` to the current render, failing when it has not that much left.
pub fn charge(bytes: Option<usize>, what: &str) -> Result<(), Error> {
    check(bytes, what)?;
    if let (Some(left), Some(b)) = (LEFT.get(), bytes) {
        LEFT.set(Some(left - b));
    }
    Ok(())
}

/// Charges what a value just built holds: a string's bytes, a list's or map's elements.
pub fn charge_built(value: &Value, what: &str) -> Result<(), Error> {
    let bytes = match value.kind() {
        ValueKind::String => value.as_str().map(str::len),
        ValueKind::Seq | ValueKind::Map => value.len().map(|n| n.saturating_mul(ELEMENT_BYTES)),
        _ => Some(0),
    };
    charge(bytes, what)
}

/// A sink that counts what is written and fails past `cap` bytes.
struct Counter {
    written: usize,
    cap: usize,
}

impl fmt::Write for Counter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.written = self.written.saturating_add(s.len());
        if self.written > self.cap {
            Err(fmt::Error)
        } else {
            Ok(())
        }
    }
}

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.written = self.written.saturating_add(buf.len());
        if self.written > self.cap {
            Err(std::io::Error::other("over the cap"))
        } else {
            Ok(buf.len())
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The length of `value`'s text (`{{ }}`, `~`, string conversion), or `None` past `cap`.
pub fn display_len(value: &Value, cap: usize) -> Option<usize> {
    if let Some(s) = value.as_str() {
        return (s.len() <= cap).then_some(s.len());
    }
    let mut c = Counter { written: 0, cap };
    write!(c, "{value}").ok().map(|()| c.written)
}

/// The length of `value`'s pretty debug text (`pprint`), or `None` past `cap`.
pub fn pretty_len(value: &Value, cap: usize) -> Option<usize> {
    let mut c = Counter { written: 0, cap };
    write!(c, "{value:#?}").ok().map(|()| c.written)
}

/// The length of `value` as JSON indented by `indent` spaces, or `None` past `cap`.
pub fn json_len(value: &Value, indent: usize, cap: usize) -> Option<usize> {
    use serde::Serialize;
    let spaces = vec![b' '; indent];
    let mut c = Counter { written: 0, cap };
    let formatter = serde_json::ser::PrettyFormatter::with_indent(&spaces);
    let mut ser = serde_json::Serializer::with_formatter(&mut c, formatter);
    value.serialize(&mut ser).ok().map(|()| c.written)
}

/// How many elements iterating `value` yields, or `None` past `cap` (a lazy sequence is
/// counted by walking it, up to the cap).
pub fn count(value: &Value, cap: usize) -> Option<usize> {
    if let Some(n) = value.len() {
        return (n <= cap).then_some(n);
    }
    let Ok(iter) = value.try_iter() else {
        return Some(0);
    };
    let mut n = 0usize;
    for _ in iter {
        n += 1;
        if n > cap {
            return None;
        }
    }
    Some(n)
}

/// Sums sizes, `None` when any is unknown (over its cap) or the sum overflows.
pub fn total(parts: impl IntoIterator<Item = Option<usize>>) -> Option<usize> {
    parts
        .into_iter()
        .try_fold(0usize, |acc, p| acc.checked_add(p?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn measures_stop_at_the_cap() {
        let list = Value::from(vec![Value::from("ab"); 1000]);
        let len = display_len(&list, usize::MAX).unwrap();
        assert_eq!(len, list.to_string().len());
        assert_eq!(display_len(&list, len - 1), None);
        assert_eq!(display_len(&Value::from("abc"), 2), None);
        assert!(json_len(&list, 2, usize::MAX).unwrap() > len);
        assert_eq!(json_len(&list, 2, 10), None);
        assert_eq!(pretty_len(&list, 10), None);
        assert_eq!(count(&list, 999), None);
        assert_eq!(count(&list, 1000), Some(1000));
        assert_eq!(total([Some(1), Some(2)]), Some(3));
        assert_eq!(total([Some(1), None]), None);
    }

    #[test]
    fn a_scope_charges_and_restores() {
        assert_eq!(remaining(), usize::MAX);
        {
            let _scope = Scope::enter(100);
            charge(Some(60), "x").unwrap();
            assert_eq!(remaining(), 40);
            {
                let _inner = Scope::enter(10);
                assert!(charge(Some(11), "y").is_err());
            }
            assert_eq!(remaining(), 40);
            let err = charge(Some(41), "~").unwrap_err();
            assert!(err.to_string().contains("budget of 100 bytes"), "{err}");
            assert!(check(Some(40), "~").is_ok());
        }
        assert_eq!(remaining(), usize::MAX);
    }
}
