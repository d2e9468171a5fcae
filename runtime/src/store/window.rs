//! Velocity windows on a table store (SQLite, PostgreSQL): one algorithm,
//! each backend supplies four row operations.
//!
//! Each window row carries its group's running total; a head row per group
//! holds the latest running total and a hint: the first row the last
//! decision's window counted (its number, its time and the running total
//! just before it). A group's rows are in time order (a row is never stamped
//! earlier than the one before it: a clock that steps back stamps the later
//! time). A window's total counts every row stamped later than the deciding
//! call's time minus the window, rows stamped after the call's own time
//! included: the latest running total minus the one before the first such
//! row. That row is found from the hint, forward or backward, so no call's
//! clock removes rows another call's window still counts: a clock ahead or
//! a step backward only ever makes a cap stricter.

use std::collections::HashMap;

use rust_decimal::Decimal;

use super::StoreError;

/// A window group's head row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct WindowHead {
    pub last_n: i64,
    pub last_at: i64,
    pub running: Decimal,
    /// The window's first row (`last_n + 1`: the window is empty).
    pub start_n: i64,
    /// Its time.
    pub start_at: i64,
    /// The running total just before it.
    pub start_before: Decimal,
}

/// The rows a backend keeps for windows, inside one transaction.
pub(crate) trait WindowRows {
    /// The group's head as stored.
    fn load_head(&mut self, spec: &str, group: &str) -> Result<Option<WindowHead>, StoreError>;
    /// Stores the group's head (insert or replace).
    fn store_head(&mut self, spec: &str, group: &str, head: &WindowHead) -> Result<(), StoreError>;
    /// Row `n` of a group: (at, running, value).
    fn row(
        &mut self,
        spec: &str,
        group: &str,
        n: i64,
    ) -> Result<Option<(i64, Decimal, Decimal)>, StoreError>;
    /// Appends row `head.last_n` with `value`.
    fn insert_row(
        &mut self,
        spec: &str,
        group: &str,
        head: &WindowHead,
        value: Decimal,
    ) -> Result<(), StoreError>;
    /// Rewrites row `n`'s value and running total.
    fn update_row(
        &mut self,
        spec: &str,
        group: &str,
        n: i64,
        value: Decimal,
        running: Decimal,
    ) -> Result<(), StoreError>;
    /// The transaction's cache of heads.
    fn head_cache(&mut self) -> &mut HeadCache;
}

/// Heads read or written in this transaction (it is the only writer while
/// it lasts, so they stay true until it ends).
pub(crate) type HeadCache = HashMap<(String, String), Option<WindowHead>>;

fn head_of(
    rows: &mut impl WindowRows,
    cache: &mut HeadCache,
    spec: &str,
    group: &str,
) -> Result<Option<WindowHead>, StoreError> {
    let key = (spec.to_owned(), group.to_owned());
    if let Some(head) = cache.get(&key) {
        return Ok(head.clone());
    }
    let head = rows.load_head(spec, group)?;
    cache.insert(key, head.clone());
    Ok(head)
}

fn put_head(
    rows: &mut impl WindowRows,
    cache: &mut HeadCache,
    spec: &str,
    group: &str,
    head: &WindowHead,
) -> Result<(), StoreError> {
    rows.store_head(spec, group, head)?;
    cache.insert((spec.to_owned(), group.to_owned()), Some(head.clone()));
    Ok(())
}

fn overflow(spec: &str) -> StoreError {
    StoreError::Invalid(format!("window total of {spec} overflows").into())
}

/// Runs `step` with the transaction's head cache taken out of it.
fn with_cache<R: WindowRows, T>(
    rows: &mut R,
    step: impl FnOnce(&mut R, &mut HeadCache) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let mut cache = std::mem::take(rows.head_cache());
    let result = step(rows, &mut cache);
    *rows.head_cache() = cache;
    result
}

/// The total of the group's rows recorded after `after`, and the first
/// such row's time.
pub(crate) fn total(
    rows: &mut impl WindowRows,
    spec: &str,
    group: &str,
    after: i64,
) -> Result<super::WindowTotal, StoreError> {
    with_cache(rows, |rows, cache| {
        total_in(rows, cache, spec, group, after)
    })
}

/// Adds an authorized call's contribution at `at`.
pub(crate) fn add(
    rows: &mut impl WindowRows,
    spec: &str,
    group: &str,
    at: i64,
    value: Decimal,
) -> Result<(), StoreError> {
    with_cache(rows, |rows, cache| {
        add_in(rows, cache, spec, group, at, value)
    })
}

fn total_in(
    rows: &mut impl WindowRows,
    cache: &mut HeadCache,
    spec: &str,
    group: &str,
    after: i64,
) -> Result<super::WindowTotal, StoreError> {
    let Some(mut head) = head_of(rows, cache, spec, group)? else {
        return Ok(super::WindowTotal::default());
    };
    let first = first_after(rows, spec, group, &head, after)?;
    if first.n != head.start_n {
        head.start_n = first.n;
        head.start_at = first.at;
        head.start_before = first.before;
        put_head(rows, cache, spec, group, &head)?;
    }
    if head.start_n > head.last_n {
        return Ok(super::WindowTotal::default());
    }
    Ok(super::WindowTotal {
        total: head
            .running
            .checked_sub(head.start_before)
            .ok_or_else(|| overflow(spec))?,
        oldest: Some(head.start_at),
    })
}

/// A row of a group as the window start needs it.
struct Start {
    n: i64,
    at: i64,
    /// The running total just before the row.
    before: Decimal,
}

/// Row `n` as a window start.
fn start_at_row(
    rows: &mut impl WindowRows,
    spec: &str,
    group: &str,
    n: i64,
) -> Result<Start, StoreError> {
    let (at, running, value) = rows.row(spec, group, n)?.ok_or_else(|| {
        StoreError::Invalid(format!("window {spec} lacks row {n} of its group").into())
    })?;
    Ok(Start {
        n,
        at,
        before: running.checked_sub(value).ok_or_else(|| overflow(spec))?,
    })
}

/// The group's first row stamped later than `after` (`last_n + 1`, with
/// the latest running total, when there is none). Rows are in time order;
/// the search starts at the head's hint and goes forward (the usual case,
/// a row or two) or backward (a call with an earlier time than the last
/// one), doubling its step, then halving.
fn first_after(
    rows: &mut impl WindowRows,
    spec: &str,
    group: &str,
    head: &WindowHead,
    after: i64,
) -> Result<Start, StoreError> {
    let end = Start {
        n: head.last_n + 1,
        at: head.last_at,
        before: head.running,
    };
    if head.last_n < 1 || head.last_at <= after {
        return Ok(end);
    }
    // Invariant: row `hi` is later than `after` (or `hi` is past the end);
    // row `lo` is not (or `lo` is 0).
    let hint = head.start_n.clamp(1, head.last_n);
    let at_hint = if hint == head.start_n {
        head.start_at
    } else {
        start_at_row(rows, spec, group, hint)?.at
    };
    let (mut lo, mut hi) = if at_hint > after {
        // Backward: find a row that is not later.
        let mut step = 1;
        let mut hi = hint;
        loop {
            let probe = hi - step;
            if probe < 1 {
                break (0, hi);
            }
            if start_at_row(rows, spec, group, probe)?.at > after {
                hi = probe;
                step *= 2;
            } else {
                break (probe, hi);
            }
        }
    } else {
        // Forward: find a row that is later (the last one is).
        let mut step = 1;
        let mut lo = hint;
        loop {
            let probe = lo + step;
            if probe >= head.last_n {
                break (lo, head.last_n);
            }
            if start_at_row(rows, spec, group, probe)?.at > after {
                break (lo, probe);
            }
            lo = probe;
            step *= 2;
        }
    };
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        if start_at_row(rows, spec, group, mid)?.at > after {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    if hi == head.start_n {
        // The head already holds the start it hints at (the usual case:
        // the window's first row has not moved).
        return Ok(Start {
            n: hi,
            at: head.start_at,
            before: head.start_before,
        });
    }
    start_at_row(rows, spec, group, hi)
}

fn add_in(
    rows: &mut impl WindowRows,
    cache: &mut HeadCache,
    spec: &str,
    group: &str,
    at: i64,
    value: Decimal,
) -> Result<(), StoreError> {
    let head = match head_of(rows, cache, spec, group)? {
        // Times never go backwards within a group, so rows stay in time
        // order even if the clock steps back.
        Some(h) => {
            let running = h.running.checked_add(value).ok_or_else(|| overflow(spec))?;
            let at = at.max(h.last_at);
            let empty = h.start_n > h.last_n;
            WindowHead {
                last_n: h.last_n + 1,
                last_at: at,
                running,
                start_n: if empty { h.last_n + 1 } else { h.start_n },
                start_at: if empty { at } else { h.start_at },
                start_before: if empty { h.running } else { h.start_before },
            }
        }
        None => WindowHead {
            last_n: 1,
            last_at: at,
            running: value,
            start_n: 1,
            start_at: at,
            start_before: Decimal::ZERO,
        },
    };
    rows.insert_row(spec, group, &head, value)?;
    put_head(rows, cache, spec, group, &head)
}

/// Changes what an authorized call counts: the group's first row stamped
/// at or after `at` (the call's time; its row was never stamped earlier)
/// whose value is `old` takes `new`, and the running totals from it on
/// follow. Rows of one time and value are interchangeable for every window
/// total, so which of them is changed does not matter. `false` when no
/// such row is left (the call was never counted, or its group's rows are
/// gone). Reads and rewrites the rows from that one to the group's last: an
/// outcome reported soon after its call touches a row or two.
pub(crate) fn adjust(
    rows: &mut impl WindowRows,
    spec: &str,
    group: &str,
    at: i64,
    old: Decimal,
    new: Decimal,
) -> Result<bool, StoreError> {
    with_cache(rows, |rows, cache| {
        let Some(mut head) = head_of(rows, cache, spec, group)? else {
            return Ok(false);
        };
        let delta = new.checked_sub(old).ok_or_else(|| overflow(spec))?;
        let mut n = first_after(rows, spec, group, &head, at.saturating_sub(1))?.n;
        let found = loop {
            if n > head.last_n {
                return Ok(false);
            }
            let (_, _, value) = rows.row(spec, group, n)?.ok_or_else(|| {
                StoreError::Invalid(format!("window {spec} lacks row {n}").into())
            })?;
            if value == old {
                break n;
            }
            n += 1;
        };
        for k in found..=head.last_n {
            let (_, running, value) = rows.row(spec, group, k)?.ok_or_else(|| {
                StoreError::Invalid(format!("window {spec} lacks row {k}").into())
            })?;
            let value = if k == found { new } else { value };
            let running = running.checked_add(delta).ok_or_else(|| overflow(spec))?;
            rows.update_row(spec, group, k, value, running)?;
        }
        head.running = head
            .running
            .checked_add(delta)
            .ok_or_else(|| overflow(spec))?;
        if found < head.start_n {
            head.start_before = head
                .start_before
                .checked_add(delta)
                .ok_or_else(|| overflow(spec))?;
        }
        put_head(rows, cache, spec, group, &head)?;
        Ok(true)
    })
}

/// A stored decimal.
pub(crate) fn decimal_of(text: &str) -> Result<Decimal, StoreError> {
    capfence_compiler::number::parse_exact(text).ok_or_else(|| {
        StoreError::Invalid(format!("window row holds {text:?}, not a number").into())
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use proptest::prelude::*;

    use crate::store::memory::MemoryStore;
    use crate::store::sqlite::{SqliteOptions, SqliteStore};
    use crate::store::{StoreError, Writer};

    /// One step: a call's contribution stamped at a time, or a window total
    /// asked for at a time (both in seconds; times jump back and forth, as
    /// hosts with different clocks would stamp them).
    #[derive(Debug, Clone)]
    enum Step {
        Add(i64, u32),
        Total(i64),
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            prop_oneof![
                (0i64..200, 1u32..50).prop_map(|(t, v)| Step::Add(t, v)),
                (0i64..200).prop_map(Step::Total),
            ],
            1..60,
        )
    }

    fn run(store: &dyn Writer, steps: &[Step]) -> Vec<crate::store::WindowTotal> {
        let mut totals = Vec::new();
        for step in steps {
            store
                .transaction(&mut |tx| {
                    match step {
                        Step::Add(at, v) => tx.add_to_window("w", "g", *at, (*v).into())?,
                        Step::Total(after) => totals.push(tx.window_total("w", "g", *after)?),
                    }
                    Ok::<(), StoreError>(())
                })
                .unwrap();
        }
        totals
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]

        /// The table algorithm (hint, search forward and back) gives every
        /// total the in-memory store's plain sum gives: every row stamped
        /// later than the asked time, whatever order the times came in; and
        /// the same oldest counted row (what a verdict's `frees_at` is from).
        #[test]
        fn window_totals_match_the_plain_sum(steps in steps()) {
            let dir = std::env::temp_dir().join(format!(
                "capfence-window-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&dir);
            let sqlite = SqliteStore::new(&dir, SqliteOptions::default());
            let memory = MemoryStore::new();
            let expected = run(&memory, &steps);
            let got = run(&sqlite, &steps);
            let _ = std::fs::remove_dir_all(&dir);
            prop_assert_eq!(got, expected);
        }
    }
}
