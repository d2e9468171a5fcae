//! Velocity windows: `amount_sum_gt` and `calls_gt` over a time window.
//!
//! A rule key such as `amount_sum_gt: 1000` with `window: 24h` and
//! `per: [actor, destination]` tests an *aggregate*: the sum of `amount` over
//! the calls its capability pattern covers that were authorized in the last
//! 24 hours with the same actor and destination, plus the call being decided.
//!
//! The evaluators never read history. An aggregate is a numeric input under
//! a reserved payload name ([`Window::key`], starting with `@`, which no
//! payload field name can): whoever has the history — the runtime, inside
//! the transaction that records the decision, or `eval --history` — computes
//! it and [`augment`]s the event before deciding. The reference evaluator, the
//! generated table and the analysis then treat it as one more number, ranked
//! against the rule's threshold.

use rust_decimal::Decimal;

use crate::event::{Event, Value};

/// One aggregate a rule tests.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Window {
    /// The summed payload field; `None` counts calls.
    pub field: Option<String>,
    /// The window's length in seconds.
    pub seconds: u64,
    /// The fields whose values must match: `actor`, `environment` or payload
    /// field names, in the order written.
    pub per: Vec<String>,
    /// The rule's resource segment (`None`: `*`): which calls count.
    pub resource: Option<String>,
    /// The rule's action segment (`None`: `*`).
    pub action: Option<String>,
}

/// A [`Window`] as generated code writes it.
#[derive(Debug, Clone, Copy)]
pub struct StaticWindow {
    /// The summed field, or `None` for calls.
    pub field: Option<&'static str>,
    /// The length in seconds.
    pub seconds: u64,
    /// The grouping fields.
    pub per: &'static [&'static str],
    /// The resource segment.
    pub resource: Option<&'static str>,
    /// The action segment.
    pub action: Option<&'static str>,
}

/// The windows of a generated table, owned (read once when a runtime is
/// built, never while deciding).
pub type WindowList = Vec<Window>;

/// Owned windows from a generated table's static ones.
pub fn windows_from_static(list: &[StaticWindow]) -> WindowList {
    list.iter().map(Window::from_static).collect()
}

impl Window {
    /// The window of generated code.
    pub fn from_static(w: &StaticWindow) -> Window {
        Window {
            field: w.field.map(str::to_owned),
            seconds: w.seconds,
            per: w.per.iter().map(|p| (*p).to_owned()).collect(),
            resource: w.resource.map(str::to_owned),
            action: w.action.map(str::to_owned),
        }
    }

    /// The reserved payload name under which the aggregate reaches the
    /// evaluators: `@sum(amount)/86400s/actor,destination/payments.transfer`.
    pub fn key(&self) -> String {
        let what = match &self.field {
            Some(f) => format!("sum({f})"),
            None => "calls".to_owned(),
        };
        format!(
            "@{what}/{}s/{}/{}.{}",
            self.seconds,
            self.per.join(","),
            self.resource.as_deref().unwrap_or("*"),
            self.action.as_deref().unwrap_or("*")
        )
    }

    /// The aggregate in words: `sum of amount over 24h per actor, destination`.
    pub fn describe(&self) -> String {
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

    /// The window's length in microseconds.
    pub fn micros(&self) -> i64 {
        i64::try_from(u128::from(self.seconds) * 1_000_000).unwrap_or(i64::MAX)
    }

    /// Whether calls of `resource.action` count in this window.
    pub fn covers(&self, resource: &str, action: &str) -> bool {
        self.resource.as_deref().is_none_or(|r| r == resource)
            && self.action.as_deref().is_none_or(|a| a == action)
    }

    /// Whether `event`'s calls count in this window.
    pub fn covers_event(&self, event: &Event) -> bool {
        match (&event.resource, &event.action) {
            (Some(r), Some(a)) => self.covers(r, a),
            _ => false,
        }
    }

    /// The group `event` falls in: its `per` values, each a plain token,
    /// folded to lowercase (so `Attacker-1` and `attacker-1` are one group),
    /// length-prefixed. `None` when a value is missing or not a token: such a
    /// call cannot be counted, and a rule testing the window finds its
    /// aggregate missing (malformed: deny).
    pub fn group(&self, event: &Event) -> Option<String> {
        let mut out = String::new();
        for name in &self.per {
            let value = match name.as_str() {
                "actor" => event.actor.as_deref(),
                "environment" => event.environment.as_deref(),
                field => event.payload.get(field).and_then(Value::as_str),
            }?;
            if !crate::token::is_token(value) {
                return None;
            }
            let value = value.to_ascii_lowercase();
            out.push_str(&format!("{}:{value};", value.len()));
        }
        Some(out)
    }

    /// What `event` adds to the aggregate: 1 for calls, the field's exact
    /// value for a sum (`None` when it has none).
    pub fn contribution(&self, event: &Event) -> Option<Decimal> {
        match &self.field {
            None => Some(Decimal::ONE),
            Some(f) => event.payload.get(f).and_then(Value::as_number),
        }
    }
}

/// Sets each window's aggregate in `event`: `earlier(window, group)` (the
/// total of the authorized calls in the window, from whatever holds the
/// history) plus the event's own contribution. A window the event's
/// capability is outside of is left out; one whose group or contribution
/// the event lacks, or whose total overflows, is removed, so a rule that
/// tests it finds it missing. Values the event itself carried under the
/// reserved names are always replaced or removed: they never decide.
pub fn augment(
    event: &Event,
    windows: &[Window],
    earlier: &mut dyn FnMut(&Window, &str) -> Decimal,
) -> Event {
    let mut out = event.clone();
    out.payload.retain(|k, _| !k.starts_with('@'));
    for w in windows.iter().filter(|w| w.covers_event(event)) {
        let total = w.group(event).and_then(|group| {
            let own = w.contribution(event)?;
            earlier(w, &group).checked_add(own)
        });
        if let Some(total) = total {
            out.payload.insert(w.key(), Value::Number(total));
        }
    }
    out
}

/// The totals an augmented event carries, in words, for a reason:
/// `sum of amount over 24h per actor, destination: 1499.97 with this call`.
/// `None` when it carries none.
pub fn totals_text(windows: &[Window], augmented: &Event) -> Option<String> {
    let totals: Vec<String> = windows
        .iter()
        .filter_map(|w| {
            let total = augmented.payload.get(&w.key())?.as_number()?;
            Some(format!(
                "{}: {} with this call",
                w.describe(),
                total.normalize()
            ))
        })
        .collect();
    (!totals.is_empty()).then(|| totals.join("; "))
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

/// Earlier authorized calls with their times, for `eval --history` and
/// `explain --history`: what the runtime reads from its ledger.
#[derive(Debug, Clone, Default)]
pub struct History {
    calls: Vec<(i64, Event)>,
}

impl History {
    /// Reads JSON lines, each an event with a `time` (RFC 3339 UTC,
    /// `2026-11-27T10:00:00Z`). Errors name the line.
    pub fn parse(text: &str, file: &str) -> Result<History, String> {
        let mut history = History::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let (time, event) = timed_event(line).map_err(|e| format!("{file}:{}: {e}", i + 1))?;
            let time = time.ok_or_else(|| format!("{file}:{}: the call has no `time`", i + 1))?;
            history.calls.push((time, event));
        }
        Ok(history)
    }

    /// Adds an authorized call.
    pub fn push(&mut self, time: i64, event: Event) {
        self.calls.push((time, event));
    }

    /// The latest time in the history.
    pub fn latest(&self) -> Option<i64> {
        self.calls.iter().map(|(t, _)| *t).max()
    }

    /// `window`'s total for `group` over `(now - window, now]`.
    pub fn total(&self, window: &Window, group: &str, now: i64) -> Decimal {
        let after = now.saturating_sub(window.micros());
        self.calls
            .iter()
            .filter(|(t, e)| {
                *t > after
                    && *t <= now
                    && window.covers_event(e)
                    && window.group(e).as_deref() == Some(group)
            })
            .filter_map(|(_, e)| window.contribution(e))
            .fold(Decimal::ZERO, |total, v| total.saturating_add(v))
    }

    /// `event` with every window of `windows` filled in from this history, as of `now`.
    pub fn augment(&self, event: &Event, windows: &[Window], now: i64) -> Event {
        augment(event, windows, &mut |w, group| self.total(w, group, now))
    }
}

/// Reads one JSON line of an event with an optional top-level `time`.
pub fn timed_event(line: &str) -> Result<(Option<i64>, Event), String> {
    let (time, event) = Event::from_json_timed(line).map_err(|e| e.to_string())?;
    let time = match time {
        None => None,
        Some(t) => Some(
            crate::time::parse_time(&t)
                .ok_or_else(|| format!("`time` is not an RFC 3339 UTC time: {t:?}"))?,
        ),
    };
    Ok((time, event))
}
