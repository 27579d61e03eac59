//! The template sandbox: minijinja with a fuel limit, an output limit, and interpolation that
//! inserts values into the parsed YAML tree instead of its text.
//!
//! Every `{{ ... }}` writes a placeholder token; the value goes into a per-render slot table.
//! The rendered text (only the rule author's text plus tokens) is parsed as YAML, then each
//! token is replaced by its value: a plain scalar that is exactly one token takes the value
//! with its type (a number stays a number, a map a map); tokens inside longer or quoted
//! strings are spliced in as text. A value holding newlines, `---` or `key: value` therefore
//! stays one string: parent data can never change a manifest's structure.

use minijinja::value::{Kwargs, Serde, Value, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind, HtmlEscape, UndefinedBehavior};
use saphyr_parser::{Event, Parser, ScalarStyle};
use serde_json::{Map, Value as Json};

use crate::rule::Limits;

const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';
/// The variable an expression's value is stored in.
const RESULT: &str = "__ruleop_result";
/// The auto-escape mode of every template: minijinja then marks the output of macros,
/// `{% filter %}` and `{% set %}` blocks as safe (template text holding tokens) and routes
/// every other printed value, even inside filters like `replace` or `join`, through the
/// formatter, which turns it into a token.
const ESCAPE_MODE: &str = "ruleop";

/// Values printed during one render, in order.
#[derive(Default)]
struct Slots(Vec<Value>);

/// A template or expression failure.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TemplateError {
    /// minijinja failed to compile or evaluate.
    #[error("{message}")]
    Jinja {
        /// The line inside the template, when known.
        line: Option<usize>,
        /// What went wrong.
        message: String,
    },
    /// The output exceeded the rule's limit.
    #[error("rendered output is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// Bytes rendered.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The rendered text is not YAML of the expected shape.
    #[error("rendered manifest line {line}: {message}")]
    Yaml {
        /// The line in the rendered text.
        line: usize,
        /// What went wrong.
        message: String,
    },
}

impl TemplateError {
    fn jinja(err: &minijinja::Error) -> Self {
        let mut message = match err.detail() {
            Some(detail) => format!("{}: {detail}", err.kind()),
            None => err.kind().to_string(),
        };
        if err.kind() == ErrorKind::OutOfFuel {
            message = "template ran out of fuel (too many instructions; raise spec.limits.fuel or simplify the template)".into();
        }
        TemplateError::Jinja {
            line: err.line(),
            message,
        }
    }

    /// The line inside the template, if the error has one.
    pub fn template_line(&self) -> Option<usize> {
        match self {
            TemplateError::Jinja { line, .. } => *line,
            _ => None,
        }
    }
}

/// The compiled templates and expressions of one rule.
pub struct Templates {
    env: Environment<'static>,
    max_output: usize,
    /// Text put before every template and expression compiled after it is set (the rule's
    /// shared macros import); on the first line, so line numbers stay those of the source.
    prelude: String,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// A sandboxed environment with the rule's limits.
    pub fn new(limits: &Limits) -> Self {
        let mut env = Environment::new();
        // Missing attributes chain to undefined so expressions can test optional fields;
        // printing an undefined value is still an error (see the formatter).
        env.set_undefined_behavior(UndefinedBehavior::Chainable);
        env.set_fuel(Some(limits.fuel));
        env.set_recursion_limit(64);
        // Every template escapes the same way, whatever its name looks like (`.html`, `.json`).
        env.set_auto_escape_callback(|_| AutoEscape::Custom(ESCAPE_MODE.into()));
        // `safe` would let a parent's string bypass the placeholder mechanism.
        env.remove_filter("safe");
        // The builtins return "safe" strings that the formatter would paste into the YAML
        // text: these return plain strings, which become values like any other.
        env.add_filter("tojson", tojson);
        env.add_filter("escape", escape_html);
        env.add_filter("e", escape_html);
        crate::filters::register(&mut env);
        env.add_function("ready", |obj: Value| is_ready_value(&obj));
        env.add_test("ready", |obj: Value| is_ready_value(&obj));
        env.set_formatter(|out, state, value| {
            if value.is_undefined() {
                return Err(minijinja::Error::new(
                    ErrorKind::UndefinedError,
                    "a printed value is undefined (use `| default(...)` for optional fields)",
                ));
            }
            // Output of macros and `{% filter %}` blocks is template text with its own tokens.
            if value.is_safe()
                && let Some(text) = value.as_str()
            {
                return out.write_str(text).map_err(minijinja::Error::from);
            }
            let slots = state.get_or_insert_extension_with(Slots::default);
            let index = slots.0.len();
            slots.0.push(value.clone());
            write!(out, "{OPEN}{index}{CLOSE}").map_err(minijinja::Error::from)
        });
        Self {
            env,
            max_output: limits.max_output_bytes,
            prelude: String::new(),
        }
    }

    /// Compiles a manifest or message template under `name`.
    pub fn add_template(&mut self, name: &str, source: &str) -> Result<(), TemplateError> {
        self.env
            .add_template_owned(name.to_string(), format!("{}{source}", self.prelude))
            .map_err(|e| TemplateError::jinja(&e))
    }

    /// Compiles the macros template `source` under `name` and makes its macros available as
    /// `macros.<name>(...)` in every template and expression compiled afterwards.
    pub fn add_macros(&mut self, name: &str, source: &str) -> Result<(), TemplateError> {
        self.add_template(name, source)?;
        self.prelude = format!("{{% import {name:?} as macros %}}");
        Ok(())
    }

    /// Compiles a single expression under `name`.
    pub fn add_expression(&mut self, name: &str, expr: &str) -> Result<(), TemplateError> {
        // Compile it alone first, so `a }} text {{ b` cannot pass as one expression.
        self.env
            .compile_expression(expr)
            .map_err(|e| TemplateError::jinja(&e))?;
        self.add_template(name, &format!("{{% set {RESULT} = ({expr}) %}}"))
    }

    fn render_raw(&self, name: &str, ctx: &Value) -> Result<(String, Vec<Value>), TemplateError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| TemplateError::jinja(&e))?;
        let mut captured = template
            .render_captured(ctx.clone())
            .map_err(|e| TemplateError::jinja(&e))?;
        let slots = captured.with_state_mut(|state| {
            state
                .get_extension_mut::<Slots>()
                .map(|s| std::mem::take(&mut s.0))
                .unwrap_or_default()
        });
        let text = captured.into_output();
        if text.len() > self.max_output {
            return Err(TemplateError::TooLarge {
                size: text.len(),
                limit: self.max_output,
            });
        }
        Ok((text, slots))
    }

    /// Evaluates the expression registered as `name` (undefined is a valid result).
    pub fn eval(&self, name: &str, ctx: &Value) -> Result<Value, TemplateError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| TemplateError::jinja(&e))?;
        let mut captured = template
            .render_captured(ctx.clone())
            .map_err(|e| TemplateError::jinja(&e))?;
        let result = captured.state().lookup(RESULT).unwrap_or(Value::UNDEFINED);
        // A macro's output holds tokens for the values it printed: put them back as text.
        if let Some(text) = result.as_str()
            && text.contains(OPEN)
        {
            let slots = captured.with_state_mut(|state| {
                state
                    .get_extension_mut::<Slots>()
                    .map(|s| std::mem::take(&mut s.0))
                    .unwrap_or_default()
            });
            return Ok(Value::from(splice(text, &slots)));
        }
        Ok(result)
    }

    /// Renders the template `name` as plain text (messages), splicing values in as text.
    pub fn render_text(&self, name: &str, ctx: &Value) -> Result<String, TemplateError> {
        let (text, slots) = self.render_raw(name, ctx)?;
        Ok(splice(&text, &slots))
    }

    /// Renders the template `name` into exactly one YAML mapping.
    pub fn render_object(&self, name: &str, ctx: &Value) -> Result<Json, TemplateError> {
        let (text, slots) = self.render_raw(name, ctx)?;
        let doc = parse_yaml(&text, &slots)?;
        match doc {
            Json::Object(_) => Ok(doc),
            other => Err(TemplateError::Yaml {
                line: 1,
                message: format!(
                    "a child must render to one mapping, got {}",
                    kind_name(&other)
                ),
            }),
        }
    }
}

/// `tojson` as minijinja's, but a value (a string) rather than text for the YAML source.
fn tojson(value: &Value, indent: Option<Value>, args: Kwargs) -> Result<Value, minijinja::Error> {
    let json = minijinja::filters::tojson(value, indent, args)?;
    Ok(Value::from(json.as_str().unwrap_or_default()))
}

/// HTML escaping (`escape`, `e`) as a value: the escaped text, never template text.
fn escape_html(value: &Value) -> Value {
    let text = match value.as_str() {
        Some(s) => s.to_string(),
        None => as_text(value),
    };
    Value::from(HtmlEscape(&text).to_string())
}

/// Generic readiness: a `Ready` condition decides; else a Pod must be `Running`; else ready.
pub fn is_ready(obj: &Json) -> bool {
    if let Some(conditions) = obj.pointer("/status/conditions").and_then(Json::as_array)
        && let Some(ready) = conditions
            .iter()
            .find(|c| c.get("type").and_then(Json::as_str) == Some("Ready"))
    {
        return ready.get("status").and_then(Json::as_str) == Some("True");
    }
    if obj.get("kind").and_then(Json::as_str) == Some("Pod") {
        return obj.pointer("/status/phase").and_then(Json::as_str) == Some("Running");
    }
    true
}

fn is_ready_value(obj: &Value) -> bool {
    serde_json::to_value(obj)
        .map(|j| is_ready(&j))
        .unwrap_or(false)
}

/// Converts JSON to a template value.
pub fn from_json(value: &Json) -> Value {
    Value::from(Serde(value))
}

/// Converts a minijinja value to JSON (undefined becomes null).
pub fn to_json(value: &Value) -> Json {
    if value.is_undefined() || value.is_none() {
        return Json::Null;
    }
    serde_json::to_value(value).unwrap_or(Json::Null)
}

/// The text form of a value spliced into a longer string.
fn as_text(value: &Value) -> String {
    match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        ValueKind::Undefined | ValueKind::None => String::new(),
        ValueKind::Bool | ValueKind::Number => value.to_string(),
        _ => to_json(value).to_string(),
    }
}

/// Replaces every token in `text` by the text of its value.
fn splice(text: &str, slots: &[Value]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len_utf8()..];
        match after.find(CLOSE) {
            Some(end) => {
                if let Some(v) = after[..end]
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| slots.get(i))
                {
                    out.push_str(&as_text(v));
                }
                rest = &after[end + CLOSE.len_utf8()..];
            }
            None => {
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The slot a scalar refers to when it is exactly one token.
fn whole_token(text: &str) -> Option<usize> {
    text.strip_prefix(OPEN)?.strip_suffix(CLOSE)?.parse().ok()
}

fn kind_name(v: &Json) -> &'static str {
    match v {
        Json::Null => "nothing",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "a mapping",
    }
}

enum Building {
    Map(Map<String, Json>, Option<String>),
    Seq(Vec<Json>),
}

/// Parses one YAML document of rendered text into JSON, resolving tokens.
fn parse_yaml(text: &str, slots: &[Value]) -> Result<Json, TemplateError> {
    let mut parser = Parser::new_from_str(text);
    let mut stack: Vec<Building> = Vec::new();
    let mut root: Option<Json> = None;
    let mut documents = 0;
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| TemplateError::Yaml {
            line: e.marker().line(),
            message: e.info().to_string(),
        })?;
        let line = span.start.line();
        let err = |message: String| TemplateError::Yaml { line, message };
        let value = match event {
            Event::DocumentStart(_) => {
                documents += 1;
                if documents > 1 {
                    return Err(err("a child must render exactly one YAML document".into()));
                }
                continue;
            }
            Event::Alias(_) => {
                return Err(err("YAML aliases are not supported in manifests".into()));
            }
            Event::MappingStart(..) => {
                stack.push(Building::Map(Map::new(), None));
                continue;
            }
            Event::SequenceStart(..) => {
                stack.push(Building::Seq(Vec::new()));
                continue;
            }
            Event::MappingEnd => match stack.pop() {
                Some(Building::Map(map, _)) => Json::Object(map),
                _ => return Err(err("unbalanced mapping".into())),
            },
            Event::SequenceEnd => match stack.pop() {
                Some(Building::Seq(seq)) => Json::Array(seq),
                _ => return Err(err("unbalanced sequence".into())),
            },
            Event::Scalar(raw, style, _, tag) => {
                if tag.is_some() {
                    return Err(err("YAML tags are not supported in manifests".into()));
                }
                // A key is always text.
                if let Some(Building::Map(_, key @ None)) = stack.last_mut() {
                    *key = Some(splice(&raw, slots));
                    continue;
                }
                scalar(&raw, style, slots)
            }
            _ => continue,
        };
        match stack.last_mut() {
            Some(Building::Map(map, key)) => {
                let key = key.take().unwrap_or_default();
                if map.insert(key.clone(), value).is_some() {
                    return Err(err(format!("duplicate key {key:?}")));
                }
            }
            Some(Building::Seq(seq)) => seq.push(value),
            None => root = Some(value),
        }
    }
    Ok(root.unwrap_or(Json::Null))
}

/// Resolves one scalar: typed when plain (YAML 1.2 core schema), text when quoted or block.
fn scalar(raw: &str, style: ScalarStyle, slots: &[Value]) -> Json {
    if style == ScalarStyle::Plain {
        if let Some(value) = whole_token(raw).and_then(|i| slots.get(i)) {
            return to_json(value);
        }
        if !raw.contains(OPEN) {
            return plain(raw);
        }
    } else if let Some(value) = whole_token(raw).and_then(|i| slots.get(i)) {
        // A quoted interpolation is a string, whatever the value's type.
        return Json::String(as_text(value));
    }
    Json::String(splice(raw, slots))
}

/// The YAML 1.2 core schema for plain scalars.
fn plain(raw: &str) -> Json {
    match raw {
        "" | "~" | "null" | "Null" | "NULL" => return Json::Null,
        "true" | "True" | "TRUE" => return Json::Bool(true),
        "false" | "False" | "FALSE" => return Json::Bool(false),
        _ => {}
    }
    if let Ok(i) = raw.parse::<i64>() {
        return Json::from(i);
    }
    if let Some(hex) = raw.strip_prefix("0x")
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Json::from(i);
    }
    if let Some(oct) = raw.strip_prefix("0o")
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Json::from(i);
    }
    let looks_numeric = raw
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
        && raw.chars().any(|c| c.is_ascii_digit());
    if looks_numeric
        && let Some(n) = raw
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
    {
        return Json::Number(n);
    }
    Json::String(raw.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn templates(source: &str) -> Templates {
        let mut t = Templates::new(&Limits::default());
        t.add_template("t", source).unwrap();
        t
    }

    fn ctx(v: Json) -> Value {
        from_json(&v)
    }

    #[test]
    fn values_keep_their_type() {
        let t = templates("replicas: {{ n }}\nname: {{ name }}-job\nlabels: {{ labels }}\n");
        let out = t
            .render_object(
                "t",
                &ctx(json!({"n": 3, "name": "web", "labels": {"a": "b"}})),
            )
            .unwrap();
        assert_eq!(
            out,
            json!({"replicas": 3, "name": "web-job", "labels": {"a": "b"}})
        );
    }

    #[test]
    fn hostile_strings_stay_one_string() {
        let t = templates("kind: Pod\nmessage: {{ m }}\nquoted: \"{{ m }}\"\n");
        let m = "hi\n---\nkind: Secret\nspec: {evil: true}";
        let out = t.render_object("t", &ctx(json!({"m": m}))).unwrap();
        assert_eq!(out, json!({"kind": "Pod", "message": m, "quoted": m}));
    }

    #[test]
    fn quoted_interpolation_is_a_string() {
        let t = templates("value: \"{{ n }}\"\n");
        let out = t.render_object("t", &ctx(json!({"n": 8080}))).unwrap();
        assert_eq!(out, json!({"value": "8080"}));
    }

    #[test]
    fn loops_and_conditionals_shape_the_document() {
        let t = templates(
            "peers:\n{% for i in range(n) %}  - {{ name }}-{{ i }}\n{% endfor %}{% if extra %}extra: yes{% endif %}\n",
        );
        let out = t
            .render_object("t", &ctx(json!({"n": 2, "name": "e", "extra": false})))
            .unwrap();
        assert_eq!(out, json!({"peers": ["e-0", "e-1"]}));
    }

    #[test]
    fn multiple_documents_are_rejected() {
        let t = templates("a: 1\n---\nb: 2\n");
        let err = t.render_object("t", &ctx(json!({}))).unwrap_err();
        assert!(
            err.to_string().contains("exactly one YAML document"),
            "{err}"
        );
    }

    #[test]
    fn printing_undefined_is_an_error() {
        let t = templates("a: {{ parent.spec.missing }}\n");
        let err = t
            .render_object("t", &ctx(json!({"parent": {"spec": {}}})))
            .unwrap_err();
        assert!(err.to_string().contains("undefined"), "{err}");
        assert_eq!(err.template_line(), Some(1));
    }

    #[test]
    fn safe_filter_is_removed() {
        let mut t = Templates::new(&Limits::default());
        assert!(
            t.add_template("t", "a: {{ x | safe }}").is_err() || {
                t.render_object("t", &ctx(json!({"x": "b: c"}))).is_err()
            }
        );
    }

    #[test]
    fn fuel_limit_stops_runaway_loops() {
        let mut t = Templates::new(&Limits {
            fuel: 1000,
            max_output_bytes: 1 << 20,
        });
        t.add_template("t", "{% for i in range(100000) %}x{% endfor %}")
            .unwrap();
        let err = t.render_text("t", &ctx(json!({}))).unwrap_err();
        assert!(err.to_string().contains("fuel"), "{err}");
    }

    #[test]
    fn output_limit() {
        let mut t = Templates::new(&Limits {
            fuel: 1_000_000,
            max_output_bytes: 100,
        });
        t.add_template("t", "{% for i in range(200) %}x{% endfor %}")
            .unwrap();
        assert!(matches!(
            t.render_text("t", &ctx(json!({}))),
            Err(TemplateError::TooLarge { .. })
        ));
    }

    #[test]
    fn expressions_evaluate_to_values() {
        let mut t = Templates::new(&Limits::default());
        t.add_expression("e", "parent.spec.size >= 1 and parent.spec.size <= 10")
            .unwrap();
        t.add_expression(
            "missing",
            "children.deployment.status.readyReplicas | default(0)",
        )
        .unwrap();
        let c = ctx(json!({"parent": {"spec": {"size": 3}}, "children": {}}));
        assert!(t.eval("e", &c).unwrap().is_true());
        assert_eq!(to_json(&t.eval("missing", &c).unwrap()), json!(0));
        assert!(t.add_expression("bad", "a }} x {{ b").is_err());
    }

    #[test]
    fn messages_splice_text() {
        let t = templates("size must be 1..10, got {{ n }} ({{ s }})");
        assert_eq!(
            t.render_text("t", &ctx(json!({"n": 11, "s": "x"})))
                .unwrap(),
            "size must be 1..10, got 11 (x)"
        );
    }

    #[test]
    fn plain_scalars_follow_yaml_core_schema() {
        assert_eq!(plain("3"), json!(3));
        assert_eq!(plain("1.5"), json!(1.5));
        assert_eq!(plain("true"), json!(true));
        assert_eq!(plain("yes"), json!("yes"));
        assert_eq!(plain("~"), Json::Null);
        assert_eq!(plain("1Gi"), json!("1Gi"));
        assert_eq!(plain("3.5.9"), json!("3.5.9"));
    }

    #[test]
    fn readiness() {
        assert!(is_ready(
            &json!({"kind": "Pod", "status": {"phase": "Running"}})
        ));
        assert!(!is_ready(
            &json!({"kind": "Pod", "status": {"phase": "Pending"}})
        ));
        assert!(!is_ready(
            &json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}})
        ));
        assert!(is_ready(&json!({"kind": "Service"})));
    }
}
