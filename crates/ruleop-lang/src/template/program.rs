//! One template compiled to minijinja bytecode, with the operators that build values (`~`,
//! `+`, `*`, slicing, `in`) replaced by calls of the bounded filters of `ops`.
//!
//! minijinja's operators cannot be overridden through its stable API, and an operator such
//! as `s ~ s` doubles a string in one instruction, which fuel cannot bound. Its
//! `unstable_machinery` exposes the compiler and the VM: a template is compiled here, each
//! such instruction is swapped one for one (jump targets stay valid) for a filter call that
//! takes the same operands from the stack, and the result runs in the rule's environment.

use std::sync::Arc;

use minijinja::machinery::{
    CompiledTemplate, Instruction, Instructions, TemplateConfig, make_string_output, parse,
};
use minijinja::syntax::SyntaxConfig;
use minijinja::{AutoEscape, Environment, Error, State, Value};

use super::{TemplateError, fold, ops};

/// A template's name and text, which its bytecode borrows.
struct Source {
    name: String,
    text: String,
}

self_cell::self_cell!(
    /// A compiled, patched template together with the text it borrows.
    pub(super) struct Program {
        owner: Source,
        #[covariant]
        dependent: CompiledTemplate,
    }
);

/// "Not a cached filter": the VM looks the guard up by name on each call.
const NO_CACHE: u8 = !0;

/// Rebuilds `old` with each raw text chunk printed as a value (`EmitRaw(t)` becomes
/// `LoadConst(t)`, `Emit`), so the formatter charges it: template text repeated by a loop is
/// built output like any other. Jump targets move with the instructions they point at.
fn print_raw_text<'s>(old: &Instructions<'s>) -> Instructions<'s> {
    let mut moved = Vec::new();
    let mut next = 0u32;
    while let Some(instruction) = old.get(moved.len() as u32) {
        moved.push(next);
        next += if matches!(instruction, Instruction::EmitRaw(_)) {
            2
        } else {
            1
        };
    }
    let to = |target: u32| moved.get(target as usize).copied().unwrap_or(next);
    let mut new = Instructions::new(old.name(), old.source());
    for index in 0..moved.len() as u32 {
        let Some(instruction) = old.get(index) else {
            break;
        };
        let span = old.get_span(index);
        let line = old
            .get_line(index)
            .and_then(|l| u16::try_from(l).ok())
            .unwrap_or(0);
        let mut add = |instruction| match span {
            Some(span) => new.add_with_span(instruction, span),
            None => new.add_with_line(instruction, line),
        };
        match instruction {
            Instruction::EmitRaw(text) => {
                add(Instruction::LoadConst(Value::from_safe_string(
                    text.to_string(),
                )));
                add(Instruction::Emit);
            }
            Instruction::Jump(t) => _ = add(Instruction::Jump(to(*t))),
            Instruction::JumpIfFalse(t) => _ = add(Instruction::JumpIfFalse(to(*t))),
            Instruction::JumpIfFalseOrPop(t) => _ = add(Instruction::JumpIfFalseOrPop(to(*t))),
            Instruction::JumpIfTrueOrPop(t) => _ = add(Instruction::JumpIfTrueOrPop(to(*t))),
            Instruction::Iterate(t) => _ = add(Instruction::Iterate(to(*t))),
            Instruction::BuildMacro(name, offset, flags) => {
                _ = add(Instruction::BuildMacro(name, to(*offset), *flags))
            }
            other => _ = add(other.clone()),
        }
    }
    new
}

/// Swaps each value-building operator for its guard, one instruction for one.
fn patch(instructions: &mut Instructions<'_>) {
    let mut index = 0;
    while let Some(instruction) = instructions.get_mut(index) {
        let guard = match instruction {
            Instruction::StringConcat => Some((ops::CONCAT, 2)),
            Instruction::Add => Some((ops::ADD, 2)),
            Instruction::Mul => Some((ops::MUL, 2)),
            Instruction::Slice => Some((ops::SLICE, 4)),
            Instruction::In => Some((ops::CONTAINS, 2)),
            _ => None,
        };
        if let Some((name, args)) = guard {
            *instruction = Instruction::ApplyFilter(name, Some(args), NO_CACHE);
        }
        index += 1;
    }
}

impl Program {
    /// Compiles `text` under `name` and patches its operators. Constants the compiler would
    /// fold to more than `max_constant` bytes are refused before it folds them.
    pub(super) fn compile(
        name: &str,
        text: &str,
        max_constant: usize,
    ) -> Result<Program, TemplateError> {
        let source = Source {
            name: name.to_string(),
            text: text.to_string(),
        };
        Program::try_new(source, |source| {
            let jinja = |e: Error| TemplateError::jinja(&e);
            let ast = parse(&source.text, &source.name, SyntaxConfig::default()).map_err(jinja)?;
            if let Some(line) = fold::oversized_constant(&ast, max_constant) {
                return Err(TemplateError::Jinja {
                    line: Some(line),
                    message: format!(
                        "a constant expression would build more than the render's memory budget of {max_constant} bytes"
                    ),
                });
            }
            let config = TemplateConfig {
                syntax_config: SyntaxConfig::default(),
                // The environment's mode (see `ESCAPE_MODE`): macro and block output stays template text.
                default_auto_escape: Arc::new(|_: &str| {
                    AutoEscape::Custom(super::ESCAPE_MODE.into())
                }),
            };
            let mut compiled =
                CompiledTemplate::new(&source.name, &source.text, &config).map_err(jinja)?;
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
    pub(super) fn run<R>(
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
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("name", &self.borrow_owner().name)
            .finish_non_exhaustive()
    }
}
