//! Constant folding sized before minijinja does it: the compiler evaluates operators on
//! literals at compile time (`("x" * 99999999) ~ ("x" * 99999999)` is one constant), where the
//! render guards do not run, so a template whose constants would be too big is refused.

use super::TemplateError;
use super::budget::{ELEMENT_BYTES, display_len};
use super::machinery::ast::{BinOp, Expr, ExprKind, Stmt, UnaryOp};

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
            Stmt::Set { target, value } => {
                self.expr(target);
                self.expr(value);
            }
            Stmt::Loop {
                head,
                body,
                otherwise,
            } => {
                head.iter().for_each(|e| self.expr(e));
                self.stmts(body);
                self.stmts(otherwise);
            }
            Stmt::Macro { head, body } => {
                head.iter().for_each(|e| self.expr(e));
                self.stmts(body);
            }
            Stmt::Other { head, bodies } => {
                head.iter().for_each(|e| self.expr(e));
                bodies.iter().for_each(|b| self.stmts(b));
            }
        }
    }

    fn expr(&mut self, expr: &Expr<'_>) {
        let _ = self.fold(expr);
    }

    /// Sizes `expr` if the compiler folds it, checking every constant inside it on the way.
    fn fold(&mut self, expr: &Expr<'_>) -> Option<Folded> {
        let folded = match &expr.kind {
            ExprKind::Const(value) => Some(Folded {
                bytes: display_len(value, usize::MAX).map_or(u128::MAX, |n| n as u128),
                num: number(value),
            }),
            ExprKind::Literal(items) => self.items(items.iter()),
            ExprKind::Unary(op, operand) => {
                let inner = self.fold(operand)?;
                Some(match op {
                    UnaryOp::Not => Folded {
                        bytes: 1,
                        num: None,
                    },
                    UnaryOp::Neg => Folded {
                        bytes: inner.bytes.saturating_add(1),
                        num: inner.num.map(|n| -n),
                    },
                })
            }
            ExprKind::Binary(op, left, right) => {
                let (left, right) = (self.fold(left), self.fold(right));
                binop(*op, left?, right?)
            }
            ExprKind::Compare(operands) => {
                let mut all = true;
                for e in operands {
                    all &= self.fold(e).is_some();
                }
                all.then_some(Folded {
                    bytes: 1,
                    num: None,
                })
            }
            ExprKind::Var(_) => None,
            ExprKind::GetAttr(inner, _) => {
                self.expr(inner);
                None
            }
            ExprKind::Choice(operands) | ExprKind::Apply(operands) => {
                operands.iter().for_each(|e| self.expr(e));
                None
            }
        };
        if let Some(f) = folded
            && f.bytes > self.limit
            && self.over.is_none()
        {
            self.over = Some(expr.line);
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
fn binop(op: BinOp, l: Folded, r: Folded) -> Option<Folded> {
    let sum = l.bytes.saturating_add(r.bytes);
    let number = |num: Option<f64>| Folded { bytes: 40, num };
    let both = l.num.zip(r.num);
    Some(match op {
        BinOp::Concat => Folded {
            bytes: sum,
            num: None,
        },
        BinOp::Add if both.is_some() => number(both.map(|(a, b)| a + b)),
        BinOp::Add => Folded {
            bytes: sum,
            num: None,
        },
        BinOp::Mul => match (l.num, r.num) {
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
        BinOp::Sub => number(both.map(|(a, b)| a - b)),
        BinOp::Div => number(both.map(|(a, b)| a / b)),
        BinOp::FloorDiv => number(both.map(|(a, b)| (a / b).floor())),
        BinOp::Rem => number(both.map(|(a, b)| a % b)),
        BinOp::Pow => number(both.map(|(a, b)| a.powf(b))),
        // `and`/`or` give one of their operands: either may be a repeat count.
        BinOp::Logic => Folded {
            bytes: l.bytes.max(r.bytes),
            num: match both {
                Some((a, b)) => Some(if a.abs() >= b.abs() { a } else { b }),
                None => l.num.or(r.num),
            },
        },
        BinOp::Compare => Folded {
            bytes: 1,
            num: None,
        },
    })
}

/// The line of the first constant in `ast` that folds to more than `limit` bytes.
fn oversized_constant(ast: &Stmt<'_>, limit: usize) -> Option<usize> {
    let mut check = Check {
        limit: limit as u128,
        over: None,
    };
    check.stmt(ast);
    check.over
}

/// Refuses a template whose constants the compiler would fold to more than `limit` bytes.
pub(super) fn refuse_oversized(ast: &Stmt<'_>, limit: usize) -> Result<(), TemplateError> {
    match oversized_constant(ast, limit) {
        Some(line) => Err(TemplateError::Jinja {
            line: Some(line),
            message: format!(
                "a constant expression would build more than the render's memory budget of {limit} bytes"
            ),
        }),
        None => Ok(()),
    }
}
