//! Names are tokens: the one definition of what a name may hold.
//!
//! A look-alike name is the cheapest way past a rule: `"Staging "`,
//! `"staging\u{200b}"`, `"ＳＴＡＧＩＮＧ"` and `"ſtaging"` all differ from
//! `staging` as strings, so a deny rule on `staging` would not see them. CapFence
//! never trims or normalizes such a value silently: a name that is not a plain
//! ASCII token makes the event malformed (denied, naming the field), and a policy
//! that writes one does not load.
//!
//! - **Segments** (resource, action, each half of a capability): ASCII letters,
//!   digits, `_` and `-`.
//! - **Tokens** (environment, actor, risk, and every payload string a rule
//!   tests): ASCII letters, digits and `_ - . : @ + /`.
//! - **Text** (a payload field the policy lists under `unicode_fields`): any
//!   Unicode text without control, format or line-separator characters and
//!   without leading or trailing whitespace, compared after NFKC normalization.
//!
//! No kind is empty.

use unicode_normalization::UnicodeNormalization;

/// The punctuation a token may hold besides ASCII letters and digits.
pub const TOKEN_PUNCTUATION: &str = "_-.:@+/";

/// What a token is, for messages.
pub const TOKEN_DESCRIPTION: &str = "a plain ASCII token (letters, digits and _ - . : @ + /)";

/// What a segment is, for messages.
pub const SEGMENT_DESCRIPTION: &str = "a plain ASCII name (letters, digits, _ and -)";

/// What a text value is, for messages.
pub const TEXT_DESCRIPTION: &str =
    "text without control, format or separator characters and without surrounding spaces";

/// Whether `text` is a token: non-empty, ASCII letters, digits and [`TOKEN_PUNCTUATION`].
///
/// ```
/// use capfence_compiler::token::is_token;
/// assert!(is_token("vendor-corp-123"));
/// assert!(is_token("cfo@corp"));
/// assert!(!is_token("staging "));
/// assert!(!is_token("staging\u{200b}"));
/// assert!(!is_token("ſtaging"));
/// assert!(!is_token(""));
/// ```
#[inline]
pub fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().fold(TOKEN, |all, b| all & byte_class(b)) != 0
}

/// [`byte_class`] bit: the byte may appear in a token.
const TOKEN: u8 = 1;
/// [`byte_class`] bit: the byte may appear in a segment.
const SEGMENT: u8 = 2;

/// Which kinds of name each byte may appear in, one lookup per byte (names
/// are checked on every decision).
// Evaluated at compile time: an index out of range fails the build.
#[allow(clippy::indexing_slicing)]
const CLASSES: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let c = b as u8;
        if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' {
            table[b] = TOKEN | SEGMENT;
        }
        let mut i = 0;
        while i < TOKEN_PUNCTUATION.len() {
            if TOKEN_PUNCTUATION.as_bytes()[i] == c {
                table[b] |= TOKEN;
            }
            i += 1;
        }
        b += 1;
    }
    table
};

#[inline]
fn byte_class(b: u8) -> u8 {
    CLASSES.get(usize::from(b)).copied().unwrap_or(0)
}

/// Whether `text` is a segment: non-empty, ASCII letters, digits, `_` and `-`.
///
/// ```
/// use capfence_compiler::token::is_segment;
/// assert!(is_segment("payments"));
/// assert!(!is_segment("payments.read"));
/// assert!(!is_segment("ｔransfer"));
/// ```
pub fn is_segment(text: &str) -> bool {
    !text.is_empty() && text.bytes().fold(SEGMENT, |all, b| all & byte_class(b)) != 0
}

/// Whether `text` may be compared as Unicode text (see the module docs): its
/// NFKC form is non-empty, has no control, format or separator character and
/// does not start or end with whitespace.
///
/// ```
/// use capfence_compiler::token::is_text;
/// assert!(is_text("José García"));
/// assert!(!is_text("José\u{200b}"));
/// assert!(!is_text(" José"));
/// assert!(!is_text("a\u{1b}[2Kb"));
/// ```
pub fn is_text(text: &str) -> bool {
    let mut chars = text.nfkc().peekable();
    let Some(first) = chars.peek().copied() else {
        return false;
    };
    if first.is_whitespace() {
        return false;
    }
    let mut last = first;
    for c in chars {
        if is_hidden(c) {
            return false;
        }
        last = c;
    }
    !last.is_whitespace()
}

/// Compares `value` with a literal already in NFKC form, without allocating.
pub fn text_eq(value: &str, nfkc_literal: &str) -> bool {
    value.nfkc().eq(nfkc_literal.chars())
}

/// `text` in NFKC form.
pub fn nfkc(text: &str) -> String {
    text.nfkc().collect()
}

/// Control characters (Cc), format characters (Cf), line and paragraph
/// separators, and the invisible fillers that render as nothing.
fn is_hidden(c: char) -> bool {
    if c.is_control() {
        return true;
    }
    matches!(
        u32::from(c),
        0x00AD
            | 0x034F
            | 0x0600..=0x0605
            | 0x061C
            | 0x06DD
            | 0x070F
            | 0x0890..=0x0891
            | 0x08E2
            | 0x115F..=0x1160
            | 0x17B4..=0x17B5
            | 0x180B..=0x180F
            | 0x200B..=0x200F
            | 0x2028..=0x202E
            | 0x2060..=0x206F
            | 0x3164
            | 0xFE00..=0xFE0F
            | 0xFEFF
            | 0xFFA0
            | 0xFFF0..=0xFFFB
            | 0x110BD
            | 0x110CD
            | 0x13430..=0x1343F
            | 0x1BCA0..=0x1BCA3
            | 0x1D173..=0x1D17A
            | 0xE0000..=0xE0FFF
    )
}

/// Writes `text` for a terminal: control and format characters (ESC, CR,
/// bidirectional overrides, …) and backslashes are shown as escapes, never
/// sent. Everything else is kept, so plain names read as they are.
///
/// ```
/// use capfence_compiler::token::escape_for_terminal;
/// assert_eq!(escape_for_terminal("ops\u{1b}[2K\rT-9"), "ops\\u{1b}[2K\\rT-9");
/// assert_eq!(escape_for_terminal("José"), "José");
/// ```
pub fn escape_for_terminal(text: &str) -> std::borrow::Cow<'_, str> {
    escape_except(text, None)
}

/// [`escape_for_terminal`] for multi-line output: newlines are kept.
///
/// ```
/// use capfence_compiler::token::escape_lines;
/// assert_eq!(escape_lines("a\u{1b}]0;pwned\u{7}\nb\r\n"), "a\\u{1b}]0;pwned\\u{7}\nb\\r\n");
/// ```
pub fn escape_lines(text: &str) -> std::borrow::Cow<'_, str> {
    escape_except(text, Some('\n'))
}

fn escape_except(text: &str, keep: Option<char>) -> std::borrow::Cow<'_, str> {
    let hide = |c: char| is_hidden(c) && Some(c) != keep;
    if !text.chars().any(hide) {
        return std::borrow::Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if hide(c) {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    std::borrow::Cow::Owned(out)
}

/// `println!` for a terminal: every control and format character of the
/// formatted text escaped ([`escape_lines`]), so an actor, reason or payload
/// written by an agent cannot move the cursor and draw a fake line over a
/// real one. Both binaries use it in place of `println!`.
#[macro_export]
macro_rules! println_escaped {
    () => { ::std::println!() };
    ($($arg:tt)*) => {
        ::std::println!("{}", $crate::token::escape_lines(&::std::format!($($arg)*)))
    };
}

/// `print!` for a terminal (see [`println_escaped!`](crate::println_escaped)).
#[macro_export]
macro_rules! print_escaped {
    ($($arg:tt)*) => {
        ::std::print!("{}", $crate::token::escape_lines(&::std::format!($($arg)*)))
    };
}

/// `eprintln!` for a terminal (see [`println_escaped!`](crate::println_escaped)).
#[macro_export]
macro_rules! eprintln_escaped {
    ($($arg:tt)*) => {
        ::std::eprintln!("{}", $crate::token::escape_lines(&::std::format!($($arg)*)))
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn look_alikes_are_not_tokens() {
        for bad in [
            "Staging ",
            " staging",
            "staging\u{200b}",
            "ＳＴＡＧＩＮＧ",
            "ſtaging",
            "stag\u{0456}ng",
            "a\tb",
            "a\u{1b}b",
            "",
        ] {
            assert!(!is_token(bad), "{bad:?}");
            assert!(!is_segment(bad), "{bad:?}");
        }
        assert!(is_token("payments.read"));
        assert!(!is_segment("payments.read"));
    }

    #[test]
    fn text_compares_after_nfkc() {
        let literal = nfkc("Ｍüller");
        assert_eq!(literal, "Müller");
        assert!(text_eq("Mu\u{308}ller", &literal));
        assert!(text_eq("Ｍüller", &literal));
        assert!(!text_eq("Muller", &literal));
        assert!(!is_text(""));
        assert!(!is_text("\u{a0}x"), "NBSP becomes a leading space");
        assert!(!is_text("x\u{2028}y"));
        assert!(!is_text("x\u{202e}y"));
    }

    #[test]
    fn escapes_hide_nothing() {
        assert_eq!(escape_for_terminal("a\\b"), "a\\b");
        assert_eq!(escape_for_terminal("x\u{202e}y"), "x\\u{202e}y");
        assert_eq!(escape_for_terminal("line\nnext"), "line\\nnext");
    }
}
