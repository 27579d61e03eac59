//! minijinja bytecode: the rewrites that bound a render (`print_raw_text`, `patch`) and the
//! read-only view of it the static analyses use (`Op`, `Block`).

use minijinja::Value;
use minijinja::machinery::{Instruction, Instructions};

// The names of the bounded filters (registered by `template::ops`) the patched bytecode calls.
/// The filter the bytecode calls for `~`.
pub const CONCAT: &str = "__ruleop_concat";
/// The filter the bytecode calls for `+`.
pub const ADD: &str = "__ruleop_add";
/// The filter the bytecode calls for `*`.
pub const MUL: &str = "__ruleop_mul";
/// The filter the bytecode calls for `value[start:stop:step]`.
pub const SLICE: &str = "__ruleop_slice";
/// The filter the bytecode calls for `needle in container`.
pub const CONTAINS: &str = "__ruleop_in";

/// One instruction, as the static analyses (`access`, `names`, `check::refs`,
/// `rule::reads`) tell them apart; every other instruction is `Other`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Op<'t> {
    /// Pushes the variable `name`.
    Lookup(&'t str),
    /// `.name` of the value on top.
    GetAttr(&'t str),
    /// `[k]`: the subscript on top, the value below it.
    GetItem,
    /// Pushes a constant.
    Const(&'t Value),
    /// Prints the value on top.
    Emit,
    /// Binds the variable `name` (`set`, loop targets, macro arguments).
    StoreLocal(&'t str),
    /// Defines the macro `name`.
    BuildMacro(&'t str),
    /// Captures the variable `name` into a macro's closure.
    Enclose(&'t str),
    /// Applies the filter `name` (also each patched operator: see `patch`).
    CallFilter(&'t str),
    /// Applies the test `name`.
    Test(&'t str),
    /// Calls the function `name`.
    CallFunction(&'t str),
    /// Starts a loop over the value on top.
    PushLoop,
    /// Takes the loop's next item.
    Iterate,
    /// Anything else (jumps, operators, stack work).
    Other,
}

/// One instruction block of a compiled template (its body or a `{% block %}`), as ops.
#[derive(Debug)]
pub(crate) struct Block<'t> {
    /// Each op with its 1-based line (1 when minijinja has none).
    ops: Vec<(Op<'t>, usize)>,
}

impl<'t> Block<'t> {
    /// The op at `index`.
    pub(crate) fn get(&self, index: usize) -> Option<Op<'t>> {
        self.ops.get(index).map(|(op, _)| *op)
    }

    /// The line of the op at `index` (1 when unknown).
    pub(crate) fn line(&self, index: usize) -> usize {
        self.ops.get(index).map_or(1, |(_, line)| *line)
    }

    /// Each op with its index.
    pub(crate) fn ops(&self) -> impl Iterator<Item = (usize, Op<'t>)> + '_ {
        self.ops.iter().enumerate().map(|(i, (op, _))| (i, *op))
    }
}

/// `block` read as ops.
pub(super) fn disassemble<'t>(block: &'t Instructions<'_>) -> Block<'t> {
    let mut ops = Vec::new();
    let mut index = 0u32;
    while let Some(instruction) = block.get(index) {
        let op = match instruction {
            Instruction::Lookup(n) => Op::Lookup(n),
            Instruction::GetAttr(n) => Op::GetAttr(n),
            Instruction::GetItem => Op::GetItem,
            Instruction::LoadConst(v) => Op::Const(v),
            Instruction::Emit => Op::Emit,
            Instruction::StoreLocal(n) => Op::StoreLocal(n),
            Instruction::BuildMacro(n, ..) => Op::BuildMacro(n),
            Instruction::Enclose(n) => Op::Enclose(n),
            Instruction::ApplyFilter(n, ..) => Op::CallFilter(n),
            Instruction::PerformTest(n, ..) => Op::Test(n),
            Instruction::CallFunction(n, _) => Op::CallFunction(n),
            Instruction::PushLoop(_) => Op::PushLoop,
            Instruction::Iterate(_) => Op::Iterate,
            _ => Op::Other,
        };
        ops.push((op, block.get_line(index).unwrap_or(1)));
        index += 1;
    }
    Block { ops }
}

/// "Not a cached filter": the VM looks the guard up by name on each call.
const NO_CACHE: u8 = !0;

/// Rebuilds `old` with each raw text chunk printed as a value (`EmitRaw(t)` becomes
/// `LoadConst(t)`, `Emit`), so the formatter charges it: template text repeated by a loop is
/// built output like any other. Jump targets move with the instructions they point at.
pub(super) fn print_raw_text<'s>(old: &Instructions<'s>) -> Instructions<'s> {
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
pub(super) fn patch(instructions: &mut Instructions<'_>) {
    let mut index = 0;
    while let Some(instruction) = instructions.get_mut(index) {
        let guard = match instruction {
            Instruction::StringConcat => Some((CONCAT, 2)),
            Instruction::Add => Some((ADD, 2)),
            Instruction::Mul => Some((MUL, 2)),
            Instruction::Slice => Some((SLICE, 4)),
            Instruction::In => Some((CONTAINS, 2)),
            _ => None,
        };
        if let Some((name, args)) = guard {
            *instruction = Instruction::ApplyFilter(name, Some(args), NO_CACHE);
        }
        index += 1;
    }
}
