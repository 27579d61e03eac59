//! Maps paths inside a YAML document (`spec.children[1].template`) to file positions, so
//! errors found after deserialization still name a line and column.

use std::collections::HashMap;
use std::fmt;

use crate::yaml::granit::{Event, Parser, ScalarStyle};
use crate::yaml::path::{Frame, child};

/// A position in a rule file (1-based line and column).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// Where each node of a document starts.
#[derive(Debug, Clone, Default)]
pub struct Spans {
    nodes: HashMap<String, Node>,
    /// The text of the root mapping's scalar values (`apiVersion`, `kind`), so loading
    /// reads a file's head without another parse.
    top: HashMap<String, String>,
    /// Whether the whole text parsed.
    complete: bool,
    /// The parser's first syntax error, with where it gave up.
    error: Option<(Location, String)>,
}

#[derive(Debug, Clone, Copy)]
struct Node {
    at: Location,
    /// For block scalars (`|`, `>`): the first content line.
    content_line: Option<usize>,
}

impl Spans {
    /// Indexes `source`; a document that does not parse yields an empty index (serde reports
    /// the syntax error with its own location).
    pub fn index(source: &str) -> Self {
        let mut nodes = HashMap::new();
        let mut top = HashMap::new();
        let mut stack: Vec<Frame> = Vec::new();
        let mut parser = Parser::new_from_str(source);
        let mut complete = false;
        let mut error = None;
        while let Some(next) = parser.next_event() {
            let (event, span) = match next {
                Ok(next) => next,
                Err(e) => {
                    let at = Location {
                        line: e.marker().line(),
                        column: e.marker().col() + 1,
                    };
                    error = Some((at, crate::yaml::syntax_message(&e)));
                    break;
                }
            };
            let at = Location {
                line: span.start.line(),
                column: span.start.col() + 1,
            };
            match event {
                Event::Scalar(value, style, ..) => {
                    // A scalar in key position only names the next value.
                    if let Some(Frame::Map { key, .. }) = stack.last_mut()
                        && key.is_none()
                    {
                        *key = Some(value.into_owned());
                        continue;
                    }
                    let content_line = matches!(style, ScalarStyle::Literal | ScalarStyle::Folded)
                        .then(|| block_content_line(source, span.start.index()));
                    let path = child(&mut stack);
                    if stack.len() == 1 {
                        top.insert(path.clone(), value.into_owned());
                    }
                    nodes.insert(
                        path,
                        Node {
                            at,
                            content_line: content_line.flatten(),
                        },
                    );
                }
                Event::MappingStart(..) | Event::SequenceStart(..) => {
                    let path = child(&mut stack);
                    nodes.insert(
                        path.clone(),
                        Node {
                            at,
                            content_line: None,
                        },
                    );
                    stack.push(if matches!(event, Event::MappingStart(..)) {
                        Frame::Map { path, key: None }
                    } else {
                        Frame::Seq { path, index: 0 }
                    });
                }
                Event::MappingEnd | Event::SequenceEnd => {
                    stack.pop();
                }
                Event::Alias(_) => {
                    child(&mut stack);
                }
                Event::StreamEnd => complete = true,
                _ => {}
            }
        }
        Self {
            nodes,
            top,
            complete,
            error,
        }
    }

    /// The syntax error that stopped indexing, if any: the parser's own words, where it
    /// gave up.
    pub fn syntax_error(&self) -> Option<(Location, &str)> {
        self.error.as_ref().map(|(at, m)| (*at, m.as_str()))
    }

    /// The text of scalar `key` of the root mapping, when the whole document parsed.
    pub fn top_scalar(&self, key: &str) -> Option<&str> {
        self.complete
            .then(|| self.top.get(key).map(String::as_str))
            .flatten()
    }

    /// Where the node at `path` starts, or the nearest enclosing node that exists.
    pub fn find(&self, path: &str) -> Location {
        let mut p = path.to_string();
        loop {
            if let Some(node) = self.nodes.get(&p) {
                return node.at;
            }
            match p.rfind(['.', '[']) {
                Some(i) => p.truncate(i),
                None => return self.nodes.get("").map(|n| n.at).unwrap_or_default(),
            }
        }
    }

    /// The file line of line `line` (1-based) inside the string at `path`, for errors that a
    /// template reports relative to its own text.
    pub fn line_in(&self, path: &str, line: usize) -> Location {
        match self.nodes.get(path) {
            Some(Node {
                content_line: Some(first),
                ..
            }) => Location {
                line: first + line.saturating_sub(1),
                column: 1,
            },
            Some(node) => node.at,
            None => self.find(path),
        }
    }
}

/// The line on which a block scalar's content begins (the line after its `|` header).
fn block_content_line(source: &str, char_index: usize) -> Option<usize> {
    let byte = source.char_indices().nth(char_index).map(|(b, _)| b)?;
    let before = &source[..byte];
    let header_line = before.matches('\n').count() + 1;
    let rest = &source[byte..];
    // The header may itself be reported at the indicator or at the content.
    if rest.starts_with('|') || rest.starts_with('>') {
        Some(header_line + 1)
    } else {
        Some(header_line)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "a: 1\nspec:\n  children:\n    - name: x\n      template: |\n        kind: Pod\n        metadata: {}\n    - name: y\n";

    #[test]
    fn finds_nested_paths() {
        let spans = Spans::index(DOC);
        assert_eq!(spans.find("a"), Location { line: 1, column: 4 });
        assert_eq!(spans.find("spec.children[1].name").line, 8);
        assert_eq!(spans.find("spec.children[0].name").line, 4);
        // Missing nodes fall back to the nearest parent.
        assert_eq!(spans.find("spec.children[1].kind").line, 8);
    }

    #[test]
    fn maps_template_lines_to_file_lines() {
        let spans = Spans::index(DOC);
        assert_eq!(spans.line_in("spec.children[0].template", 1).line, 6);
        assert_eq!(spans.line_in("spec.children[0].template", 2).line, 7);
    }
}
