//! minijinja's template AST read into our own small tree, holding only what `fold` and
//! `lint` look at: a new minijinja syntax node breaks this file, not theirs.

use minijinja::machinery::{ast, parse as parse_template};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Error, Value};

/// An operator on one operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UnaryOp {
    /// `not x`.
    Not,
    /// `-x`.
    Neg,
}

/// An operator on two operands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    /// `~`.
    Concat,
    /// `+`.
    Add,
    /// `*`.
    Mul,
    /// `-`.
    Sub,
    /// `/`.
    Div,
    /// `//`.
    FloorDiv,
    /// `%`.
    Rem,
    /// `**`.
    Pow,
    /// `and`, `or`: one of the operands.
    Logic,
    /// `==`, `!=`, `<`, `<=`, `>`, `>=`, `in`: a boolean.
    Compare,
}

/// An expression and the line it starts on.
#[derive(Debug)]
pub(crate) struct Expr<'a> {
    /// 1-based line within the template.
    pub line: usize,
    /// What it is.
    pub kind: ExprKind<'a>,
}

/// The expressions `fold` and `lint` tell apart; operands are in source order.
#[derive(Debug)]
pub(crate) enum ExprKind<'a> {
    /// A variable.
    Var(&'a str),
    /// A literal.
    Const(Value),
    /// `x.name`.
    GetAttr(Box<Expr<'a>>, &'a str),
    /// `not x`, `-x`.
    Unary(UnaryOp, Box<Expr<'a>>),
    /// `x op y`.
    Binary(BinOp, Box<Expr<'a>>, Box<Expr<'a>>),
    /// A comparison chain `a < b < c`: its operands.
    Compare(Vec<Expr<'a>>),
    /// A list, tuple or map literal: its items (a map's keys, then its values).
    Literal(Vec<Expr<'a>>),
    /// A test or an `if` expression: a boolean or one of its operands, never a new value.
    Choice(Vec<Expr<'a>>),
    /// A subscript, slice, filter or call: its operands and arguments.
    Apply(Vec<Expr<'a>>),
}

/// A statement: what `lint` tells apart, with every expression and body in source order.
#[derive(Debug)]
pub(crate) enum Stmt<'a> {
    /// `{% set target = value %}`.
    Set { target: Expr<'a>, value: Expr<'a> },
    /// A `for` loop: its header (target, iterable, filter), body and `else` body.
    Loop {
        head: Vec<Expr<'a>>,
        body: Vec<Stmt<'a>>,
        otherwise: Vec<Stmt<'a>>,
    },
    /// A macro, or the caller of a call block: its body may run from anywhere, a loop too.
    Macro {
        head: Vec<Expr<'a>>,
        body: Vec<Stmt<'a>>,
    },
    /// Any other statement: its expressions, then its bodies (none for a leaf).
    Other {
        head: Vec<Expr<'a>>,
        bodies: Vec<Vec<Stmt<'a>>>,
    },
}

/// Parses `source` (named `name` in errors) with the default syntax.
pub(crate) fn parse<'a>(source: &'a str, name: &'a str) -> Result<Stmt<'a>, Error> {
    Ok(stmt(&parse_template(
        source,
        name,
        SyntaxConfig::default(),
    )?))
}

fn stmts<'a>(list: &[ast::Stmt<'a>]) -> Vec<Stmt<'a>> {
    list.iter().map(stmt).collect()
}

fn other<'a>(head: Vec<Expr<'a>>, bodies: Vec<Vec<Stmt<'a>>>) -> Stmt<'a> {
    Stmt::Other { head, bodies }
}

fn macro_head<'a>(m: &ast::Macro<'a>, head: &mut Vec<Expr<'a>>) {
    head.extend(m.args.iter().chain(&m.defaults).map(expr));
}

fn stmt<'a>(s: &ast::Stmt<'a>) -> Stmt<'a> {
    use ast::Stmt as S;
    match s {
        S::Template(t) => other(vec![], vec![stmts(&t.children)]),
        S::EmitExpr(e) => other(vec![expr(&e.expr)], vec![]),
        S::EmitRaw(_) | S::Continue(_) | S::Break(_) => other(vec![], vec![]),
        S::ForLoop(f) => Stmt::Loop {
            head: [Some(&f.target), Some(&f.iter), f.filter_expr.as_ref()]
                .into_iter()
                .flatten()
                .map(expr)
                .collect(),
            body: stmts(&f.body),
            otherwise: stmts(&f.else_body),
        },
        S::IfCond(i) => other(
            vec![expr(&i.expr)],
            vec![stmts(&i.true_body), stmts(&i.false_body)],
        ),
        S::WithBlock(w) => other(
            w.assignments
                .iter()
                .flat_map(|(t, v)| [expr(t), expr(v)])
                .collect(),
            vec![stmts(&w.body)],
        ),
        S::Set(s) => Stmt::Set {
            target: expr(&s.target),
            value: expr(&s.expr),
        },
        S::SetBlock(s) => other(
            std::iter::once(&s.target)
                .chain(s.filter.as_ref())
                .map(expr)
                .collect(),
            vec![stmts(&s.body)],
        ),
        S::AutoEscape(a) => other(vec![expr(&a.enabled)], vec![stmts(&a.body)]),
        S::FilterBlock(f) => other(vec![expr(&f.filter)], vec![stmts(&f.body)]),
        S::Block(b) => other(vec![], vec![stmts(&b.body)]),
        S::Import(i) => other(vec![expr(&i.expr), expr(&i.name)], vec![]),
        S::FromImport(i) => {
            let mut head = vec![expr(&i.expr)];
            for (name, alias) in &i.names {
                head.push(expr(name));
                head.extend(alias.as_ref().map(expr));
            }
            other(head, vec![])
        }
        S::Extends(e) => other(vec![expr(&e.name)], vec![]),
        S::Include(i) => other(vec![expr(&i.name)], vec![]),
        S::Macro(m) => {
            let mut head = Vec::new();
            macro_head(m, &mut head);
            Stmt::Macro {
                head,
                body: stmts(&m.body),
            }
        }
        S::CallBlock(c) => {
            let mut head = vec![expr(&c.call.expr)];
            args(&c.call.args, &mut head);
            macro_head(&c.macro_decl, &mut head);
            Stmt::Macro {
                head,
                body: stmts(&c.macro_decl.body),
            }
        }
        S::Do(d) => {
            let mut head = vec![expr(&d.call.expr)];
            args(&d.call.args, &mut head);
            other(head, vec![])
        }
    }
}

fn args<'a>(list: &[ast::CallArg<'a>], out: &mut Vec<Expr<'a>>) {
    out.extend(list.iter().map(|a| match a {
        ast::CallArg::Pos(e)
        | ast::CallArg::Kwarg(_, e)
        | ast::CallArg::PosSplat(e)
        | ast::CallArg::KwargSplat(e) => expr(e),
    }));
}

fn boxed<'a>(e: &ast::Expr<'a>) -> Box<Expr<'a>> {
    Box::new(expr(e))
}

fn expr<'a>(e: &ast::Expr<'a>) -> Expr<'a> {
    use ast::Expr as E;
    let all = |items: &mut dyn Iterator<Item = &ast::Expr<'a>>| items.map(expr).collect();
    let kind =
        match e {
            E::Var(v) => ExprKind::Var(v.id),
            E::Const(c) => ExprKind::Const(c.value.clone()),
            E::GetAttr(g) => ExprKind::GetAttr(boxed(&g.expr), g.name),
            E::UnaryOp(u) => ExprKind::Unary(
                match u.op {
                    ast::UnaryOpKind::Not => UnaryOp::Not,
                    ast::UnaryOpKind::Neg => UnaryOp::Neg,
                },
                boxed(&u.expr),
            ),
            E::BinOp(b) => ExprKind::Binary(bin_op(b.op), boxed(&b.left), boxed(&b.right)),
            E::Compare(c) => ExprKind::Compare(all(
                &mut std::iter::once(&c.expr).chain(c.ops.iter().map(|op| &op.expr))
            )),
            E::List(l) => ExprKind::Literal(all(&mut l.items.iter())),
            E::Tuple(t) => ExprKind::Literal(all(&mut t.items.iter())),
            E::Map(m) => ExprKind::Literal(all(&mut m.keys.iter().chain(&m.values))),
            E::IfExpr(i) => ExprKind::Choice(all(&mut [&i.test_expr, &i.true_expr]
                .into_iter()
                .chain(i.false_expr.as_ref()))),
            E::Test(t) => {
                let mut items = vec![expr(&t.expr)];
                args(&t.args, &mut items);
                ExprKind::Choice(items)
            }
            E::GetItem(g) => ExprKind::Apply(vec![expr(&g.expr), expr(&g.subscript_expr)]),
            E::Slice(s) => ExprKind::Apply(all(&mut std::iter::once(&s.expr)
                .chain([&s.start, &s.stop, &s.step].into_iter().flatten()))),
            E::Filter(f) => {
                let mut items: Vec<Expr<'a>> = f.expr.iter().map(expr).collect();
                args(&f.args, &mut items);
                ExprKind::Apply(items)
            }
            E::Call(c) => {
                let mut items = vec![expr(&c.expr)];
                args(&c.args, &mut items);
                ExprKind::Apply(items)
            }
        };
    Expr {
        line: usize::from(e.span().start_line),
        kind,
    }
}

fn bin_op(op: ast::BinOpKind) -> BinOp {
    use ast::BinOpKind as K;
    match op {
        K::Concat => BinOp::Concat,
        K::Add => BinOp::Add,
        K::Mul => BinOp::Mul,
        K::Sub => BinOp::Sub,
        K::Div => BinOp::Div,
        K::FloorDiv => BinOp::FloorDiv,
        K::Rem => BinOp::Rem,
        K::Pow => BinOp::Pow,
        K::ScAnd | K::ScOr => BinOp::Logic,
        K::Eq | K::Ne | K::Lt | K::Lte | K::Gt | K::Gte | K::In => BinOp::Compare,
    }
}
