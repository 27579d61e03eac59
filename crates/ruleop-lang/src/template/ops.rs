//! The value-building operators (`~`, `+`, `*`, slicing, `in`) as bounded filters: the
//! compiled bytecode calls these instead (see `machinery`). Each sizes what it is about to build
//! before building it; what it lets through, minijinja's own operator computes.

use std::fmt::{self, Write as _};
use std::sync::LazyLock;

use minijinja::value::{Value, ValueKind};
use minijinja::{Environment, Error, ErrorKind, Expression, UndefinedBehavior};

use super::budget::{
    ELEMENT_BYTES, charge, charge_built, check, count, display_len, exhausted, remaining, total,
};

pub(crate) use super::machinery::{ADD, CONCAT, CONTAINS, MUL, SLICE};

/// minijinja's own operators, reached through expressions of a plain environment.
struct Native {
    add: Expression<'static, 'static>,
    mul: Expression<'static, 'static>,
    slice: Expression<'static, 'static>,
    contains: Expression<'static, 'static>,
}

static NATIVE_ENV: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // As in the rule environment: the operators see undefined the same way.
    env.set_undefined_behavior(UndefinedBehavior::Chainable);
    env
});

static NATIVE: LazyLock<Result<Native, Error>> = LazyLock::new(|| {
    let env: &'static Environment<'static> = &NATIVE_ENV;
    Ok(Native {
        add: env.compile_expression("l + r")?,
        mul: env.compile_expression("l * r")?,
        slice: env.compile_expression("v[a:b:c]")?,
        contains: env.compile_expression("l in r")?,
    })
});

fn native(
    pick: fn(&Native) -> &Expression<'static, 'static>,
    args: &[(&str, &Value)],
) -> Result<Value, Error> {
    match NATIVE.as_ref() {
        Ok(native) => pick(native).eval(Value::from(
            args.iter()
                .map(|(k, v)| (*k, (*v).clone()))
                .collect::<std::collections::BTreeMap<&str, Value>>(),
        )),
        Err(e) => Err(Error::new(
            ErrorKind::InvalidOperation,
            format!("operator unavailable: {e}"),
        )),
    }
}

fn binary(
    pick: fn(&Native) -> &Expression<'static, 'static>,
    l: &Value,
    r: &Value,
) -> Result<Value, Error> {
    native(pick, &[("l", l), ("r", r)])
}

/// A string that refuses to grow past its cap.
struct Bounded {
    text: String,
    cap: usize,
}

impl fmt::Write for Bounded {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        if self.text.len().saturating_add(s.len()) > self.cap {
            return Err(fmt::Error);
        }
        self.text.push_str(s);
        Ok(())
    }
}

/// `left ~ right`: both as text, built no further than the budget allows.
pub(super) fn concat(left: Value, right: Value) -> Result<Value, Error> {
    if let (Some(a), Some(b)) = (left.as_str(), right.as_str()) {
        charge(a.len().checked_add(b.len()), "~")?;
        return Ok(Value::from([a, b].concat()));
    }
    let mut out = Bounded {
        text: String::new(),
        cap: remaining(),
    };
    write!(out, "{left}{right}").map_err(|_| exhausted("~"))?;
    charge(Some(out.text.len()), "~")?;
    Ok(Value::from(out.text))
}

pub(super) fn is_int(v: &Value) -> bool {
    v.is_integer() && v.as_i64().is_some()
}

fn is_sequence(v: &Value) -> bool {
    matches!(v.kind(), ValueKind::Seq | ValueKind::Iterable)
}

fn elements_cap() -> usize {
    remaining() / ELEMENT_BYTES
}

/// `l + r`: strings and sequences are sized first; numbers as minijinja adds them.
pub(super) fn add(l: Value, r: Value) -> Result<Value, Error> {
    if let (Some(a), Some(b)) = (
        l.as_i64().filter(|_| is_int(&l)),
        r.as_i64().filter(|_| is_int(&r)),
    ) && let Some(sum) = a.checked_add(b)
    {
        return Ok(Value::from(sum));
    }
    if l.kind() == ValueKind::String && r.kind() == ValueKind::String {
        let (a, b) = (
            l.as_str().unwrap_or_default(),
            r.as_str().unwrap_or_default(),
        );
        charge(a.len().checked_add(b.len()), "+")?;
        return Ok(Value::from([a, b].concat()));
    }
    if is_sequence(&l) && is_sequence(&r) {
        // minijinja joins sequences lazily, but copies them once the chain is deep: the
        // logical length must fit, and is counted without building it.
        let cap = elements_cap();
        let n = total([count(&l, cap), count(&r, cap)]).filter(|n| *n <= cap);
        check(n.map(|n| n * ELEMENT_BYTES), "+")?;
    }
    binary(|n| &n.add, &l, &r)
}

/// `l * r`: a repeated string or sequence is charged before it is built.
pub(super) fn mul(l: Value, r: Value) -> Result<Value, Error> {
    if let (Some(a), Some(b)) = (
        l.as_i64().filter(|_| is_int(&l)),
        r.as_i64().filter(|_| is_int(&r)),
    ) && let Some(product) = a.checked_mul(b)
    {
        return Ok(Value::from(product));
    }
    let repeated = |v: &Value, times: &Value| -> Option<Option<usize>> {
        let n = times.as_usize().filter(|_| is_int(times))?;
        match v.kind() {
            ValueKind::String => Some(v.as_str().and_then(|s| s.len().checked_mul(n))),
            ValueKind::Seq | ValueKind::Iterable => Some(
                count(v, elements_cap())
                    .and_then(|c| c.checked_mul(n))
                    .and_then(|c| c.checked_mul(ELEMENT_BYTES)),
            ),
            _ => None,
        }
    };
    if let Some(bytes) = repeated(&l, &r).or_else(|| repeated(&r, &l)) {
        charge(bytes, "*")?;
    }
    binary(|n| &n.mul, &l, &r)
}

/// `v[a:b:c]`: at most a copy of `v`, charged once built.
pub(super) fn slice(v: Value, a: Value, b: Value, c: Value) -> Result<Value, Error> {
    let out = native(|n| &n.slice, &[("v", &v), ("a", &a), ("b", &b), ("c", &c)])?;
    charge_built(&out, "slice")?;
    Ok(out)
}

/// `needle in container`. In a string, a needle that is not a string is compared as text:
/// text longer than the container cannot be in it, so it is never built.
pub(super) fn contains(needle: Value, container: Value) -> Result<Value, Error> {
    if let Some(haystack) = container.as_str()
        && container.kind() == ValueKind::String
        && needle.kind() != ValueKind::String
    {
        return Ok(Value::from(
            display_len(&needle, haystack.len()).is_some()
                && haystack.contains(&needle.to_string() as &str),
        ));
    }
    binary(|n| &n.contains, &needle, &container)
}
