//! Event streams: JSON lines read so that one bad line never ends the stream.
//!
//! `capfence-compile eval` and `capfence decide` read one event per line. A
//! line that is not UTF-8, or longer than [`MAX_LINE_BYTES`], is not an
//! error of the stream: it is an event that cannot be read, which the caller
//! denies (and the runtime records), and the next line is read as usual. Only
//! an I/O error of the stream itself ends it. Memory stays bounded: an
//! over-long line is skipped to its end without being held.

use std::io::{self, BufRead};

/// The longest line read as an event: 1 MiB, newline excluded.
pub const MAX_LINE_BYTES: usize = 1 << 20;

/// One line of an event stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// A line of text to read as an event.
    Text(String),
    /// A line that cannot be an event; the text says why.
    Unreadable(String),
}

/// Reads the lines of `input`, skipping blank ones (see the module docs).
///
/// ```
/// use capfence_compiler::lines::{Line, Lines};
/// let input: &[u8] = b"{\"actor\":\"a\"}\n\xff\xfe\n\n{}\n";
/// let lines: Vec<Line> = Lines::new(input).collect::<Result<_, _>>().unwrap();
/// assert_eq!(lines.len(), 3);
/// assert!(matches!(&lines[1], Line::Unreadable(why) if why.contains("UTF-8")));
/// ```
pub struct Lines<R> {
    input: R,
    number: usize,
    done: bool,
}

impl<R: BufRead> Lines<R> {
    /// Wraps a buffered reader.
    pub fn new(input: R) -> Lines<R> {
        Lines {
            input,
            number: 0,
            done: false,
        }
    }

    /// Reads up to the next newline, keeping at most `MAX_LINE_BYTES + 1` bytes.
    /// `None` at the end of the input.
    fn raw_line(&mut self) -> io::Result<Option<(Vec<u8>, bool)>> {
        let mut kept = Vec::new();
        let mut too_long = false;
        let mut any = false;
        loop {
            let chunk = match self.input.fill_buf() {
                Ok(chunk) => chunk,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if chunk.is_empty() {
                return Ok(any.then_some((kept, too_long)));
            }
            any = true;
            let (part, newline) = match chunk.iter().position(|b| *b == b'\n') {
                Some(at) => (chunk.get(..at).unwrap_or_default(), true),
                None => (chunk, false),
            };
            let used = part.len() + usize::from(newline);
            if !too_long {
                let room = MAX_LINE_BYTES - kept.len();
                if part.len() > room {
                    too_long = true;
                    kept.clear();
                } else {
                    kept.extend_from_slice(part);
                }
            }
            self.input.consume(used);
            if newline {
                return Ok(Some((kept, too_long)));
            }
        }
    }
}

impl<R: BufRead> Iterator for Lines<R> {
    type Item = io::Result<Line>;

    fn next(&mut self) -> Option<io::Result<Line>> {
        loop {
            if self.done {
                return None;
            }
            let (bytes, too_long) = match self.raw_line() {
                Ok(Some(line)) => line,
                Ok(None) => return None,
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            };
            self.number += 1;
            if too_long {
                return Some(Ok(Line::Unreadable(format!(
                    "unreadable event: line {} is longer than {MAX_LINE_BYTES} bytes",
                    self.number
                ))));
            }
            match String::from_utf8(bytes) {
                Ok(text) if text.trim().is_empty() => continue,
                Ok(text) => return Some(Ok(Line::Text(text))),
                Err(e) => {
                    return Some(Ok(Line::Unreadable(format!(
                        "unreadable event: line {} is not UTF-8 (invalid byte at offset {})",
                        self.number,
                        e.utf8_error().valid_up_to()
                    ))));
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn read(input: &[u8]) -> Vec<Line> {
        Lines::new(io::BufReader::with_capacity(7, input))
            .collect::<Result<_, _>>()
            .unwrap()
    }

    #[test]
    fn bad_lines_are_unreadable_and_the_stream_goes_on() {
        let mut input = b"a\n\xc3\x28\nb\r\n".to_vec();
        input.extend(vec![b'x'; MAX_LINE_BYTES + 1]);
        input.extend(b"\nc");
        let lines = read(&input);
        assert_eq!(lines.len(), 5);
        assert_eq!(lines[0], Line::Text("a".into()));
        assert!(matches!(&lines[1], Line::Unreadable(w) if w.contains("line 2 is not UTF-8")));
        assert_eq!(lines[2], Line::Text("b\r".into()));
        assert!(matches!(&lines[3], Line::Unreadable(w) if w.contains("line 4 is longer")));
        assert_eq!(lines[4], Line::Text("c".into()));
    }

    #[test]
    fn a_line_of_exactly_the_bound_is_read() {
        let mut input = vec![b'y'; MAX_LINE_BYTES];
        input.push(b'\n');
        let lines = read(&input);
        assert!(matches!(&lines[0], Line::Text(t) if t.len() == MAX_LINE_BYTES));
    }

    #[test]
    fn blank_lines_are_skipped_but_counted() {
        let lines = read(b"\n  \n\xff\n");
        assert!(matches!(&lines[0], Line::Unreadable(w) if w.contains("line 3")));
    }
}
