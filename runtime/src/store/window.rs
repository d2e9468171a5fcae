//! Velocity windows on a table store (SQLite, PostgreSQL): one algorithm,
//! each backend supplies four row operations.
//!
//! Each window row carries its group's running total; a head row per group
//! holds the latest running total and the window's first row (its number,
//! its time and the running total just before it). A window's total is the
//! latest running total minus the one before its first row; the start only
//! moves forward, as time does, one lookup per row it passes.

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
    StoreError::Invalid(format!("window total of {spec} overflows"))
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

/// The total of the group's rows recorded after `after`.
pub(crate) fn total(
    rows: &mut impl WindowRows,
    spec: &str,
    group: &str,
    after: i64,
) -> Result<Decimal, StoreError> {
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
) -> Result<Decimal, StoreError> {
    let Some(mut head) = head_of(rows, cache, spec, group)? else {
        return Ok(Decimal::ZERO);
    };
    let mut moved = false;
    while head.start_n <= head.last_n && head.start_at <= after {
        head.start_n += 1;
        moved = true;
        if head.start_n <= head.last_n {
            let (at, running, value) = rows.row(spec, group, head.start_n)?.ok_or_else(|| {
                StoreError::Invalid(format!(
                    "window {spec} lacks row {} of its group",
                    head.start_n
                ))
            })?;
            head.start_at = at;
            head.start_before = running.checked_sub(value).ok_or_else(|| overflow(spec))?;
        }
    }
    if moved {
        put_head(rows, cache, spec, group, &head)?;
    }
    if head.start_n > head.last_n {
        return Ok(Decimal::ZERO);
    }
    head.running
        .checked_sub(head.start_before)
        .ok_or_else(|| overflow(spec))
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

/// A stored decimal.
pub(crate) fn decimal_of(text: &str) -> Result<Decimal, StoreError> {
    capfence_compiler::number::parse_exact(text)
        .ok_or_else(|| StoreError::Invalid(format!("window row holds {text:?}, not a number")))
}
