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

use std::borrow::Cow;

use rust_decimal::Decimal;

use crate::event::{Event, Value};

pub use crate::aggregate::{Name, Window, WindowList, duration_text, parse_duration};

impl Window {
    /// Whether `event`'s calls count in this window.
    pub fn covers_event(&self, event: &Event) -> bool {
        match (&event.resource, &event.action) {
            (Some(r), Some(a)) => self.covers(r, a),
            _ => false,
        }
    }

    /// The group `event` falls in: its `per` values (and a `new:`
    /// aggregate's values), each a plain token folded to lowercase (so
    /// `Attacker-1` and `attacker-1` are one group) or, for a field of the
    /// policy's `unicode_fields`, acceptable text in NFKC form;
    /// length-prefixed. `None` when a value is missing or neither: such a
    /// call cannot be counted, and a rule testing the window finds its
    /// aggregate missing (malformed: deny).
    pub fn group(&self, event: &Event) -> Option<String> {
        let mut out = String::new();
        for name in self.group_fields() {
            let value = match name.as_ref() {
                "actor" => event.actor.as_deref(),
                "environment" => event.environment.as_deref(),
                field => event.payload.get(field).and_then(Value::as_str),
            }?;
            let value = if self.text.iter().any(|t| t == name) {
                if !crate::token::is_text(value) {
                    return None;
                }
                crate::token::nfkc(value)
            } else {
                if !crate::token::is_token(value) {
                    return None;
                }
                value.to_ascii_lowercase()
            };
            out.push_str(&format!("{}:{value};", value.len()));
        }
        Some(out)
    }

    /// What `event` adds to the aggregate: 1 for calls, the field's exact
    /// value for a sum (`None` when it has none).
    pub fn contribution(&self, event: &Event) -> Option<Decimal> {
        match &self.field {
            _ if self.is_new() => Some(Decimal::ONE),
            None => Some(Decimal::ONE),
            Some(f) => event.payload.get(f.as_ref()).and_then(Value::as_number),
        }
    }
}

/// Sets each window's aggregate in `event`. For a sum or a count:
/// `earlier(window, group, window.seconds)` (the total of the authorized
/// calls recorded in the last that many seconds, later ones included, from
/// whatever holds the history) plus the event's own contribution. For a
/// `new:` aggregate: the earlier calls of the group (its `per` values and
/// the new values) in the window, less those within its cooling period;
/// the call itself is not counted, so 0 means new. A window the event's
/// capability is outside of is left out; one whose group or contribution
/// the event lacks, or whose total overflows, is removed, so a rule that
/// tests it finds it missing. Values the event itself carried under the
/// reserved names are always replaced or removed: they never decide.
pub fn augment(
    event: &Event,
    windows: &[Window],
    earlier: &mut dyn FnMut(&Window, &str, u64) -> Decimal,
) -> Event {
    augment_keyed(event, windows, &[], earlier)
}

/// `windows[i]`'s key: `keys[i]` when the caller made it beforehand, made
/// here otherwise.
fn key_at<'k>(windows: &[Window], keys: &'k [String], i: usize) -> Cow<'k, str> {
    match (keys.get(i), windows.get(i)) {
        (Some(key), _) => Cow::Borrowed(key.as_str()),
        (None, Some(w)) => Cow::Owned(w.key()),
        (None, None) => Cow::Borrowed(""),
    }
}

/// [`augment`] with the windows' keys made beforehand (`keys[i]` is
/// `windows[i].key()`; a key missing from `keys` is made here): for a
/// caller that decides many events on the same windows.
pub fn augment_keyed(
    event: &Event,
    windows: &[Window],
    keys: &[String],
    earlier: &mut dyn FnMut(&Window, &str, u64) -> Decimal,
) -> Event {
    let mut out = event.clone();
    out.payload.retain(|k, _| !k.starts_with('@'));
    for (i, w) in windows.iter().enumerate() {
        if !w.covers_event(event) {
            continue;
        }
        let total = w.group(event).and_then(|group| {
            if w.is_new() {
                let seen = earlier(w, &group, w.seconds);
                if w.cooling == 0 {
                    return Some(seen);
                }
                let recent = earlier(w, &group, w.cooling.min(w.seconds));
                return seen.checked_sub(recent).map(|d| d.max(Decimal::ZERO));
            }
            let own = w.contribution(event)?;
            earlier(w, &group, w.seconds).checked_add(own)
        });
        if let Some(total) = total {
            out.payload
                .insert(key_at(windows, keys, i).into_owned(), Value::Number(total));
        }
    }
    out
}

/// The totals an augmented event carries, in words, for a reason:
/// `sum of amount over 24h per actor, destination: 1499.97 with this call`.
/// `None` when it carries none.
pub fn totals_text(windows: &[Window], augmented: &Event) -> Option<String> {
    totals_text_keyed(windows, &[], augmented)
}

/// [`totals_text`] with the windows' keys made beforehand, as for
/// [`augment_keyed`].
pub fn totals_text_keyed(windows: &[Window], keys: &[String], augmented: &Event) -> Option<String> {
    let totals: Vec<String> = windows
        .iter()
        .enumerate()
        .filter_map(|(i, w)| {
            let total = augmented
                .payload
                .get(key_at(windows, keys, i).as_ref())?
                .as_number()?;
            if w.is_new() {
                return Some(if total.is_zero() {
                    format!("{}: new", w.describe())
                } else {
                    format!(
                        "{}: known from {} earlier calls",
                        w.describe(),
                        total.normalize()
                    )
                });
            }
            Some(format!(
                "{}: {} with this call",
                w.describe(),
                total.normalize()
            ))
        })
        .collect();
    (!totals.is_empty()).then(|| totals.join("; "))
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
    pub fn parse(text: &str, file: &str) -> Result<History, HistoryError> {
        let mut history = History::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let at = |error| HistoryError::Line {
                file: file.to_owned(),
                line: i + 1,
                error: Box::new(error),
            };
            let (time, event) = timed_event(line).map_err(at)?;
            let time = time.ok_or_else(|| at(HistoryError::NoTime))?;
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

    /// `window`'s total for `group` as the runtime computes it at `now`:
    /// every call of the group recorded later than `now - window`, calls
    /// recorded after `now` included, each call counted as recorded no
    /// earlier than the group's call before it (a clock that steps back
    /// never lets a call leave the window sooner).
    pub fn total(&self, window: &Window, group: &str, now: i64, seconds: u64) -> Decimal {
        let after = now.saturating_sub(Window::micros_of(seconds));
        let mut latest = i64::MIN;
        let mut total = Decimal::ZERO;
        for (t, e) in &self.calls {
            if !window.covers_event(e) || window.group(e).as_deref() != Some(group) {
                continue;
            }
            let Some(v) = window.contribution(e) else {
                continue;
            };
            latest = latest.max(*t);
            if latest > after {
                total = total.saturating_add(v);
            }
        }
        total
    }

    /// Decides one event line of `eval` (an event with an optional `time`):
    /// velocity windows filled in from this history as of the line's time
    /// (default: now); an allowed call joins the history; a decision held or
    /// denied on a window says its totals.
    pub fn decide_line(
        &mut self,
        policy: &crate::policy::Policy,
        windows: &[Window],
        text: &str,
    ) -> crate::eval::Decision {
        let (time, event) = match timed_event(text) {
            Ok(pair) => pair,
            Err(e) => return crate::eval::Decision::unreadable(e.to_string()),
        };
        if windows.is_empty() {
            return policy.decide(&event);
        }
        let now = time.unwrap_or_else(crate::time::now_micros);
        let augmented = self.augment(&event, windows, now);
        let mut decision = policy.decide(&augmented);
        if decision.kind == crate::policy::DecisionKind::Allow {
            self.push(now, event);
        } else if let Some(totals) = totals_text(windows, &augmented) {
            decision.reason = format!("{} ({totals})", decision.reason);
        }
        decision
    }

    /// `event` with every window of `windows` filled in from this history, as of `now`.
    pub fn augment(&self, event: &Event, windows: &[Window], now: i64) -> Event {
        augment(event, windows, &mut |w, group, seconds| {
            self.total(w, group, now, seconds)
        })
    }
}

/// A history line, or a timed event, that cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HistoryError {
    /// Not an event.
    #[error(transparent)]
    Event(#[from] crate::event::EventError),
    /// A `time` that is not an RFC 3339 UTC time.
    #[error("`time` is not an RFC 3339 UTC time: {0:?}")]
    BadTime(String),
    /// A history line without a `time`.
    #[error("the call has no `time`")]
    NoTime,
    /// One of the above, at a line of a history file.
    #[error("{file}:{line}: {error}")]
    Line {
        /// The file as named.
        file: String,
        /// Its line (from 1).
        line: usize,
        /// What is wrong there.
        #[source]
        error: Box<HistoryError>,
    },
}

/// Reads one JSON line of an event with an optional top-level `time`.
pub fn timed_event(line: &str) -> Result<(Option<i64>, Event), HistoryError> {
    let (time, event) = Event::from_json_timed(line)?;
    let time = match time {
        None => None,
        Some(t) => Some(crate::time::parse_time(&t).ok_or(HistoryError::BadTime(t))?),
    };
    Ok((time, event))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use std::borrow::Cow;

    use rust_decimal::Decimal;

    use super::{Window, augment, augment_keyed, totals_text, totals_text_keyed};
    use crate::event::Event;

    fn window(field: Option<&'static str>, seconds: u64, per: &'static [&'static str]) -> Window {
        Window {
            field: field.map(Cow::Borrowed),
            seconds,
            per: per.iter().map(|p| Cow::Borrowed(*p)).collect(),
            resource: Some(Cow::Borrowed("payments")),
            action: Some(Cow::Borrowed("transfer")),
            new: Cow::Borrowed(&[]),
            cooling: 0,
            text: Cow::Borrowed(&[]),
        }
    }

    /// Keys made beforehand, all, some or none of them, give the event and
    /// the reason text that keys made on the spot give; a key left out of
    /// `keys` is made, never skipped (a skipped window would leave its total
    /// missing, and a cap that tests it would not hold).
    #[test]
    fn keyed_windows_augment_as_the_plain_ones() {
        let windows = vec![
            window(Some("amount"), 86_400, &["actor", "destination"]),
            window(None, 3_600, &["actor"]),
        ];
        let keys: Vec<String> = windows.iter().map(Window::key).collect();
        let event = Event::from_json(
            r#"{"actor": "agent-1", "capability": "payments.transfer",
                "payload": {"amount": 120.5, "destination": "vendor-7", "@calls/3600s/actor/payments.transfer": 0}}"#,
        )
        .unwrap();
        let mut earlier = |w: &Window, _: &str, _: u64| {
            if w.field.is_some() {
                Decimal::new(99_950, 2)
            } else {
                Decimal::from(4)
            }
        };
        let plain = augment(&event, &windows, &mut earlier);
        assert_eq!(plain.payload.len(), 4, "{:?}", plain.payload);
        for made in [&keys[..], &keys[..1], &[]] {
            let keyed = augment_keyed(&event, &windows, made, &mut earlier);
            assert_eq!(keyed, plain);
            assert_eq!(
                totals_text_keyed(&windows, made, &keyed),
                totals_text(&windows, &plain)
            );
        }
        let text = totals_text(&windows, &plain).unwrap();
        assert!(text.contains(": 1120 with this call"), "{text}");
        assert!(text.contains(": 5 with this call"), "{text}");
    }
}
