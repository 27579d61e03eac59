//! Static warnings for `ruleop check`: template patterns that grow a value on each loop
//! iteration faster than linearly, which the render budget will stop at run time.

use super::machinery::ast::{self, Expr, ExprKind, Stmt};

/// `(line, message)` for each `{% set x = … %}` in a loop whose new value uses `x` twice or
/// more (`x ~ x`, `[x, x]`, `x + x`): it doubles on every iteration.
pub fn lint(source: &str) -> Vec<(usize, String)> {
    let Ok(ast) = ast::parse(source, "<lint>") else {
        // Compilation reports syntax errors.
        return Vec::new();
    };
    let mut found = Vec::new();
    walk(&ast, false, &mut found);
    found
}

fn walk(stmt: &Stmt<'_>, in_loop: bool, found: &mut Vec<(usize, String)>) {
    let body = |stmts: &[Stmt<'_>], in_loop: bool, found: &mut Vec<(usize, String)>| {
        stmts.iter().for_each(|s| walk(s, in_loop, found));
    };
    match stmt {
        Stmt::Loop {
            body: looped,
            otherwise,
            ..
        } => {
            body(looped, true, found);
            body(otherwise, in_loop, found);
        }
        // A macro may be called from a loop: its body counts as one.
        Stmt::Macro { body: called, .. } => body(called, true, found),
        Stmt::Other { bodies, .. } => bodies.iter().for_each(|b| body(b, in_loop, found)),
        Stmt::Set { target, value } if in_loop => {
            if let Some(target) = path(target) {
                let uses = uses(value, &target);
                if uses >= 2 {
                    found.push((
                        value.line,
                        format!(
                            "`{target}` is used {uses} times in its own new value inside a loop: it grows exponentially with the iterations"
                        ),
                    ));
                }
            }
        }
        Stmt::Set { .. } => {}
    }
}

/// `x` or `ns.x`, the names a `set` can assign.
fn path(expr: &Expr<'_>) -> Option<String> {
    match &expr.kind {
        ExprKind::Var(id) => Some(id.to_string()),
        ExprKind::GetAttr(inner, name) => Some(format!("{}.{}", path(inner)?, name)),
        _ => None,
    }
}

/// How many times `target` is read in `expr`.
fn uses(expr: &Expr<'_>, target: &str) -> usize {
    if path(expr).as_deref() == Some(target) {
        return 1;
    }
    let all = |exprs: &[Expr<'_>]| exprs.iter().map(|e| uses(e, target)).sum();
    match &expr.kind {
        ExprKind::Var(_) | ExprKind::Const(_) => 0,
        ExprKind::GetAttr(inner, _) | ExprKind::Unary(_, inner) => uses(inner, target),
        ExprKind::Binary(_, left, right) => uses(left, target) + uses(right, target),
        // A comparison or a choice yields a boolean or one operand: no growth.
        ExprKind::Compare(_) | ExprKind::Choice(_) => 0,
        ExprKind::Apply(operands) | ExprKind::Literal(operands) => all(operands),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_values_that_double_in_loops() {
        let found = lint(
            "{% set ns = namespace(s='x', l=[]) %}\n{% for i in range(9) %}\n{% set ns.s = ns.s ~ ns.s %}\n{% set ns.l = [ns.l, ns.l] %}\n{% set ns.n = ns.s if i else ns.s %}\n{% set ns.k = ns.k ~ i %}\n{% endfor %}\n{% set x = x ~ x %}",
        );
        let lines: Vec<usize> = found.iter().map(|(l, _)| *l).collect();
        assert_eq!(lines, [3, 4], "{found:?}");
        assert!(found[0].1.contains("`ns.s` is used 2 times"), "{found:?}");
        assert!(
            lint("{% for %}").is_empty(),
            "syntax errors are compile errors"
        );
    }
}
