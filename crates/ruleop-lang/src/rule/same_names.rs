//! `check`: two templates that provably render one object (same group and kind, the same
//! `metadata.name` text, the same namespace) fail every plan (`DuplicateName`), so the rule
//! is refused where both are written. What cannot be proved is left to the planner.

use minijinja::Environment;
use serde_json::Value as Json;

use super::compile::Checker;
use super::{RuleSpec, Scope, split_api_version};
use crate::reason::DUPLICATE_NAME;

/// Variables that differ between the copies of one child (`forEach`, `replicas`): a name
/// reading one of them is not one name.
const PER_COPY: [&str; 4] = ["item", "key", "name", "index"];

/// Stands for the `i`-th interpolation while the metadata block is parsed as YAML (private
/// use characters: they cannot be confused with the author's text).
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';

/// What a template says of the object it renders, read without rendering it.
struct Identity {
    /// `spec.children[0].template` or `spec.finalizer.cleanup[0].template`.
    path: String,
    /// `child "a"` or `cleanup step "b"`.
    what: String,
    group: String,
    kind: String,
    /// The name as written, each interpolation as `{{ expression }}` (whitespace normalised).
    name: String,
    namespace: Option<String>,
    /// The 1-based line of the name inside the template.
    line: usize,
}

/// Reports each template whose object is provably the object of an earlier one.
pub(super) fn check(c: &mut Checker<'_>, spec: &RuleSpec) {
    let children = spec
        .children
        .iter()
        .enumerate()
        // A child with `when` may exclude the other (two renderings of one object, chosen
        // by the parent): not provable.
        .filter(|(_, ch)| ch.when.is_none())
        .map(|(i, ch)| {
            (
                format!("spec.children[{i}].template"),
                format!("child {:?}", ch.name),
                &ch.api_version,
                &ch.kind,
                &ch.template,
            )
        });
    let steps = spec.finalizer.iter().flat_map(|f| {
        f.cleanup.iter().enumerate().map(|(i, s)| {
            (
                format!("spec.finalizer.cleanup[{i}].template"),
                format!("cleanup step {:?}", s.name),
                &s.api_version,
                &s.kind,
                &s.template,
            )
        })
    });
    let mut known: Vec<Identity> = Vec::new();
    for (path, what, api_version, kind, template) in children.chain(steps) {
        let Some((name, namespace, line)) = read(template) else {
            continue;
        };
        let found = Identity {
            path,
            what,
            group: split_api_version(api_version).0.to_string(),
            kind: kind.clone(),
            name,
            // A namespaced parent's children all live in its namespace.
            namespace: namespace.filter(|_| spec.parent.scope == Scope::Cluster),
            line,
        };
        if let Some(first) = known.iter().find(|k| {
            (&k.group, &k.kind, &k.name, &k.namespace)
                == (&found.group, &found.kind, &found.name, &found.namespace)
        }) {
            let location = c.spans().line_in(&found.path, found.line);
            let first_line = c.spans().line_in(&first.path, first.line).line;
            c.error_at(
                location,
                format!(
                    "{} renders {} {:?}, as {} does (line {first_line}): one object cannot have two renderings, every plan would fail ({DUPLICATE_NAME}); give each its own name",
                    found.what, found.kind, found.name, first.what
                ),
            );
            continue;
        }
        known.push(found);
    }
}

/// The `metadata.name` and `metadata.namespace` a template renders, as written, and the
/// name's line; `None` when they cannot be read without rendering: a statement (`{% %}`)
/// before or in the metadata block (`set` rebinds, `if` chooses), a per-copy variable, or
/// no single top-level `metadata` mapping.
fn read(template: &str) -> Option<(String, Option<String>, usize)> {
    if template.contains(OPEN) || template.contains(CLOSE) {
        return None;
    }
    let lines: Vec<&str> = template.lines().collect();
    let top = |l: &&str| !l.is_empty() && !l.starts_with([' ', '\t', '#']);
    let mut starts = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| top(l) && l.starts_with("metadata:"));
    let (start, _) = starts.next()?;
    if starts.next().is_some() {
        return None;
    }
    let end = lines
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, l)| top(l))
        .map_or(lines.len(), |(i, _)| i);
    if lines[..end]
        .iter()
        .any(|l| l.contains("{%") || l.contains("{#"))
    {
        return None;
    }
    let mut expressions: Vec<String> = Vec::new();
    let block = tokens(&lines[start..end].join("\n"), &mut expressions)?;
    let env = Environment::new();
    for e in &expressions {
        let read = env.compile_expression(e).ok()?.undeclared_variables(false);
        if PER_COPY.iter().any(|v| read.contains(*v)) {
            return None;
        }
    }
    let doc: Json = crate::yaml::from_str(&block).ok()?;
    let text = |field: &str| match doc.get("metadata")?.get(field)? {
        Json::String(s) => Some(untoken(s, &expressions)),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let name = text("name")?;
    let line = (start..end)
        .find(|&i| lines[i].trim_start().starts_with("name:"))
        .unwrap_or(start);
    Some((name, text("namespace"), line + 1))
}

/// `text` with each `{{ … }}` replaced by a token indexing `expressions`; `None` when an
/// interpolation is not closed.
fn tokens(text: &str, expressions: &mut Vec<String>) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let inner = &rest[open + 2..];
        let close = inner.find("}}")?;
        let expression = inner[..close]
            .trim_start_matches(['-', '+'])
            .trim_end_matches(['-', '+'])
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let index = match expressions.iter().position(|e| *e == expression) {
            Some(i) => i,
            None => {
                expressions.push(expression);
                expressions.len() - 1
            }
        };
        out.push(OPEN);
        out.push_str(&index.to_string());
        out.push(CLOSE);
        rest = &inner[close + 2..];
    }
    out.push_str(rest);
    Some(out)
}

/// `text` with its tokens written back as `{{ expression }}`.
fn untoken(text: &str, expressions: &[String]) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(open) = rest.find(OPEN) {
        out.push_str(&rest[..open]);
        let after = &rest[open + OPEN.len_utf8()..];
        let Some(close) = after.find(CLOSE) else {
            break;
        };
        let expression = after[..close]
            .parse::<usize>()
            .ok()
            .and_then(|i| expressions.get(i))
            .map_or("", String::as_str);
        out.push_str("{{ ");
        out.push_str(expression);
        out.push_str(" }}");
        rest = &after[close + CLOSE.len_utf8()..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::read as name;

    #[test]
    fn names_are_read_in_block_and_flow_form_whitespace_normalised() {
        let block = "kind: ConfigMap\nmetadata:\n  labels: {a: b}\n  name: {{parent.metadata.name}}-content\ndata: {}\n";
        let flow = "metadata: {name: \"{{ parent.metadata.name }}-content\"}\ndata:\n  x: '{{ parent.spec.x }}'\n";
        assert_eq!(
            name(block),
            Some(("{{ parent.metadata.name }}-content".into(), None, 4))
        );
        assert_eq!(
            name(flow),
            Some(("{{ parent.metadata.name }}-content".into(), None, 1))
        );
        let with_ns = "metadata:\n  name: fixed\n  namespace: '{{ parent.metadata.name }}'\n";
        assert_eq!(
            name(with_ns),
            Some(("fixed".into(), Some("{{ parent.metadata.name }}".into()), 2))
        );
    }

    #[test]
    fn what_rendering_could_change_is_not_read() {
        // A statement may rebind or choose; a per-copy variable differs between copies.
        for template in [
            "{% set n = parent.metadata.name %}\nmetadata: {name: \"{{ n }}\"}\n",
            "metadata:\n{% if parent.spec.a %}\n  name: a\n{% else %}\n  name: b\n{% endif %}\n",
            "metadata: {name: \"{{ parent.metadata.name }}-{{ key }}\"}\n",
            "metadata: {name: \"{{ item.name }}\"}\n",
            "metadata:\n  name: {{ name }}\n",
            "data: {}\n",
            "metadata: {name: a}\nmetadata: {name: b}\n",
        ] {
            assert_eq!(name(template), None, "{template}");
        }
        // A statement after the metadata block cannot change it.
        assert_eq!(
            name("metadata: {name: a}\ndata:\n  {% for i in [1] %}k{{ i }}: v\n  {% endfor %}\n")
                .map(|(n, _, _)| n),
            Some("a".into())
        );
    }
}
