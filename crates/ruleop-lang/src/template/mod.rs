//! The template sandbox: minijinja with a fuel limit, an output limit, a memory budget, and
//! interpolation that inserts values into the parsed YAML tree instead of its text.
//!
//! Every `{{ ... }}` writes a placeholder token; the value goes into a per-render slot table.
//! The rendered text (only the rule author's text plus tokens) is parsed as YAML, then each
//! token is replaced by its value: a plain scalar that is exactly one token takes the value
//! with its type (a number stays a number, a map a map); tokens inside longer or quoted
//! strings are spliced in as text. A value holding newlines, `---` or `key: value` therefore
//! stays one string: parent data can never change a manifest's structure.
//!
//! Memory: a render may build at most `BUDGET_PER_OUTPUT_BYTE` × `maxOutputBytes` bytes of
//! values (`budget`, `ops`, `guard`, `fold`, `machinery`); the output limit counts interpolated values too.

pub(crate) mod access;
mod budget;
pub mod filters;
mod fold;
mod guard;
mod json;
mod limits;
mod lint;
pub(crate) mod machinery;
pub mod names;
mod ops;
mod plan_fuel;
mod shape;
mod yaml;

use std::collections::HashMap;

use minijinja::value::{Kwargs, Serde, Value, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind, HtmlEscape, UndefinedBehavior};
use serde_json::Value as Json;

pub use limits::Limits;
use machinery::{ESCAPE_MODE, Program};
use shape::Shapes;
use yaml::{CLOSE, OPEN, kind_name, splice};

pub use budget::BUDGET_PER_OUTPUT_BYTE;
pub use json::shared_json;
pub use lint::lint;
pub use plan_fuel::{PLAN_FUEL_PER_RENDER_FUEL, PlanScope};

/// The variable an expression's value is stored in.
const RESULT: &str = "__ruleop_result";

/// Values printed during one render, in order.
#[derive(Default)]
struct Slots(Vec<Value>);

/// A template or expression failure.
#[derive(Debug, thiserror::Error, Clone, PartialEq)]
pub enum TemplateError {
    /// minijinja failed to compile or evaluate (including a render over its memory budget).
    #[error("{message}")]
    Jinja {
        /// The line inside the template, when known.
        line: Option<usize>,
        /// What went wrong.
        message: String,
    },
    /// The output, interpolated values included, exceeded the rule's limit.
    #[error(
        "rendered output is {size} bytes or more with its interpolated values, over the limit of {limit} (spec.limits.maxOutputBytes)"
    )]
    TooLarge {
        /// Bytes rendered, counted until past the limit.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The plan this render belongs to spent its total fuel (see `plan_fuel`).
    #[error(
        "the plan's renders ran out of their total fuel of {limit} instructions ({PLAN_FUEL_PER_RENDER_FUEL} × spec.limits.fuel; raise spec.limits.fuel or render less per parent)"
    )]
    PlanOutOfFuel {
        /// The plan's fuel.
        limit: u64,
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

impl From<minijinja::Error> for TemplateError {
    fn from(err: minijinja::Error) -> Self {
        TemplateError::jinja(&err)
    }
}

impl TemplateError {
    pub(crate) fn jinja(err: &minijinja::Error) -> Self {
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

/// A compiled template (a manifest, a message, a selector value), returned by
/// [`Templates::add_template`] and rendered with [`Templates::render_object`] or
/// [`Templates::render_text`]. Valid only for the `Templates` that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TemplateId(u32);

/// A compiled expression, returned by [`Templates::add_expression`] and evaluated with
/// [`Templates::eval`]. Valid only for the `Templates` that returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExprId(u32);

/// Either handle: what reads only a compiled entry's name ([`Templates::name`]).
pub trait Handle: Copy {
    /// The entry's index in its `Templates`.
    fn index(self) -> usize;
}

impl Handle for TemplateId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

impl Handle for ExprId {
    fn index(self) -> usize {
        self.0 as usize
    }
}

/// What names a template to render: its handle, or the name it was compiled under (tests
/// and tools; the planner only holds handles, so it cannot name a template that is not
/// compiled).
pub trait TemplateKey {
    /// The entry's index, or why there is none.
    fn find(&self, templates: &Templates) -> Result<usize, TemplateError>;
}

/// What names an expression to evaluate: its handle, or the name it was compiled under.
pub trait ExprKey {
    /// The entry's index, or why there is none.
    fn find(&self, templates: &Templates) -> Result<usize, TemplateError>;
}

impl TemplateKey for TemplateId {
    fn find(&self, _: &Templates) -> Result<usize, TemplateError> {
        Ok(self.index())
    }
}

impl ExprKey for ExprId {
    fn find(&self, _: &Templates) -> Result<usize, TemplateError> {
        Ok(self.index())
    }
}

impl<T: AsRef<str> + ?Sized> TemplateKey for &T {
    fn find(&self, templates: &Templates) -> Result<usize, TemplateError> {
        templates.by_name(self.as_ref())
    }
}

impl<T: AsRef<str> + ?Sized> ExprKey for &T {
    fn find(&self, templates: &Templates) -> Result<usize, TemplateError> {
        templates.by_name(self.as_ref())
    }
}

/// One compiled template or expression and the name it is located by in errors (the YAML
/// path of its source, e.g. `spec.children[0].template`).
struct Entry {
    name: String,
    program: Program,
}

/// The compiled templates and expressions of one rule.
pub struct Templates {
    env: Environment<'static>,
    entries: Vec<Entry>,
    /// The entry of each name (the last one compiled under it).
    names: HashMap<String, usize>,
    max_output: usize,
    budget: usize,
    /// Instructions per render (`spec.limits.fuel`).
    fuel: u64,
    /// Text put before every template and expression compiled after it is set (the rule's
    /// shared macros import); on the first line, so line numbers stay those of the source.
    prelude: String,
    /// Rendered texts already parsed as YAML.
    shapes: Shapes,
    /// Whether any template or expression may read `now` (its text names it).
    reads_now: bool,
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
        // Bounded builtins; `tojson` and `escape` among them return plain strings (values),
        // never "safe" text the formatter would paste into the YAML source.
        guard::install(&mut env);
        filters::register(&mut env);
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
                // Written again each time it is printed: a macro printing its argument twice
                // doubles it, so this is built text like any other.
                budget::charge(Some(text.len()), "printing template text")?;
                return out.write_str(text).map_err(minijinja::Error::from);
            }
            let slots = state.get_or_insert_extension_with(Slots::default);
            let index = slots.0.len();
            slots.0.push(value.clone());
            write!(out, "{OPEN}{index}{CLOSE}").map_err(minijinja::Error::from)
        });
        Self {
            env,
            entries: Vec::new(),
            names: HashMap::new(),
            max_output: limits.max_output_bytes,
            budget: limits
                .max_output_bytes
                .saturating_mul(BUDGET_PER_OUTPUT_BYTE),
            fuel: limits.fuel,
            prelude: String::new(),
            shapes: Shapes::default(),
            reads_now: false,
        }
    }

    /// Compiles a manifest or message template under `name` (its location in errors).
    pub fn add_template(&mut self, name: &str, source: &str) -> Result<TemplateId, TemplateError> {
        let program = Program::compile(name, &format!("{}{source}", self.prelude), |ast| {
            fold::refuse_oversized(ast, self.budget)
        })?;
        // Conservative: any mention counts, so a plan that depends on the time is never reused.
        self.reads_now |= source.contains("now");
        let index = self.entries.len();
        let id = u32::try_from(index).map_err(|_| TemplateError::Jinja {
            line: None,
            message: "too many templates in one rule".into(),
        })?;
        self.entries.push(Entry {
            name: name.to_string(),
            program,
        });
        self.names.insert(name.to_string(), index);
        Ok(TemplateId(id))
    }

    /// The name `id` was compiled under: the YAML path that locates it in errors.
    pub fn name(&self, id: impl Handle) -> &str {
        self.entries
            .get(id.index())
            .map_or("", |entry| entry.name.as_str())
    }

    fn by_name(&self, name: &str) -> Result<usize, TemplateError> {
        self.names
            .get(name)
            .copied()
            .ok_or_else(|| TemplateError::Jinja {
                line: None,
                message: format!("template {name:?} is not compiled"),
            })
    }

    /// Starts a plan of this rule's templates on this thread: its renders together may run
    /// [`PLAN_FUEL_PER_RENDER_FUEL`] × `spec.limits.fuel` instructions.
    pub fn plan_scope(&self) -> PlanScope {
        PlanScope::enter(self.fuel.saturating_mul(PLAN_FUEL_PER_RENDER_FUEL))
    }

    /// Whether a template or expression may read `now`: its plans depend on the time.
    pub fn reads_now(&self) -> bool {
        self.reads_now
    }

    /// The environment, for static checks of compiled templates (`crate::lint`).
    pub(crate) fn environment(&self) -> &Environment<'static> {
        &self.env
    }

    /// The instruction blocks of the compiled (and patched) template `name`: its body, then
    /// its blocks, for static checks (`access`, `names`, `check::refs`, `rule::reads`).
    pub(crate) fn program(&self, name: &str) -> Option<Vec<machinery::Block<'_>>> {
        let index = *self.names.get(name)?;
        self.entries.get(index).map(|entry| entry.program.blocks())
    }

    /// The names every template and expression is registered under (static checks,
    /// `crate::rule::reads`).
    pub(crate) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.keys().map(String::as_str)
    }

    /// Compiles the macros template `source` under `name` and makes its macros available as
    /// `macros.<name>(...)` in every template and expression compiled afterwards.
    pub fn add_macros(&mut self, name: &str, source: &str) -> Result<TemplateId, TemplateError> {
        let id = self.add_template(name, source)?;
        // `import` loads through the environment: the macros run there, with fuel and the
        // output limit but without the bounded operators of compiled programs.
        self.env
            .add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| TemplateError::jinja(&e))?;
        self.prelude = format!("{{% import {name:?} as macros %}}");
        Ok(id)
    }

    /// Compiles a single expression under `name`.
    pub fn add_expression(&mut self, name: &str, expr: &str) -> Result<ExprId, TemplateError> {
        // Compile it alone first, so `a }} text {{ b` cannot pass as one expression.
        self.env
            .compile_expression(expr)
            .map_err(|e| TemplateError::jinja(&e))?;
        let TemplateId(id) =
            self.add_template(name, &format!("{{% set {RESULT} = ({expr}) %}}"))?;
        Ok(ExprId(id))
    }

    /// Runs the program of entry `index` under the render budget; `inspect` reads the final state.
    fn run<R>(
        &self,
        index: usize,
        ctx: &Value,
        inspect: impl FnOnce(&mut minijinja::State) -> R,
    ) -> Result<(String, R), TemplateError> {
        let Entry { name, program } =
            self.entries
                .get(index)
                .ok_or_else(|| TemplateError::Jinja {
                    line: None,
                    message: format!("template #{index} is not compiled here"),
                })?;
        plan_fuel::admit(name).map_err(|limit| TemplateError::PlanOutOfFuel { limit })?;
        let _budget = budget::Scope::enter(self.budget);
        let ran = program.run(&self.env, ctx.clone(), |state| {
            // Consumed by a render that finished; one that ran out used all of it.
            let consumed = state.fuel_levels().map_or(0, |(consumed, _)| consumed);
            (consumed, inspect(state))
        });
        match ran {
            Ok((text, (consumed, inspected))) => {
                plan_fuel::charge(consumed);
                Ok((text, inspected))
            }
            Err(e) => {
                // Other failures are not counted: minijinja drops their state.
                if e.kind() == ErrorKind::OutOfFuel {
                    plan_fuel::charge(self.fuel);
                }
                Err(TemplateError::jinja(&e))
            }
        }
    }

    fn render_raw(&self, index: usize, ctx: &Value) -> Result<(String, Vec<Value>), TemplateError> {
        let (text, slots) = self.run(index, ctx, |state| {
            state
                .get_extension_mut::<Slots>()
                .map(|s| std::mem::take(&mut s.0))
                .unwrap_or_default()
        })?;
        let size = output_size(&text, &slots, self.max_output);
        if size > self.max_output {
            return Err(TemplateError::TooLarge {
                size,
                limit: self.max_output,
            });
        }
        Ok((text, slots))
    }

    /// Evaluates the expression `id` (undefined is a valid result).
    pub fn eval(&self, id: impl ExprKey, ctx: &Value) -> Result<Value, TemplateError> {
        let (_, (result, slots)) = self.run(id.find(self)?, ctx, |state| {
            let result = state.lookup(RESULT).unwrap_or(Value::UNDEFINED);
            // A macro's output holds tokens for the values it printed: put them back as text.
            let slots = if result.as_str().is_some_and(|t| t.contains(OPEN)) {
                state
                    .get_extension_mut::<Slots>()
                    .map(|s| std::mem::take(&mut s.0))
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            (result, slots)
        })?;
        if !slots.is_empty()
            && let Some(text) = result.as_str()
        {
            return Ok(Value::from(splice(text, &slots)));
        }
        Ok(result)
    }

    /// Renders the template `id` as plain text (messages), splicing values in as text.
    pub fn render_text(&self, id: impl TemplateKey, ctx: &Value) -> Result<String, TemplateError> {
        let (text, slots) = self.render_raw(id.find(self)?, ctx)?;
        Ok(splice(&text, &slots))
    }

    /// Renders the template `id` into exactly one YAML mapping.
    pub fn render_object(&self, id: impl TemplateKey, ctx: &Value) -> Result<Json, TemplateError> {
        let index = id.find(self)?;
        let (text, slots) = self.render_raw(index, ctx)?;
        let name = self.entries.get(index).map_or("", |e| e.name.as_str());
        let doc = self.shapes.resolve(name, &text, &slots)?;
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
pub(crate) fn tojson(
    value: &Value,
    indent: Option<Value>,
    args: Kwargs,
) -> Result<Value, minijinja::Error> {
    let json = minijinja::filters::tojson(value, indent, args)?;
    Ok(Value::from(json.as_str().unwrap_or_default()))
}

/// HTML escaping (`escape`, `e`) as a value: the escaped text, never template text.
pub(crate) fn escape_html(value: &Value) -> Value {
    let text = match value.as_str() {
        Some(s) => s.to_string(),
        None => yaml::as_text(value),
    };
    Value::from(HtmlEscape(&text).to_string())
}

/// The size of the rendered text with each token replaced by its value (text, or JSON for
/// lists and maps), counted only until past `limit`: a value is measured, never built, so a
/// huge interpolated value costs no memory.
fn output_size(text: &str, slots: &[Value], limit: usize) -> usize {
    let over = |size: usize| size.max(limit).saturating_add(1);
    let mut measured: Vec<Option<usize>> = vec![None; slots.len()];
    let mut size = 0usize;
    let mut rest = text;
    while let Some(start) = rest.find(OPEN) {
        size += start;
        let after = &rest[start + OPEN.len_utf8()..];
        let Some(end) = after.find(CLOSE) else {
            rest = after;
            continue;
        };
        let slot = after[..end]
            .parse::<usize>()
            .ok()
            .filter(|i| *i < slots.len());
        rest = &after[end + CLOSE.len_utf8()..];
        let Some(i) = slot else { continue };
        let cap = limit.saturating_sub(size);
        let len = match measured[i] {
            Some(n) => Some(n),
            None => match slots[i].kind() {
                ValueKind::Seq | ValueKind::Map | ValueKind::Iterable | ValueKind::Plain => {
                    budget::json_len(&slots[i], 0, cap)
                }
                _ => budget::display_len(&slots[i], cap),
            },
        };
        match len {
            Some(n) if n <= cap => {
                measured[i] = Some(n);
                size += n;
            }
            _ => return over(size),
        }
    }
    size + rest.len()
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

/// [`is_ready`] read from a template value in place (no copy of the object is built).
fn is_ready_value(obj: &Value) -> bool {
    let field = |v: &Value, key: &str| v.get_attr(key).ok().filter(|f| !f.is_undefined());
    let text = |v: Option<Value>, want: &str| v.as_ref().and_then(Value::as_str) == Some(want);
    if let Some(conditions) = field(obj, "status").and_then(|s| field(&s, "conditions"))
        && conditions.kind() == ValueKind::Seq
        && let Ok(iter) = conditions.try_iter()
    {
        for c in iter {
            if c.kind() == ValueKind::Map && text(field(&c, "type"), "Ready") {
                return text(field(&c, "status"), "True");
            }
        }
    }
    if text(field(obj, "kind"), "Pod") {
        return text(
            field(obj, "status").and_then(|s| field(&s, "phase")),
            "Running",
        );
    }
    true
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

#[cfg(test)]
mod tests;
