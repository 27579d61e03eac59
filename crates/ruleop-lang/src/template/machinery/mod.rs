//! The only door to minijinja's `unstable_machinery` (compiler, AST, bytecode, VM), which
//! has no semver promise: the workspace pins minijinja exactly, and everything built on its
//! internals goes through the small types here, so a version bump is reviewed in this
//! module alone. `tests` fails loudly when the pinned version or the bytecode shape changes.
//!
//! - `program`: compiling a template, patching its bytecode, running it.
//! - `bytecode`: the patches, and `Op`/`Block`, the read-only view the analyses walk.
//! - `ast`: our own statement and expression tree, for `fold` and `lint`.

pub(crate) mod ast;
mod bytecode;
mod program;
#[cfg(test)]
mod tests;

pub(crate) use bytecode::{ADD, Block, CONCAT, CONTAINS, MUL, Op, SLICE};
pub(crate) use program::{ESCAPE_MODE, Program};
