//! YAML text of a JSON value, byte for byte as serde_yaml 0.9 (libyaml's emitter, unlimited
//! width) wrote it: golden files, `render` output and `toyaml` results (which feed child
//! content and its hash) must not change when the YAML library does.

use serde_json::Value as Json;

/// Keys longer than this (bytes) are written as explicit `? key` entries, as libyaml does.
const SIMPLE_KEY_MAX: usize = 128;

/// The block-style YAML document for `value`, ending with a newline.
pub fn to_string(value: &Json) -> String {
    let mut out = String::new();
    node(&mut out, value, 0, Context::Root);
    if !out.ends_with(is_break) {
        out.push('\n');
    }
    out
}

/// Where a node is written; decides the separator before it and collection indentation.
#[derive(Clone, Copy, PartialEq)]
enum Context {
    Root,
    /// After `key:` (or `:` of an explicit key), the mapping at `indent`.
    MapValue,
    /// After `- ` (or the `: ` of an explicit key): a collection starts on that line.
    SeqItem,
}

/// Writes `value` whose parent collection sits at column `indent`.
fn node(out: &mut String, value: &Json, indent: usize, ctx: Context) {
    match value {
        Json::Object(map) if !map.is_empty() => {
            // A mapping in a sequence item starts on the dash's line; elsewhere on its own.
            let inner = match ctx {
                Context::Root => 0,
                Context::MapValue => indent + 2,
                Context::SeqItem => indent + 2,
            };
            for (i, (key, v)) in map.iter().enumerate() {
                if i > 0 || ctx == Context::MapValue {
                    newline_to(out, inner);
                }
                entry(out, key, v, inner);
            }
        }
        Json::Array(items) if !items.is_empty() => {
            // Sequences in mappings are not indented (libyaml's indentless sequences).
            let inner = match ctx {
                Context::Root | Context::MapValue => indent,
                Context::SeqItem => indent + 2,
            };
            for (i, v) in items.iter().enumerate() {
                if i > 0 || ctx == Context::MapValue {
                    newline_to(out, inner);
                }
                out.push_str("- ");
                node(out, v, inner, Context::SeqItem);
            }
        }
        Json::Object(_) => out.push_str("{}"),
        Json::Array(_) => out.push_str("[]"),
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => number(out, n),
        Json::String(s) => string(out, s, indent + 2, false),
    }
}

/// One `key: value` line (or explicit `? key` / `: value` pair) at column `indent`.
fn entry(out: &mut String, key: &str, value: &Json, indent: usize) {
    if key.len() > SIMPLE_KEY_MAX || key.contains(BREAKS) {
        out.push('?');
        out.push(' ');
        string(out, key, indent + 2, false);
        newline_to(out, indent);
        // An explicit key's value starts on the `:` line, like a sequence item.
        out.push_str(": ");
        node(out, value, indent, Context::SeqItem);
    } else {
        string(out, key, indent + 2, true);
        out.push(':');
        separate(out, value);
        node(out, value, indent, Context::MapValue);
    }
}

/// The space after `key:` before a value that stays on the same line.
fn separate(out: &mut String, value: &Json) {
    let block = matches!(value, Json::Object(m) if !m.is_empty())
        || matches!(value, Json::Array(a) if !a.is_empty());
    if !block {
        out.push(' ');
    }
}

/// Starts a line at column `indent`; a literal block that ended with a line break has
/// already started it.
fn newline_to(out: &mut String, indent: usize) {
    if !out.ends_with(is_break) {
        out.push('\n');
    }
    out.extend(std::iter::repeat_n(' ', indent));
}

/// Integers as serde_json writes them; floats in ryu's shortest form as serde_yaml wrote
/// them (`1e20`: serde_json's own float text says `1e+20`). A JSON number is always finite.
fn number(out: &mut String, n: &serde_json::Number) {
    match n.as_f64() {
        Some(f) if n.is_f64() => out.push_str(ryu::Buffer::new().format(f)),
        _ => out.push_str(&n.to_string()),
    }
}

const BREAKS: [char; 5] = ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'];

fn is_break(c: char) -> bool {
    BREAKS.contains(&c)
}

/// libyaml's printable set: a character outside it forces double quotes with an escape.
fn is_printable(c: char) -> bool {
    matches!(c, '\n' | '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{d7ff}' | '\u{e000}'..='\u{fffd}')
        && c != '\u{feff}'
        || c >= '\u{10000}'
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Style {
    Plain,
    Single,
    Double,
    Literal,
}

/// Writes a string scalar with the style serde_yaml would pick; `content_indent` is the
/// column of a literal block's lines.
fn string(out: &mut String, s: &str, content_indent: usize, simple_key: bool) {
    match style(s, simple_key) {
        Style::Plain => out.push_str(s),
        Style::Single => {
            out.push('\'');
            let mut after_break = false;
            for c in s.chars() {
                // Only U+2028/U+2029 get here (other breaks force double quotes); libyaml
                // indents the text after them.
                if after_break && !is_break(c) {
                    out.extend(std::iter::repeat_n(' ', content_indent));
                }
                after_break = is_break(c);
                if c == '\'' {
                    out.push('\'');
                }
                out.push(c);
            }
            if after_break {
                out.extend(std::iter::repeat_n(' ', content_indent));
            }
            out.push('\'');
        }
        Style::Double => double_quoted(out, s),
        Style::Literal => literal(out, s, content_indent),
    }
}

/// serde_yaml asks for a literal block when the string has a newline, single quotes when it
/// would read back as another type, and lets libyaml pick otherwise; libyaml then falls
/// back to quotes when the text cannot be written plain or as a block.
fn style(s: &str, simple_key: bool) -> Style {
    let a = analyze(s);
    let requested = if s.contains('\n') {
        Style::Literal
    } else if reads_as_non_string(s) {
        Style::Single
    } else {
        Style::Plain
    };
    let mut style = requested;
    if simple_key && a.multiline {
        style = Style::Double;
    }
    if style == Style::Plain && (!a.block_plain_allowed || (s.is_empty() && simple_key)) {
        style = Style::Single;
    }
    if style == Style::Single && !a.single_quoted_allowed {
        style = Style::Double;
    }
    if style == Style::Literal && (!a.block_allowed || simple_key) {
        style = Style::Double;
    }
    style
}

/// Whether serde_yaml would read `s` back, unquoted, as null, a boolean or a number (or
/// digits with a leading zero, which it keeps quoted too).
fn reads_as_non_string(s: &str) -> bool {
    if matches!(
        s,
        "" | "~"
            | "null"
            | "Null"
            | "NULL"
            | "true"
            | "True"
            | "TRUE"
            | "false"
            | "False"
            | "FALSE"
    ) {
        return true;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if unsigned.len() > 1
        && unsigned.starts_with('0')
        && unsigned[1..].bytes().all(|b| b.is_ascii_digit())
    {
        return true;
    }
    if int_like(s) {
        return true;
    }
    let float_text = match s.strip_prefix('+') {
        Some(rest) if rest.starts_with(['+', '-']) => return false,
        Some(rest) => rest,
        None => s,
    };
    matches!(float_text, ".inf" | ".Inf" | ".INF")
        || matches!(s, "-.inf" | "-.Inf" | "-.INF" | ".nan" | ".NaN" | ".NAN")
        || float_text.parse::<f64>().is_ok_and(f64::is_finite)
}

/// serde_yaml's integer forms: decimal, `0x`, `0o`, `0b`, with an optional sign.
fn int_like(s: &str) -> bool {
    let rest = s
        .strip_prefix('-')
        .unwrap_or_else(|| s.strip_prefix('+').unwrap_or(s));
    if rest.starts_with(['+', '-']) {
        return false;
    }
    let radix = |p: &str, r: u32| {
        rest.strip_prefix(p)
            .is_some_and(|d| !d.starts_with(['+', '-']) && u128::from_str_radix(d, r).is_ok())
    };
    if radix("0x", 16) || radix("0o", 8) || radix("0b", 2) {
        return true;
    }
    rest.parse::<u128>().is_ok()
}

#[derive(Debug)]
struct Analysis {
    multiline: bool,
    block_plain_allowed: bool,
    single_quoted_allowed: bool,
    block_allowed: bool,
}

/// libyaml's `yaml_emitter_analyze_scalar` (block context only: the emitter never writes
/// a non-empty flow collection here).
fn analyze(s: &str) -> Analysis {
    if s.is_empty() {
        return Analysis {
            multiline: false,
            block_plain_allowed: true,
            single_quoted_allowed: true,
            block_allowed: false,
        };
    }
    let mut block_indicators = s.starts_with("---") || s.starts_with("...");
    let (mut line_breaks, mut special) = (false, false);
    let (mut leading, mut trailing_space, mut trailing_break) = (false, false, false);
    let (mut break_space, mut space_break) = (false, false);
    let (mut previous_space, mut previous_break) = (false, false);
    let blankz = |c: Option<char>| c.is_none_or(|c| c == ' ' || c == '\t' || is_break(c));
    let chars: Vec<char> = s.chars().collect();
    let mut preceded_by_whitespace = true;
    for (i, &c) in chars.iter().enumerate() {
        let followed_by_whitespace = blankz(chars.get(i + 1).copied());
        let first = i == 0;
        let last = i + 1 == chars.len();
        if first {
            if "#,[]{}&*!|>'\"%@`".contains(c)
                || (matches!(c, '?' | ':' | '-') && followed_by_whitespace)
            {
                block_indicators = true;
            }
        } else if (c == ':' && followed_by_whitespace) || (c == '#' && preceded_by_whitespace) {
            block_indicators = true;
        }
        if !is_printable(c) {
            special = true;
        }
        if is_break(c) {
            line_breaks = true;
        }
        if c == ' ' {
            leading |= first;
            trailing_space |= last;
            break_space |= previous_break;
            (previous_space, previous_break) = (true, false);
        } else if is_break(c) {
            leading |= first;
            trailing_break |= last;
            space_break |= previous_space;
            (previous_space, previous_break) = (false, true);
        } else {
            (previous_space, previous_break) = (false, false);
        }
        preceded_by_whitespace = blankz(Some(c));
    }
    let mut a = Analysis {
        multiline: line_breaks,
        block_plain_allowed: true,
        single_quoted_allowed: true,
        block_allowed: true,
    };
    if leading || trailing_space || trailing_break || line_breaks || block_indicators {
        a.block_plain_allowed = false;
    }
    if trailing_space {
        a.block_allowed = false;
    }
    if break_space {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
    }
    if space_break || special {
        a.block_plain_allowed = false;
        a.single_quoted_allowed = false;
        a.block_allowed = false;
    }
    a
}

fn double_quoted(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        let escaped = match c {
            '\0' => "\\0",
            '\u{7}' => "\\a",
            '\u{8}' => "\\b",
            '\t' => "\\t",
            '\n' => "\\n",
            '\u{b}' => "\\v",
            '\u{c}' => "\\f",
            '\r' => "\\r",
            '\u{1b}' => "\\e",
            '"' => "\\\"",
            '\\' => "\\\\",
            '\u{85}' => "\\N",
            '\u{2028}' => "\\L",
            '\u{2029}' => "\\P",
            c if !is_printable(c) || c == '\u{feff}' => {
                let code = u32::from(c);
                out.push_str(&match code {
                    0..=0xff => format!("\\x{code:02X}"),
                    0x100..=0xffff => format!("\\u{code:04X}"),
                    _ => format!("\\U{code:08X}"),
                });
                continue;
            }
            c => {
                out.push(c);
                continue;
            }
        };
        out.push_str(escaped);
    }
    out.push('"');
}

/// A `|` block: an indentation hint when the text starts with a space or break, `-` when
/// it has no final newline, `+` when it has more than one.
fn literal(out: &mut String, s: &str, indent: usize) {
    out.push('|');
    if s.starts_with(' ') || s.starts_with(BREAKS) {
        out.push('2');
    }
    let mut rev = s.chars().rev();
    match (rev.next(), rev.next()) {
        (Some(last), _) if !is_break(last) => out.push('-'),
        (Some(_), None) => out.push('+'),
        (Some(_), Some(before)) if is_break(before) => out.push('+'),
        _ => {}
    }
    out.push('\n');
    let mut line_start = true;
    for c in s.chars() {
        if is_break(c) {
            out.push(c);
            line_start = true;
        } else {
            if line_start {
                out.extend(std::iter::repeat_n(' ', indent));
                line_start = false;
            }
            out.push(c);
        }
    }
}
