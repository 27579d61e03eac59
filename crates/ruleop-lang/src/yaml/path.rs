//! The document path (`tests[0].parent`) at an error's position, which serde_yaml put in
//! front of its messages and serde-saphyr does not: a type error deep in a file names the
//! field it is about.

use super::granit::{Event, Parser};

/// An open collection while walking a document's events, with its path: the shape both
/// this module and the rule file's spans (`rule::Spans`) walk.
pub(crate) enum Frame {
    /// A mapping, and the key whose value comes next (none while a key is awaited).
    Map { path: String, key: Option<String> },
    /// A sequence, and the index of its next item.
    Seq { path: String, index: usize },
}

/// The path of the node at 1-based (`line`, `column`) of `text`: the scalar that starts
/// there, else the innermost collection open there (a key names its mapping). Empty for
/// the root.
pub(super) fn at(text: &str, line: usize, column: usize) -> String {
    let mut stack: Vec<Frame> = Vec::new();
    let mut parser = Parser::new_from_str(text);
    while let Some(Ok((event, span))) = parser.next_event() {
        let start = (span.start.line(), span.start.col() + 1);
        if start > (line, column) {
            break;
        }
        match event {
            Event::Scalar(value, ..) => {
                if let Some(Frame::Map { key, path }) = stack.last_mut()
                    && key.is_none()
                {
                    if start == (line, column) {
                        return path.clone();
                    }
                    *key = Some(value.into_owned());
                    continue;
                }
                let path = child(&mut stack);
                if start == (line, column) {
                    return path;
                }
            }
            Event::MappingStart(..) => {
                let path = child(&mut stack);
                stack.push(Frame::Map { path, key: None });
            }
            Event::SequenceStart(..) => {
                let path = child(&mut stack);
                stack.push(Frame::Seq { path, index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::Alias(_) => {
                child(&mut stack);
            }
            _ => {}
        }
    }
    match stack.last() {
        Some(Frame::Map { path, .. } | Frame::Seq { path, .. }) => path.clone(),
        None => String::new(),
    }
}

/// The path of the node about to start, advancing its parent.
pub(crate) fn child(stack: &mut [Frame]) -> String {
    match stack.last_mut() {
        None => String::new(),
        Some(Frame::Map { path, key }) => {
            let key = key.take().unwrap_or_default();
            if path.is_empty() {
                key
            } else {
                format!("{path}.{key}")
            }
        }
        Some(Frame::Seq { path, index }) => {
            let p = format!("{path}[{index}]");
            *index += 1;
            p
        }
    }
}
