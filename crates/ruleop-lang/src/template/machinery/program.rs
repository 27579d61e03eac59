//! One template compiled to minijinja bytecode, with the operators that build values (`~`,
//! `+`, `*`, slicing, `in`) replaced by calls of the bounded filters of `ops`.
//!
//! minijinja's operators cannot be overridden through its stable API, and an operator such
//! as `s ~ s` doubles a string in one instruction, which fuel cannot bound. Its
//! `unstable_machinery` exposes the compiler and the VM: a template is compiled here, each
//! such instruction is swapped one for one (jump targets stay valid) for a filter call that
//! takes the same operands from the stack, and the result runs in the rule's environment.

use std::sync::Arc;

use minijinja::machinery::{CompiledTemplate, TemplateConfig, make_string_output};
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, Error, State, Value};

use super::ast::{self, Stmt};
use super::bytecode::{Block, disassemble, patch, print_raw_text};

/// The auto-escape mode of every template: minijinja then marks the output of macros,
/// `{% filter %}` and `{% set %}` blocks as safe (template text holding tokens) and routes
/// every other printed value, even inside filters like `replace` or `join`, through the
/// formatter, which turns it into a token.
pub(crate) const ESCAPE_MODE: &str = "ruleop";

/// A template's name and text, which its bytecode borrows.
struct Source {
    name: String,
    text: String,
}

self_cell::self_cell!(
    /// A compiled, patched template together with the text it borrows.
    pub(crate) struct Program {
        owner: Source,
        #[covariant]
        dependent: CompiledTemplate,
    }
);

impl Program {
    /// Compiles `text` under `name` and patches its operators. `check` sees the parsed
    /// template first: the compiler folds constants, so sizes are checked before it runs.
    pub(crate) fn compile<E: From<Error>>(
        name: &str,
        text: &str,
        check: impl FnOnce(&Stmt<'_>) -> Result<(), E>,
    ) -> Result<Program, E> {
        let source = Source {
            name: name.to_string(),
            text: text.to_string(),
        };
        Program::try_new(source, |source| {
            check(&ast::parse(&source.text, &source.name).map_err(E::from)?)?;
            let config = TemplateConfig {
                syntax_config: SyntaxConfig::default(),
                // The environment's mode (see `ESCAPE_MODE`): macro and block output stays template text.
                default_auto_escape: Arc::new(|_: &str| AutoEscape::Custom(ESCAPE_MODE.into())),
            };
            let mut compiled =
                CompiledTemplate::new(&source.name, &source.text, &config).map_err(E::from)?;
            compiled.instructions = print_raw_text(&compiled.instructions);
            patch(&mut compiled.instructions);
            for block in compiled.blocks.values_mut() {
                *block = print_raw_text(block);
                patch(block);
            }
            Ok(compiled)
        })
    }

    /// Runs the program in `env` with `root` as context; `inspect` reads the final state.
    pub(crate) fn run<R>(
        &self,
        env: &Environment<'static>,
        root: Value,
        inspect: impl FnOnce(&mut State) -> R,
    ) -> Result<(String, R), Error> {
        self.with_dependent(|_, compiled| {
            let mut text = String::with_capacity(compiled.buffer_size_hint);
            let mut out = make_string_output(&mut text);
            let (_, mut state) = minijinja::machinery::eval(
                env,
                &compiled.instructions,
                root,
                &compiled.blocks,
                &mut out,
                compiled.initial_auto_escape.clone(),
            )?;
            let inspected = inspect(&mut state);
            drop(state);
            drop(out);
            Ok((text, inspected))
        })
    }

    /// The program's instruction blocks as ops: its body, then its `{% block %}`s.
    pub(crate) fn blocks(&self) -> Vec<Block<'_>> {
        let compiled = self.borrow_dependent();
        std::iter::once(&compiled.instructions)
            .chain(compiled.blocks.values())
            .map(disassemble)
            .collect()
    }
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("name", &self.borrow_owner().name)
            .finish_non_exhaustive()
    }
}
