//! Constant folding sized before minijinja does it: the compiler evaluates operators on
//! literals at compile time (`("x" * 99999999) ~ ("x" * 99999999)` is one constant), where the
//! render guards do not run, so a template whose constants would be too big is refused.

use minijinja::machinery::ast::{BinOpKind, CallArg, Expr, Stmt, UnaryOpKind};

use super::budget::{ELEMENT_BYTES, display_len};

/// What a folded constant may hold at most.
#[derive(Clone, Copy)]
struct Folded {
    /// Bytes of its text and elements.
    bytes: u128,
    /// Its value, when a number (it may be a repeat count).
    num: Option<f64>,
}

/// The first constant over `limit` bytes: its line.
struct Check {
    limit: u128,
    over: Option<usize>,
}

impl Check {
    fn stmts(&mut self, stmts: &[Stmt<'_>]) {
        for s in stmts {
            self.stmt(s);
        }
    }

    fn stmt(&mut self, stmt: &Stmt<'_>) {
        match stmt {
            Stmt::Template(t) => self.stmts(&t.children),
            Stmt::EmitExpr(e) => self.expr(&e.expr),
            Stmt::EmitRaw(_) | Stmt::Continue(_) | Stmt::Break(_) => {}
            Stmt::ForLoop(f) => {
                self.expr(&f.target);
                self.expr(&f.iter);
                self.opt(f.filter_expr.as_ref());
                self.stmts(&f.body);
                self.stmts(&f.else_body);
            }
            Stmt::IfCond(i) => {
                self.expr(&i.expr);
                self.stmts(&i.true_body);
                self.stmts(&i.false_body);
            }
            Stmt::WithBlock(w) => {
                for (target, value) in &w.assignments {
                    self.expr(target);
                    self.expr(value);
                }
                self.stmts(&w.body);
            }
            Stmt::Set(s) => {
                self.expr(&s.target);
                self.expr(&s.expr);
            }
            Stmt::SetBlock(s) => {
                self.expr(&s.target);
                self.opt(s.filter.as_ref());
                self.stmts(&s.body);
            }
            Stmt::AutoEscape(a) => {
                self.expr(&a.enabled);
                self.stmts(&a.body);
            }
            Stmt::FilterBlock(f) => {
                self.expr(&f.filter);
                self.stmts(&f.body);
            }
            Stmt::Block(b) => self.stmts(&b.body),
            Stmt::Import(i) => {
                self.expr(&i.expr);
                self.expr(&i.name);
            }
            Stmt::FromImport(i) => {
                self.expr(&i.expr);
                for (name, alias) in &i.names {
                    self.expr(name);
                    self.opt(alias.as_ref());
                }
            }
            Stmt::Extends(e) => self.expr(&e.name),
            Stmt::Include(i) => self.expr(&i.name),
            Stmt::Macro(m) => {
                m.args.iter().chain(&m.defaults).for_each(|e| self.expr(e));
                self.stmts(&m.body);
            }
            Stmt::CallBlock(c) => {
                self.expr(&c.call.expr);
                self.args(&c.call.args);
                let m = &c.macro_decl;
                m.args.iter().chain(&m.defaults).for_each(|e| self.expr(e));
                self.stmts(&m.body);
            }
            Stmt::Do(d) => {
                self.expr(&d.call.expr);
                self.args(&d.call.args);
            }
        }
    }

    fn opt(&mut self, expr: Option<&Expr<'_>>) {
        if let Some(e) = expr {
            self.expr(e);
        }
    }

    fn args(&mut self, args: &[CallArg<'_>]) {
        for a in args {
            match a {
                CallArg::Pos(e)
                | CallArg::Kwarg(_, e)
                | CallArg::PosSplat(e)
                | CallArg::KwargSplat(e) => self.expr(e),
            }
        }
    }

    fn expr(&mut self, expr: &Expr<'_>) {
        let _ = self.fold(expr);
    }

    /// Sizes `expr` if the compiler folds it, checking every constant inside it on the way.
    fn fold(&mut self, expr: &Expr<'_>) -> Option<Folded> {
        let folded = match expr {
            Expr::Const(c) => Some(Folded {
                bytes: display_len(&c.value, usize::MAX).map_or(u128::MAX, |n| n as u128),
                num: number(&c.value),
            }),
            Expr::List(l) => self.items(l.items.iter()),
            Expr::Tuple(t) => self.items(t.items.iter()),
            Expr::Map(m) => self.items(m.keys.iter().chain(&m.values)),
            Expr::UnaryOp(u) => {
                let inner = self.fold(&u.expr)?;
                Some(match u.op {
                    UnaryOpKind::Not => Folded {
                        bytes: 1,
                        num: None,
                    },
                    UnaryOpKind::Neg => Folded {
                        bytes: inner.bytes.saturating_add(1),
                        num: inner.num.map(|n| -n),
                    },
                })
            }
            Expr::BinOp(b) => {
                let (left, right) = (self.fold(&b.left), self.fold(&b.right));
                binop(b.op, left?, right?)
            }
            Expr::Compare(c) => {
                let mut all = self.fold(&c.expr).is_some();
                for op in &c.ops {
                    all &= self.fold(&op.expr).is_some();
                }
                all.then_some(Folded {
                    bytes: 1,
                    num: None,
                })
            }
            Expr::Var(_) => None,
            Expr::Slice(s) => {
                self.expr(&s.expr);
                for e in [&s.start, &s.stop, &s.step].into_iter().flatten() {
                    self.expr(e);
                }
                None
            }
            Expr::IfExpr(i) => {
                self.expr(&i.test_expr);
                self.expr(&i.true_expr);
                self.opt(i.false_expr.as_ref());
                None
            }
            Expr::Filter(f) => {
                self.opt(f.expr.as_ref());
                self.args(&f.args);
                None
            }
            Expr::Test(t) => {
                self.expr(&t.expr);
                self.args(&t.args);
                None
            }
            Expr::GetAttr(g) => {
                self.expr(&g.expr);
                None
            }
            Expr::GetItem(g) => {
                self.expr(&g.expr);
                self.expr(&g.subscript_expr);
                None
            }
            Expr::Call(c) => {
                self.expr(&c.expr);
                self.args(&c.args);
                None
            }
        };
        if let Some(f) = folded
            && f.bytes > self.limit
            && self.over.is_none()
        {
            self.over = Some(expr.span().start_line as usize);
        }
        folded
    }

    /// A literal list, tuple or map: constant when every item is.
    fn items<'a, 'e: 'a>(&mut self, items: impl Iterator<Item = &'a Expr<'e>>) -> Option<Folded> {
        let mut bytes = Some(0u128);
        for item in items {
            let f = self.fold(item);
            bytes = match (bytes, f) {
                (Some(b), Some(f)) => Some(
                    b.saturating_add(f.bytes)
                        .saturating_add(ELEMENT_BYTES as u128),
                ),
                _ => None,
            };
        }
        bytes.map(|bytes| Folded { bytes, num: None })
    }
}

/// A constant's numeric value (booleans count as 0 and 1, as in repetition).
fn number(v: &minijinja::Value) -> Option<f64> {
    match v.kind() {
        minijinja::value::ValueKind::Number => f64::try_from(v.clone()).ok(),
        minijinja::value::ValueKind::Bool => Some(f64::from(u8::from(v.is_true()))),
        _ => None,
    }
}

/// What folding `op` on two constants may build.
fn binop(op: BinOpKind, l: Folded, r: Folded) -> Option<Folded> {
    let sum = l.bytes.saturating_add(r.bytes);
    let number = |num: Option<f64>| Folded { bytes: 40, num };
    let both = l.num.zip(r.num);
    Some(match op {
        BinOpKind::Concat => Folded {
            bytes: sum,
            num: None,
        },
        BinOpKind::Add if both.is_some() => number(both.map(|(a, b)| a + b)),
        BinOpKind::Add => Folded {
            bytes: sum,
            num: None,
        },
        BinOpKind::Mul => match (l.num, r.num) {
            (Some(a), Some(b)) => number(Some(a * b)),
            // A string or list repeated `n` times (`as` saturates).
            (Some(n), None) | (None, Some(n)) => Folded {
                bytes: l.bytes.max(r.bytes).saturating_mul(n.abs().ceil() as u128),
                num: None,
            },
            (None, None) => Folded {
                bytes: sum,
                num: None,
            },
        },
        BinOpKind::Sub => number(both.map(|(a, b)| a - b)),
        BinOpKind::Div => number(both.map(|(a, b)| a / b)),
        BinOpKind::FloorDiv => number(both.map(|(a, b)| (a / b).floor())),
        BinOpKind::Rem => number(both.map(|(a, b)| a % b)),
        BinOpKind::Pow => number(both.map(|(a, b)| a.powf(b))),
        // `and`/`or` give one of their operands: either may be a repeat count.
        BinOpKind::ScAnd | BinOpKind::ScOr => Folded {
            bytes: l.bytes.max(r.bytes),
            num: match both {
                Some((a, b)) => Some(if a.abs() >= b.abs() { a } else { b }),
                None => l.num.or(r.num),
            },
        },
        BinOpKind::Eq
        | BinOpKind::Ne
        | BinOpKind::Lt
        | BinOpKind::Lte
        | BinOpKind::Gt
        | BinOpKind::Gte
        | BinOpKind::In => Folded {
            bytes: 1,
            num: None,
        },
    })
}

/// The line of the first constant in `ast` that folds to more than `limit` bytes.
pub(super) fn oversized_constant(ast: &Stmt<'_>, limit: usize) -> Option<usize> {
    let mut check = Check {
        limit: limit as u128,
        over: None,
    };
    check.stmt(ast);
    check.over
}
