//! Bounded versions of the builtin filters and tests that build strings or lists, installed
//! with the operator guards of `ops` in place of minijinja's own.
//!
//! Each guard sizes what it is about to build, with measures that stop at the render's
//! remaining budget, before building it, then charges what it built. Where a guard lets an
//! operation through, minijinja's own implementation does the work, so results are unchanged.

use minijinja::value::{Rest, Value, ValueKind, ValueOrKwargs};
use minijinja::{Environment, Error, State};

use super::budget::{
    ELEMENT_BYTES, charge, charge_built, check, count, display_len, json_len, pretty_len,
    remaining, total,
};
use super::ops::{self, ADD, CONCAT, CONTAINS, MUL, SLICE, is_int};

/// An upper bound of what a builtin builds from `args`, or `None` past `cap`.
type Bound = fn(&[Value], usize) -> Option<usize>;

fn arg(args: &[Value], index: usize, keyword: &str) -> Option<Value> {
    match args.get(index) {
        Some(v) if !v.is_kwargs() => Some(v.clone()),
        _ => args
            .last()
            .filter(|v| v.is_kwargs())
            .and_then(|k| k.get_attr(keyword).ok())
            .filter(|v| !v.is_undefined()),
    }
}

fn text(args: &[Value], index: usize, cap: usize) -> Option<usize> {
    match args.get(index) {
        Some(v) if !v.is_kwargs() => display_len(v, cap),
        _ => Some(0),
    }
}

fn scaled(args: &[Value], cap: usize, factor: usize) -> Option<usize> {
    text(args, 0, cap / factor).map(|n| n * factor)
}

fn bound_case(args: &[Value], cap: usize) -> Option<usize> {
    // Case mapping turns one character into at most three.
    scaled(args, cap, 4)
}

fn bound_escape(args: &[Value], cap: usize) -> Option<usize> {
    // `&` becomes `&amp;`, `"` becomes `&quot;`.
    scaled(args, cap, 6)
}

fn bound_text(args: &[Value], cap: usize) -> Option<usize> {
    total((0..args.len()).map(|i| text(args, i, cap)))
}

fn bound_pprint(args: &[Value], cap: usize) -> Option<usize> {
    pretty_len(args.first()?, cap)
}

fn bound_tojson(args: &[Value], cap: usize) -> Option<usize> {
    let indent = match arg(args, 1, "indent") {
        Some(v) if v.kind() == ValueKind::Bool => usize::from(v.is_true()) * 2,
        Some(v) => v.as_usize().unwrap_or(0),
        None => 0,
    };
    // `<`, `>`, `&` and `'` are written as six-byte escapes.
    json_len(args.first()?, indent, cap / 6).map(|n| n * 6 + 2)
}

fn bound_replace(args: &[Value], cap: usize) -> Option<usize> {
    let len = text(args, 0, cap)?;
    let from = text(args, 1, cap)?;
    let to = text(args, 2, cap)?;
    // An empty pattern matches between every two characters.
    let mut times = len.checked_div(from).unwrap_or(len) + 1;
    if let Some(n) = arg(args, 3, "count").and_then(|c| c.as_usize()) {
        times = times.min(n);
    }
    total([Some(len), times.checked_mul(to)])
}

fn bound_indent(args: &[Value], cap: usize) -> Option<usize> {
    let len = text(args, 0, cap)?;
    let width = match arg(args, 1, "width") {
        Some(w) => w.as_usize()?,
        None => 4,
    };
    // Every line, at most one per byte and one more, gets `width` spaces.
    (len + 1).checked_mul(width + 1)
}

fn bound_join(args: &[Value], cap: usize) -> Option<usize> {
    let joiner = text(args, 1, cap)?;
    let items = count(args.first()?, cap)?;
    // A list's text holds each item's text, so it bounds the items joined.
    total([text(args, 0, cap), items.checked_mul(joiner)])
}

fn bound_format(args: &[Value], cap: usize) -> Option<usize> {
    let format = text(args, 0, cap)?;
    let fmt = args.first()?.as_str().unwrap_or_default();
    // Widths and precisions written in the format string pad up to their value.
    let widths = fmt
        .split(|c: char| !c.is_ascii_digit())
        .filter(|d| !d.is_empty())
        .map(|d| d.parse::<usize>().ok());
    // `%*s` takes its width from an argument.
    let starred = fmt.contains('*');
    let values = args.iter().skip(1).map(|v| {
        let padding = if starred && is_int(v) {
            v.as_i64()
                .map(i64::unsigned_abs)
                .and_then(|n| usize::try_from(n).ok())
        } else {
            Some(0)
        };
        // `%r` quotes and escapes: at most twice the text, plus quotes.
        total([
            display_len(v, cap).and_then(|n| n.checked_mul(2)),
            Some(2),
            padding,
        ])
    });
    total(std::iter::once(Some(format)).chain(widths).chain(values))
}

/// A builtin that builds text, run once its bound fits the budget.
fn text_filter(env: &mut Environment<'static>, name: &'static str, native: Value, bound: Bound) {
    env.add_filter(name, move |state: &mut State, args: Rest<ValueOrKwargs>| {
        let args = args.into_values();
        check(bound(&args, remaining()), name)?;
        let out = native.call(state, &args)?;
        charge_built(&out, name)?;
        Ok::<Value, Error>(out)
    });
}

/// A builtin that builds a list (or a copy of a string), run once its elements fit.
fn list_filter(env: &mut Environment<'static>, name: &'static str, native: Value) {
    env.add_filter(name, move |state: &mut State, args: Rest<ValueOrKwargs>| {
        let args = args.into_values();
        let cap = remaining();
        let input = args.first().cloned().unwrap_or_default();
        let mut elements = if input.kind() == ValueKind::String {
            display_len(&input, cap)
        } else {
            count(&input, cap / ELEMENT_BYTES)
        };
        // `batch` and `slice` create (or pad up to) as many lists as they are asked for.
        if matches!(name, "batch" | "slice") {
            elements = total([elements, arg(&args, 1, "count").and_then(|c| c.as_usize())]);
        }
        let pieces = if matches!(name, "split" | "lines") {
            pieces(name, &args)
        } else {
            Some(0)
        };
        let strings = input.as_str().map_or(0, str::len);
        check(
            total([
                elements.and_then(|n| n.checked_mul(ELEMENT_BYTES)),
                pieces.and_then(|n| n.checked_mul(ELEMENT_BYTES)),
                Some(strings),
                // Names of attributes, tests and filters are read as text.
                total((1..args.len()).map(|i| text(&args, i, cap))),
            ]),
            name,
        )?;
        let out = native.call(state, &args)?;
        charge_built(&out, name)?;
        if matches!(name, "split" | "lines") {
            // The pieces are new strings too.
            charge(Some(strings), name)?;
        }
        Ok::<Value, Error>(out)
    });
}

/// How many strings `split` or `lines` makes, counted without making them.
fn pieces(name: &str, args: &[Value]) -> Option<usize> {
    let s = args.first()?.as_str()?;
    if name == "lines" {
        return Some(s.lines().count());
    }
    let n = match arg(args, 1, "split").filter(|v| !v.is_none()) {
        Some(sep) => s.split(sep.as_str()?).count(),
        None => s.split_whitespace().count(),
    };
    let max = arg(args, 2, "maxsplits")
        .and_then(|m| m.as_usize())
        .map_or(usize::MAX, |m| m.saturating_add(1));
    Some(n.min(max))
}

/// A builtin test that reads its arguments as text, run once that text fits.
fn text_test(env: &mut Environment<'static>, name: &'static str, native: Value) {
    env.add_test(name, move |state: &mut State, args: Rest<ValueOrKwargs>| {
        let args = args.into_values();
        check(bound_text(&args, remaining()), name)?;
        Ok::<bool, Error>(native.call(state, &args)?.is_true())
    });
}

/// Installs the guards in `env`: the operator filters, and bounded versions of the builtins
/// that build strings or lists. `debug()` (a dump of the whole context) is removed.
pub fn install(env: &mut Environment<'static>) {
    use minijinja::{filters as f, tests as t};
    env.add_filter(CONCAT, ops::concat);
    env.add_filter(ADD, ops::add);
    env.add_filter(MUL, ops::mul);
    env.add_filter(SLICE, ops::slice);
    env.add_filter(CONTAINS, ops::contains);
    // As minijinja's `in` test: a container that cannot hold anything holds nothing.
    env.add_test("in", |needle: Value, container: Value| {
        ops::contains(needle, container).is_ok_and(|v| v.is_true())
    });

    let texts: [(&'static str, Value, Bound); 13] = [
        (
            "escape",
            Value::from_function(super::escape_html),
            bound_escape,
        ),
        ("e", Value::from_function(super::escape_html), bound_escape),
        ("lower", Value::from_function(f::lower), bound_case),
        ("upper", Value::from_function(f::upper), bound_case),
        ("title", Value::from_function(f::title), bound_case),
        (
            "capitalize",
            Value::from_function(f::capitalize),
            bound_case,
        ),
        ("trim", Value::from_function(f::trim), bound_text),
        ("string", Value::from_function(f::string), bound_text),
        ("replace", Value::from_function(f::replace), bound_replace),
        ("indent", Value::from_function(f::indent), bound_indent),
        ("join", Value::from_function(f::join), bound_join),
        ("format", Value::from_function(f::format), bound_format),
        ("pprint", Value::from_function(f::pprint), bound_pprint),
    ];
    for (name, native, bound) in texts {
        text_filter(env, name, native, bound);
    }
    text_filter(
        env,
        "tojson",
        Value::from_function(super::tojson),
        bound_tojson,
    );

    let lists: [(&'static str, Value); 18] = [
        ("list", Value::from_function(f::list)),
        ("sort", Value::from_function(f::sort)),
        ("reverse", Value::from_function(f::reverse)),
        ("unique", Value::from_function(f::unique)),
        ("dictsort", Value::from_function(f::dictsort)),
        ("items", Value::from_function(f::items)),
        ("batch", Value::from_function(f::batch)),
        ("slice", Value::from_function(f::slice)),
        ("select", Value::from_function(f::select)),
        ("reject", Value::from_function(f::reject)),
        ("selectattr", Value::from_function(f::selectattr)),
        ("rejectattr", Value::from_function(f::rejectattr)),
        ("map", Value::from_function(f::map)),
        ("groupby", Value::from_function(f::groupby)),
        ("chain", Value::from_function(f::chain)),
        ("zip", Value::from_function(f::zip)),
        ("split", Value::from_function(f::split)),
        ("lines", Value::from_function(f::lines)),
    ];
    for (name, native) in lists {
        list_filter(env, name, native);
    }

    for (name, native) in [
        ("lower", Value::from_function(t::is_lower)),
        ("upper", Value::from_function(t::is_upper)),
        ("startingwith", Value::from_function(t::is_startingwith)),
        ("endingwith", Value::from_function(t::is_endingwith)),
    ] {
        text_test(env, name, native);
    }
    env.remove_global("debug");
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::{TemplateError, Templates, from_json};
    use crate::template::Limits;
    use minijinja::UndefinedBehavior;

    const MIB: usize = 1 << 20;

    fn ctx() -> minijinja::Value {
        from_json(&json!({
            "s": "a:b", "n": 3, "f": 1.5, "l": [1, 2, 3], "m": {"a": 1, "b": "x"},
            "pods": [{"metadata": {"name": "p1"}, "status": {"phase": "Running"}},
                     {"metadata": {"name": "p2"}, "status": {"phase": "Pending"}}],
            "text": "one two\nthree", "big": "x".repeat(MIB),
        }))
    }

    /// What plain minijinja gives for `expr`: the reference the guards must match.
    fn plain(expr: &str) -> String {
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        match env.compile_expression(expr).and_then(|e| e.eval(ctx())) {
            Ok(v) => format!("{v:?}"),
            Err(e) => format!("error: {}", e.kind()),
        }
    }

    fn guarded(t: &mut Templates, expr: &str) -> String {
        let name = format!("e{expr}");
        t.add_expression(&name, expr).unwrap();
        match t.eval(&name, &ctx()) {
            Ok(v) => format!("{v:?}"),
            Err(TemplateError::Jinja { message, .. }) => {
                format!("error: {}", message.split(':').next().unwrap_or_default())
            }
            Err(e) => format!("error: {e}"),
        }
    }

    #[test]
    fn guarded_operators_and_filters_give_minijinja_results() {
        let mut t = Templates::new(&Limits::default());
        for expr in [
            "1 + 2",
            "n + f",
            "f + f",
            "9223372036854775807 + 1",
            "s + s",
            "[1] + l",
            "l + m",
            "s + 1",
            "(1, 2) + (3,)",
            "s ~ n ~ none ~ l",
            "x ~ s",
            "2 * 3",
            "s * 3",
            "3 * s",
            "l * 2",
            "s * -1",
            "f * 2",
            "s[1:]",
            "l[::-1]",
            "l[1]",
            "s[:-1]",
            "\":\" in s",
            "1 in l",
            "\"a\" in m",
            "l in s",
            "x in s",
            "5 in n",
            "s is in(\"xa:b\")",
            "1 is in(l)",
            "s|upper",
            "s|replace(\":\", \"--\")",
            "s|replace(\":\", \"-\", 1)",
            "l|join(\", \")",
            "l|join",
            "m|tojson",
            "m|tojson(indent=2)",
            "text|indent(2)",
            "text|indent(width=3, first=true)",
            "\"%s-%05d\"|format(s, n)",
            "l|string",
            "m|pprint",
            "text|split",
            "text|split(\" \", 1)",
            "text|lines",
            "s|list",
            "l|reverse|list",
            "l|batch(2)|list",
            "l|batch(2, 0)|list",
            "l|slice(2)|list",
            "pods|map(attribute=\"metadata.name\")|list",
            "pods|selectattr(\"status.phase\", \"eq\", \"Running\")|list",
            "m|items|list",
            "m|dictsort",
            "l|sort(reverse=true)",
            "[1, 1, 2]|unique|list",
            "s is startingwith(\"a\")",
            "s is endingwith(\"b\")",
            "s is lower",
            "s|title",
            "s|capitalize",
            "\" a \"|trim",
            "s|e",
            "l|first",
            "l|length",
            "range(3)|list",
        ] {
            assert_eq!(guarded(&mut t, expr), plain(expr), "{expr}");
        }
    }

    #[test]
    fn macros_loops_and_blocks_render_as_before() {
        // Values printed inside macros and blocks stay tokens in their text (a known limit of
        // the token design): only raw text is compared there.
        let source = "{% macro m(x) %}<m>{% endmacro %}{{ m(1) }}{% for i in range(3) %}{{ m(i) }}{{ i }}{% if not loop.last %},{% else %}.{% endif %}{% endfor %}{% macro w(a, b=2) %}(w){% endmacro %}{{ w(1) }}{% set b %}[b]{% endset %}{{ b }}{% filter upper %}u{% endfilter %}{{ s }}";
        let mut env = minijinja::Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        let expected = env.render_str(source, ctx()).unwrap();
        let mut t = Templates::new(&Limits::default());
        t.add_template("t", source).unwrap();
        assert_eq!(t.render_text("t", &ctx()).unwrap(), expected);
    }

    /// A render over budget is an error of that render; this test process surviving the
    /// list (which asks for gigabytes unguarded) is the proof that nothing is allocated.
    #[test]
    fn value_building_is_bounded_by_the_render_budget() {
        let mut t = Templates::new(&Limits::default());
        let doubling = |op: &str| {
            format!(
                "{{% set ns = namespace(s=big) %}}{{% for i in range(12) %}}{{% set ns.s = {op} %}}{{% endfor %}}n: {{{{ ns.s|length }}}}"
            )
        };
        let nested = "{% set ns = namespace(l=[big]) %}{% for i in range(30) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}";
        let cases = [
            doubling("ns.s ~ ns.s"),
            doubling("ns.s + ns.s"),
            doubling("[ns.s, ns.s]|join"),
            doubling("ns.s|replace(\"x\", \"xx\")"),
            doubling("\"%s%s\"|format(ns.s, ns.s)"),
            doubling("ns.s|indent(1, true, true) ~ ns.s"),
            "{% set x = s * 100000000 %}".to_string(),
            "{% set x = l * 100000000 %}".to_string(),
            "{% set x = [1]|batch(1000000000, 0)|list %}".to_string(),
            "{% set x = [1]|slice(1000000000, 0)|list %}".to_string(),
            "{% set x = \"%999999999s\"|format(\"a\") %}".to_string(),
            "{% set x = \"a\"|indent(999999999, true) %}".to_string(),
            "{% set x = \"\"|replace(\"\", big)|replace(\"x\", big) %}".to_string(),
            "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{% set x = ns.l|list %}".to_string(),
            format!("{nested}{{% set x = ns.l|string %}}"),
            format!("{nested}{{% set x = ns.l|tojson %}}"),
            format!("{nested}{{% set x = ns.l|join %}}"),
            format!("{nested}{{% set x = ns.l ~ \"\" %}}"),
            format!("{nested}{{% set x = ns.l|pprint %}}"),
            format!("{nested}{{% set x = \"a\" is startingwith(ns.l) %}}"),
            // Template text repeated by a loop: 30000 × 8 KiB.
            format!("{{% for i in range(30000) %}}{}{{% endfor %}}", "y".repeat(8192)),
        ];
        for (i, source) in cases.iter().enumerate() {
            let name = format!("t{i}");
            t.add_template(&name, source).unwrap();
            let err = match t.render_text(&name, &ctx()) {
                Ok(out) => panic!("{source}: rendered {} bytes", out.len()),
                Err(e) => e.to_string(),
            };
            assert!(
                err.contains("memory budget of 8388608 bytes"),
                "{source}: {err}"
            );
        }
        // The compiler folds operators on literals: those are sized before they are built.
        for source in [
            "{{ \"x\" * 100000000 }}",
            "{{ ((\"x\" * 99999999) ~ (\"x\" * 99999999)) ~ ((\"x\" * 99999999) ~ (\"x\" * 99999999)) }}",
            "{% if n %}{{ [[1] * 9999999, [1] * 9999999] }}{% endif %}",
            "{{ \"x\" * (2 ** 40) }}",
            "{{ \"x\" * (0 or 100000000) }}",
        ] {
            let err = t.add_template("c", source).unwrap_err().to_string();
            assert!(
                err.contains("constant expression would build more"),
                "{source}: {err}"
            );
        }
        t.add_template("c", "{{ \"ab\" * 3 ~ [1, 2] ~ (1 + 2) }}")
            .unwrap();
        assert_eq!(t.render_text("c", &ctx()).unwrap(), "ababab[1, 2]3");
        // Nothing of one render is left for the next: a small render still works.
        t.add_template("ok", "a: {{ s ~ s }}").unwrap();
        assert_eq!(
            t.render_object("ok", &ctx()).unwrap(),
            json!({"a": "a:ba:b"})
        );
    }

    #[test]
    fn printing_a_logically_huge_value_is_measured_not_built() {
        let mut t = Templates::new(&Limits::default());
        let nested = "{% set ns = namespace(l=[big]) %}{% for i in range(30) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}";
        t.add_template("t", &format!("a: {nested}{{{{ ns.l }}}}"))
            .unwrap();
        let err = t.render_object("t", &ctx()).unwrap_err();
        assert!(matches!(err, TemplateError::TooLarge { .. }), "{err}");
        // `in` on a needle longer than the text cannot match: answered without building it.
        t.add_expression("e", "(namespace(l=[big]).l) in \"short\"")
            .unwrap();
        assert!(!t.eval("e", &ctx()).unwrap().is_true());
    }
}
