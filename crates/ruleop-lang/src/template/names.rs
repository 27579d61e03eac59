//! Static checks of compiled templates: filters, tests and functions that do not exist are
//! found when the rule is loaded, not when a parent first renders the template.

use std::collections::BTreeSet;

use minijinja::{Environment, ErrorKind};

use crate::template::Templates;
use crate::template::machinery::Op;

/// A name a template uses that nothing defines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unknown {
    /// 1-based line within the template.
    pub line: usize,
    /// What is wrong and what to do.
    pub message: String,
}

/// Whether `probe` (a template using one filter or test) fails for want of it.
fn missing(env: &Environment<'static>, probe: &str, kind: ErrorKind) -> bool {
    env.render_str(probe, ()).is_err_and(|e| e.kind() == kind)
}

/// The unknown filters, tests and functions of the template registered as `name`, each
/// reported once at its first use.
pub fn unknown_names(templates: &Templates, name: &str) -> Vec<Unknown> {
    let env = templates.environment();
    let Some(blocks) = templates.program(name) else {
        return Vec::new();
    };
    // Names the template defines itself (macros, `set`, loop variables) may be called.
    let mut local = BTreeSet::new();
    let mut uses = Vec::new();
    for block in &blocks {
        for (idx, op) in block.ops() {
            let line = block.line(idx);
            match op {
                Op::StoreLocal(n) | Op::BuildMacro(n) => {
                    local.insert(n.to_string());
                }
                Op::CallFilter(n) => uses.push(("filter", n.to_string(), line)),
                Op::Test(n) => uses.push(("test", n.to_string(), line)),
                Op::CallFunction(n) => uses.push(("function", n.to_string(), line)),
                _ => {}
            }
        }
    }
    let globals: BTreeSet<&str> = env.globals().map(|(n, _)| n).collect();
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for (what, n, line) in uses {
        if !seen.insert((what, n.clone())) {
            continue;
        }
        let unknown = match what {
            "filter" => missing(env, &format!("{{{{ 1 | {n} }}}}"), ErrorKind::UnknownFilter),
            "test" => missing(env, &format!("{{{{ 1 is {n} }}}}"), ErrorKind::UnknownTest),
            _ => !globals.contains(n.as_str()) && !local.contains(&n),
        };
        if unknown {
            out.push(Unknown {
                line,
                message: format!(
                    "unknown {what} `{n}`: it is neither a minijinja builtin nor one ruleop adds \
                     (see docs/rules.md, Templates); check the spelling"
                ),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Limits;

    fn check(source: &str) -> Vec<(usize, String)> {
        let mut t = Templates::new(&Limits::default());
        t.add_template("t", source).unwrap();
        unknown_names(&t, "t")
            .into_iter()
            .map(|u| (u.line, u.message.split(':').next().unwrap().to_string()))
            .collect()
    }

    #[test]
    fn unknown_filters_tests_and_functions_are_found_once_at_their_line() {
        let found = check(
            "a: {{ x | upper }}\nb: {{ x | sha265 }}\nc: {{ x | sha265 }}\nd: {{ x is evenish }}\ne: {{ nowt() }}\n",
        );
        assert_eq!(
            found,
            [
                (2, "unknown filter `sha265`".to_string()),
                (4, "unknown test `evenish`".to_string()),
                (5, "unknown function `nowt`".to_string()),
            ]
        );
    }

    #[test]
    fn builtins_ruleop_additions_and_macros_are_known() {
        let source = "{% macro m(v) %}{{ v }}{% endmacro %}\
            {{ m(1) }}{{ range(3) | list | length }}{{ x | default(1) | tojson }}\
            {{ x is defined }}{{ ready(x) }}{{ x is ready }}{{ dict(a=1) | items | list }}";
        assert_eq!(check(source), []);
    }
}
