//! Tripwires for a minijinja bump: `unstable_machinery` has no semver promise, so the pinned
//! version and the shape of what this module reads out of it are checked in.

use super::ast;
use super::program::Program;

/// What to do when a check here fails.
const BUMPED: &str = "minijinja changed: re-check template/machinery (bytecode patches, Op, \
                      the AST conversion) against the new version, then update these tests";

/// The version this module was written against.
const PINNED: &str = "3.0.5";

/// A template touching every op the analyses read and every operator `patch` replaces.
const FIXED: &str = "x{% for p in related.pods if p %}{{ p.metadata['name'] ~ loop.index }}{% endfor %}\n\
{% set n = a[1:2] + b * 2 %}{{ n | upper if c in d else f(1) }}{% if e is defined %}y{% endif %}\n\
{% macro m(v) %}{{ v }}{{ w }}{% endmacro %}{% block b %}{{ m(1) }}{% endblock %}";

/// Our ops of `FIXED`, compiled and patched, with their lines.
const FIXED_OPS: &str = r#"
0:1: Const('x')
0:1: Emit
0:1: Const(0)
0:1: Lookup("related")
0:1: GetAttr("pods")
0:1: PushLoop
0:1: Iterate
0:1: Other
0:1: StoreLocal("p")
0:1: Lookup("p")
0:1: Other
0:1: Other
0:1: Const(1)
0:1: CallFilter("__ruleop_add")
0:1: Other
0:1: Other
0:1: Other
0:1: Other
0:1: Other
0:1: PushLoop
0:1: Iterate
0:1: StoreLocal("p")
0:1: Lookup("p")
0:1: GetAttr("metadata")
0:1: Const('name')
0:1: GetItem
0:1: Lookup("loop")
0:1: GetAttr("index")
0:1: CallFilter("__ruleop_concat")
0:1: Emit
0:1: Other
0:1: Other
0:1: Const('\n')
0:1: Emit
0:2: Lookup("a")
0:2: Const(1)
0:2: Const(2)
0:2: Const(None)
0:2: CallFilter("__ruleop_slice")
0:2: Lookup("b")
0:2: Const(2)
0:2: CallFilter("__ruleop_mul")
0:2: CallFilter("__ruleop_add")
0:2: StoreLocal("n")
0:2: Lookup("c")
0:2: Lookup("d")
0:2: CallFilter("__ruleop_in")
0:2: Other
0:2: Lookup("n")
0:2: CallFilter("upper")
0:2: Other
0:2: Const(1)
0:2: CallFunction("f")
0:2: Emit
0:2: Lookup("e")
0:2: Test("defined")
0:2: Other
0:2: Const('y')
0:2: Emit
0:2: Const('\n')
0:2: Emit
0:3: Other
0:3: StoreLocal("v")
0:3: Lookup("v")
0:3: Emit
0:3: Lookup("w")
0:3: Emit
0:3: Other
0:3: Enclose("w")
0:3: Other
0:3: Const(['v'])
0:3: BuildMacro("m")
0:3: StoreLocal("m")
0:3: Other
1:3: Const(1)
1:3: CallFunction("m")
1:3: Emit
"#;

/// Our AST of a small template.
const SMALL: &str = "{% for i in x %}{% set y = y ~ -i %}{% endfor %}{{ [1, 'a'] | f(k=2) }}";
const SMALL_AST: &str = r#"Other { head: [], bodies: [[Loop { head: [Expr { line: 1, kind: Var("i") }, Expr { line: 1, kind: Var("x") }], body: [Set { target: Expr { line: 1, kind: Var("y") }, value: Expr { line: 1, kind: Binary(Concat, Expr { line: 1, kind: Var("y") }, Expr { line: 1, kind: Unary(Neg, Expr { line: 1, kind: Var("i") }) }) } }], otherwise: [] }, Other { head: [Expr { line: 1, kind: Apply([Expr { line: 1, kind: Literal([Expr { line: 1, kind: Const(1) }, Expr { line: 1, kind: Const('a') }]) }, Expr { line: 1, kind: Const(2) }]) }], bodies: [] }]] }"#;

#[test]
fn the_pinned_minijinja_is_the_one_in_cargo_lock() {
    let lock = include_str!("../../../../../Cargo.lock");
    let locked = lock
        .split("[[package]]")
        .find(|p| p.contains("\nname = \"minijinja\"\n"))
        .and_then(|p| p.lines().find_map(|l| l.strip_prefix("version = ")))
        .map(|v| v.trim_matches('"'));
    assert_eq!(locked, Some(PINNED), "{BUMPED}");
}

#[test]
fn the_bytecode_of_a_fixed_template_keeps_its_shape() {
    let program = Program::compile("fixed", FIXED, |_| Ok::<(), minijinja::Error>(())).unwrap();
    let ops: Vec<String> = program
        .blocks()
        .iter()
        .enumerate()
        .flat_map(|(b, block)| {
            block
                .ops()
                .map(move |(i, op)| format!("{b}:{}: {op:?}", block.line(i)))
                .collect::<Vec<_>>()
        })
        .collect();
    let ops = ops.join("\n");
    assert!(ops == FIXED_OPS.trim(), "{BUMPED}\nops now:\n{ops}");
}

#[test]
fn the_ast_of_a_small_template_keeps_its_shape() {
    let tree = format!("{:?}", ast::parse(SMALL, "small").unwrap());
    assert!(tree == SMALL_AST.trim(), "{BUMPED}\nAST now:\n{tree}");
}
