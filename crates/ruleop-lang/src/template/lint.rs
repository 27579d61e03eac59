//! Static warnings for `ruleop check`: template patterns that grow a value on each loop
//! iteration faster than linearly, which the render budget will stop at run time.

use minijinja::machinery::ast::{CallArg, Expr, Stmt};
use minijinja::machinery::parse;
use minijinja::syntax::SyntaxConfig;

/// `(line, message)` for each `{% set x = … %}` in a loop whose new value uses `x` twice or
/// more (`x ~ x`, `[x, x]`, `x + x`): it doubles on every iteration.
pub fn lint(source: &str) -> Vec<(usize, String)> {
    let Ok(ast) = parse(source, "<lint>", SyntaxConfig::default()) else {
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
        Stmt::Template(t) => body(&t.children, in_loop, found),
        Stmt::ForLoop(f) => {
            body(&f.body, true, found);
            body(&f.else_body, in_loop, found);
        }
        Stmt::IfCond(i) => {
            body(&i.true_body, in_loop, found);
            body(&i.false_body, in_loop, found);
        }
        Stmt::WithBlock(w) => body(&w.body, in_loop, found),
        Stmt::SetBlock(s) => body(&s.body, in_loop, found),
        Stmt::AutoEscape(a) => body(&a.body, in_loop, found),
        Stmt::FilterBlock(f) => body(&f.body, in_loop, found),
        Stmt::Block(b) => body(&b.body, in_loop, found),
        // A macro may be called from a loop: its body counts as one.
        Stmt::Macro(m) => body(&m.body, true, found),
        Stmt::CallBlock(c) => body(&c.macro_decl.body, true, found),
        Stmt::Set(s) if in_loop => {
            if let Some(target) = path(&s.target) {
                let uses = uses(&s.expr, &target);
                if uses >= 2 {
                    found.push((
                        usize::from(s.expr.span().start_line),
                        format!(
                            "`{target}` is used {uses} times in its own new value inside a loop: it grows exponentially with the iterations"
                        ),
                    ));
                }
            }
        }
        _ => {}
    }
}

/// `x` or `ns.x`, the names a `set` can assign.
fn path(expr: &Expr<'_>) -> Option<String> {
    match expr {
        Expr::Var(v) => Some(v.id.to_string()),
        Expr::GetAttr(g) => Some(format!("{}.{}", path(&g.expr)?, g.name)),
        _ => None,
    }
}

/// How many times `target` is read in `expr`.
fn uses(expr: &Expr<'_>, target: &str) -> usize {
    if path(expr).as_deref() == Some(target) {
        return 1;
    }
    let all = |exprs: &mut dyn Iterator<Item = &Expr<'_>>| exprs.map(|e| uses(e, target)).sum();
    let args = |args: &[CallArg<'_>]| -> usize {
        args.iter()
            .map(|a| match a {
                CallArg::Pos(e)
                | CallArg::Kwarg(_, e)
                | CallArg::PosSplat(e)
                | CallArg::KwargSplat(e) => uses(e, target),
            })
            .sum()
    };
    match expr {
        Expr::Var(_) | Expr::Const(_) => 0,
        Expr::GetAttr(g) => uses(&g.expr, target),
        Expr::GetItem(g) => uses(&g.expr, target) + uses(&g.subscript_expr, target),
        Expr::Slice(s) => {
            all(&mut std::iter::once(&s.expr)
                .chain([&s.start, &s.stop, &s.step].into_iter().flatten()))
        }
        Expr::UnaryOp(u) => uses(&u.expr, target),
        Expr::BinOp(b) => uses(&b.left, target) + uses(&b.right, target),
        // A comparison or a choice yields a boolean or one operand: no growth.
        Expr::Compare(_) | Expr::IfExpr(_) | Expr::Test(_) => 0,
        Expr::Filter(f) => f.expr.as_ref().map_or(0, |e| uses(e, target)) + args(&f.args),
        Expr::Call(c) => uses(&c.expr, target) + args(&c.args),
        Expr::List(l) => all(&mut l.items.iter()),
        Expr::Tuple(t) => all(&mut t.items.iter()),
        Expr::Map(m) => all(&mut m.keys.iter().chain(&m.values)),
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
