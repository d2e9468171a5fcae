//! A small YAML document tree that keeps every scalar's text and location.
//!
//! Policies and test suites are read through this tree rather than through serde
//! types: a rule's keys are open-ended (`amount_gt`, `destination_in`, …), and a
//! threshold such as `500.0000000000000001` must reach the decimal parser as text,
//! never as `f64`. The tree is built from the event stream of serde-saphyr's own
//! YAML parser, which reports line and column for every node and never panics.
//!
//! Anchors are accepted and ignored; aliases, tags and multiple documents are
//! refused, so what a reviewer reads is what is enforced.

use serde_saphyr::granit_parser::{Event, Parser, ScalarStyle, ScanError};

use crate::source::Location;

/// How a scalar was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    /// Unquoted: may be read as a number, a boolean or null.
    Plain,
    /// Single- or double-quoted: always a string.
    Quoted,
    /// A literal (`|`) or folded (`>`) block: always a string.
    Block,
}

/// One YAML node with its location.
#[derive(Debug, Clone, PartialEq)]
pub struct Node {
    /// Where the node starts.
    pub location: Location,
    /// What it holds.
    pub kind: NodeKind,
}

/// The three kinds of YAML node.
#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind {
    /// A scalar with its text after escape processing.
    Scalar {
        /// The text.
        text: String,
        /// How it was written.
        style: Style,
    },
    /// A sequence.
    Seq(Vec<Node>),
    /// A mapping, in source order.
    Map(Vec<(Node, Node)>),
}

/// A YAML syntax error, or a YAML feature a policy may not use.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct YamlError {
    /// Where the problem is.
    pub location: Location,
    /// What is wrong.
    pub message: String,
}

impl Node {
    /// A short name of the node's kind for error messages.
    pub fn kind_name(&self) -> &'static str {
        match &self.kind {
            NodeKind::Scalar {
                style: Style::Plain,
                text,
            } if is_null(text) => "nothing",
            NodeKind::Scalar { .. } => "a scalar",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    /// The scalar's text, if this is a scalar.
    pub fn as_scalar(&self) -> Option<(&str, Style)> {
        match &self.kind {
            NodeKind::Scalar { text, style } => Some((text, *style)),
            _ => None,
        }
    }

    /// Whether this is a plain `null`, `~` or empty scalar.
    pub fn is_null(&self) -> bool {
        matches!(&self.kind, NodeKind::Scalar { text, style: Style::Plain } if is_null(text))
    }
}

fn is_null(text: &str) -> bool {
    matches!(text, "" | "~" | "null" | "Null" | "NULL")
}

/// Parses `text` into at most one document. `Ok(None)` means the file holds no
/// document (empty, or only comments).
pub fn parse(text: &str) -> Result<Option<Node>, YamlError> {
    let mut builder = Builder {
        stack: Vec::new(),
        root: None,
        documents: 0,
    };
    for item in Parser::new_from_str(text) {
        let (event, span) = item.map_err(scan_error)?;
        let location = Location::new(span.start.line(), span.start.col() + 1);
        builder.event(event, location)?;
    }
    Ok(builder.root)
}

fn scan_error(error: ScanError) -> YamlError {
    let mark = error.marker();
    YamlError {
        location: Location::new(mark.line(), mark.col() + 1),
        message: format!("invalid YAML: {}", error.info()),
    }
}

enum Open {
    Seq(Location, Vec<Node>),
    /// A mapping: its entries, the key awaiting its value, and the line of
    /// every key so far by its text (a key's style never makes it distinct).
    Map(
        Location,
        Vec<(Node, Node)>,
        Option<Node>,
        std::collections::HashMap<String, usize>,
    ),
}

struct Builder {
    stack: Vec<Open>,
    root: Option<Node>,
    documents: usize,
}

impl Builder {
    fn event(&mut self, event: Event<'_>, location: Location) -> Result<(), YamlError> {
        let refuse = |message: &str| {
            Err(YamlError {
                location,
                message: message.to_owned(),
            })
        };
        match event {
            Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart(..) => {
                self.documents += 1;
                if self.documents > 1 {
                    return refuse("a policy file holds one YAML document; found a second `---`");
                }
                Ok(())
            }
            Event::Alias(_) | Event::UnresolvedAlias(_) => {
                refuse("YAML aliases (`*name`) are not supported: write the value out")
            }
            Event::Anchor(..) => Ok(()),
            Event::Scalar(text, style, _, tag) => {
                if tag.is_some() {
                    return refuse("YAML tags (`!tag`) are not supported");
                }
                let style = match style {
                    ScalarStyle::Plain => Style::Plain,
                    ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => Style::Quoted,
                    _ => Style::Block,
                };
                let kind = NodeKind::Scalar {
                    text: text.into_owned(),
                    style,
                };
                self.value(Node { location, kind })
            }
            Event::SequenceStart(_, _, tag) | Event::MappingStart(_, _, tag) if tag.is_some() => {
                refuse("YAML tags (`!tag`) are not supported")
            }
            Event::SequenceStart(..) => {
                self.stack.push(Open::Seq(location, Vec::new()));
                Ok(())
            }
            Event::MappingStart(..) => {
                self.stack.push(Open::Map(
                    location,
                    Vec::new(),
                    None,
                    std::collections::HashMap::new(),
                ));
                Ok(())
            }
            Event::SequenceEnd | Event::MappingEnd => match self.stack.pop() {
                Some(Open::Seq(start, items)) => self.value(Node {
                    location: start,
                    kind: NodeKind::Seq(items),
                }),
                Some(Open::Map(start, entries, ..)) => self.value(Node {
                    location: start,
                    kind: NodeKind::Map(entries),
                }),
                None => refuse("unbalanced YAML structure"),
            },
            #[allow(unreachable_patterns)]
            _ => Ok(()),
        }
    }

    fn value(&mut self, node: Node) -> Result<(), YamlError> {
        match self.stack.last_mut() {
            None => {
                self.root = Some(node);
                Ok(())
            }
            Some(Open::Seq(_, items)) => {
                items.push(node);
                Ok(())
            }
            Some(Open::Map(_, entries, pending, seen)) => match pending.take() {
                None => {
                    let NodeKind::Scalar { text, .. } = &node.kind else {
                        return Err(YamlError {
                            location: node.location,
                            message: "mapping keys must be plain words".to_owned(),
                        });
                    };
                    // `deny`, `'deny'` and `"deny"` are one key: a later spelling
                    // must never silently replace an earlier one.
                    if let Some(first) = seen.get(text.as_str()) {
                        return Err(YamlError {
                            location: node.location,
                            message: format!(
                                "duplicate key `{}` (first at line {first})",
                                text.escape_debug()
                            ),
                        });
                    }
                    seen.insert(text.clone(), node.location.line);
                    *pending = Some(node);
                    Ok(())
                }
                Some(key) => {
                    entries.push((key, node));
                    Ok(())
                }
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn keeps_number_text_and_locations() {
        let root = parse("deny:\n  - amount_gt: 500.0000000000000001\n")
            .unwrap()
            .unwrap();
        let NodeKind::Map(entries) = &root.kind else {
            panic!("map")
        };
        let (_, rules) = &entries[0];
        let NodeKind::Seq(items) = &rules.kind else {
            panic!("seq")
        };
        let NodeKind::Map(keys) = &items[0].kind else {
            panic!("map")
        };
        let (key, value) = &keys[0];
        assert_eq!(key.location, Location::new(2, 5));
        assert_eq!(
            value.as_scalar(),
            Some(("500.0000000000000001", Style::Plain))
        );
        assert_eq!(value.location, Location::new(2, 16));
    }

    #[test]
    fn quoted_scalars_are_marked() {
        let root = parse("a: '5'\nb: \"6\"\nc: 7\n").unwrap().unwrap();
        let NodeKind::Map(entries) = &root.kind else {
            panic!("map")
        };
        let styles: Vec<_> = entries
            .iter()
            .map(|(_, v)| v.as_scalar().unwrap().1)
            .collect();
        assert_eq!(styles, [Style::Quoted, Style::Quoted, Style::Plain]);
    }

    #[test]
    fn refuses_aliases_duplicates_and_second_documents() {
        assert!(
            parse("a: &x 1\nb: *x\n")
                .unwrap_err()
                .message
                .contains("aliases")
        );
        let dup = parse("a: 1\nb: 2\na: 3\n").unwrap_err();
        assert_eq!(dup.location, Location::new(3, 1));
        assert!(dup.message.contains("duplicate key `a`"));
        assert!(
            parse("a: 1\n---\nb: 2\n")
                .unwrap_err()
                .message
                .contains("one YAML document")
        );
        assert!(parse("a: !!str 1\n").unwrap_err().message.contains("tags"));
    }

    #[test]
    fn empty_input_has_no_document() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("# only a comment\n").unwrap(), None);
    }

    #[test]
    fn syntax_errors_have_locations() {
        let err = parse("a: [1, 2\nb: 3\n").unwrap_err();
        assert!(err.message.starts_with("invalid YAML"));
        assert!(err.location.line >= 1);
    }
}
