//! Velocity aggregates as the policy IR holds them: which calls a window
//! counts (capability segments, `per` fields), how long it is, and the
//! reserved payload name under which its total reaches the evaluators. No
//! event handling here: [`crate::window`] groups events and computes totals.

use std::borrow::Cow;

/// A name held by a [`Window`]: borrowed in generated code (a `static`),
/// owned when loaded from YAML.
pub type Name = Cow<'static, str>;

/// One aggregate a rule tests. The loader builds it with owned names;
/// generated tables write it with borrowed ones: one type for both.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// The summed payload field; `None` counts calls.
    pub field: Option<Name>,
    /// The window's length in seconds.
    pub seconds: u64,
    /// The fields whose values must match: `actor`, `environment` or payload
    /// field names, in the order written.
    pub per: Cow<'static, [Name]>,
    /// The rule's resource segment (`None`: `*`): which calls count.
    pub resource: Option<Name>,
    /// The rule's action segment (`None`: `*`).
    pub action: Option<Name>,
    /// For a `new:` aggregate, the fields whose values must be new (the
    /// group is `per` and these): its total is the number of earlier
    /// authorized calls of the group recorded in the window and before its
    /// `cooling`, the call itself not counted. Empty: a sum or a count.
    pub new: Cow<'static, [Name]>,
    /// A `new:` aggregate's cooling period in seconds: calls this recent do
    /// not yet make a value known.
    pub cooling: u64,
    /// The group fields the policy lists under `unicode_fields`: their
    /// values are compared as text after NFKC normalization; the others as
    /// tokens folded to lowercase.
    pub text: Cow<'static, [Name]>,
}

/// A `new:` aggregate's window when the rule names none: all history.
pub const ALL_HISTORY: u64 = u64::MAX;

/// The windows of a generated table (read once when a runtime is built,
/// never while deciding).
pub type WindowList = Vec<Window>;

impl Window {
    /// The reserved payload name under which the aggregate reaches the
    /// evaluators: `@sum(amount)/86400s/actor,destination/payments.transfer`.
    pub fn key(&self) -> String {
        let what = match &self.field {
            _ if self.is_new() => {
                format!("known({})/cooling {}s", self.new.join(","), self.cooling)
            }
            Some(f) => format!("sum({f})"),
            None => "calls".to_owned(),
        };
        let seconds = if self.seconds == ALL_HISTORY {
            "all".to_owned()
        } else {
            format!("{}s", self.seconds)
        };
        format!(
            "@{what}/{seconds}/{}/{}.{}",
            self.per.join(","),
            self.resource.as_deref().unwrap_or("*"),
            self.action.as_deref().unwrap_or("*")
        )
    }

    /// Whether this is a `new:` aggregate.
    pub fn is_new(&self) -> bool {
        !self.new.is_empty()
    }

    /// Every field whose values make the group: `per`, then a `new:`
    /// aggregate's value fields.
    pub fn group_fields(&self) -> impl Iterator<Item = &Name> {
        self.per.iter().chain(self.new.iter())
    }

    /// The aggregate in words: `sum of amount over 24h per actor, destination`.
    pub fn describe(&self) -> String {
        if self.is_new() {
            let mut text = format!("{} new per {}", self.new.join(", "), self.per.join(", "));
            if self.seconds != ALL_HISTORY {
                text.push_str(&format!(" over {}", duration_text(self.seconds)));
            }
            if self.cooling > 0 {
                text.push_str(&format!(", cooling {}", duration_text(self.cooling)));
            }
            return text;
        }
        let what = match &self.field {
            Some(f) => format!("sum of {f}"),
            None => "calls".to_owned(),
        };
        format!(
            "{what} over {} per {}",
            duration_text(self.seconds),
            self.per.join(", ")
        )
    }

    /// `seconds` in microseconds (saturating: all history reaches back to
    /// the first record).
    pub fn micros_of(seconds: u64) -> i64 {
        i64::try_from(u128::from(seconds) * 1_000_000).unwrap_or(i64::MAX)
    }

    /// The window's length in microseconds.
    pub fn micros(&self) -> i64 {
        Self::micros_of(self.seconds)
    }

    /// Whether calls of `resource.action` count in this window.
    pub fn covers(&self, resource: &str, action: &str) -> bool {
        crate::capability::covers(
            self.resource.as_deref(),
            self.action.as_deref(),
            resource,
            action,
        )
    }
}

/// `86400` → `24h`, `90` → `90s`, `1800` → `30m`, `172800` → `2d`.
pub fn duration_text(seconds: u64) -> String {
    if seconds >= 2 * 86_400 && seconds.is_multiple_of(86_400) {
        format!("{}d", seconds / 86_400)
    } else if seconds > 0 && seconds.is_multiple_of(3600) {
        format!("{}h", seconds / 3600)
    } else if seconds > 0 && seconds.is_multiple_of(60) {
        format!("{}m", seconds / 60)
    } else {
        format!("{seconds}s")
    }
}

/// Parses `30s`, `15m`, `24h`, `7d` (a whole number and one unit), at most
/// 366 days. `None` for anything else.
pub fn parse_duration(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit())?;
    let (digits, unit) = t.split_at(split);
    if digits.is_empty() || (digits.len() > 1 && digits.starts_with('0')) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    let seconds = match unit {
        "s" => n,
        "m" => n.checked_mul(60)?,
        "h" => n.checked_mul(3600)?,
        "d" => n.checked_mul(86_400)?,
        _ => return None,
    };
    (seconds > 0 && seconds <= 366 * 86_400).then_some(seconds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_and_print() {
        assert_eq!(parse_duration("24h"), Some(86_400));
        assert_eq!(parse_duration("90s"), Some(90));
        assert_eq!(parse_duration("7d"), Some(604_800));
        for bad in [
            "", "h", "24", "0s", "1.5h", "24 h", "1w", "-1h", "367d", "01h",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
        assert_eq!(duration_text(86_400), "24h");
        assert_eq!(duration_text(172_800), "2d");
        assert_eq!(duration_text(1800), "30m");
        assert_eq!(duration_text(90), "90s");
    }
}
