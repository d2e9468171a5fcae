//! Storage behind a trait: the audit chain and the approval state.
//!
//! A [`Store`] runs work in one serialized, durable transaction; the runtime
//! puts a whole batch of decisions (group commit) or one operator action in
//! each. The embedded default is [`sqlite::SqliteStore`]; [`memory::MemoryStore`]
//! keeps everything in process memory (tests, benchmarks); `postgres::PostgresStore`
//! (feature `postgres`) is one ledger for many agent hosts. Writing (the
//! transaction and its `Tx`) is sealed inside this crate; every backend is
//! one of these three.

pub mod memory;
#[cfg(feature = "postgres")]
pub mod postgres;
mod rows;
pub mod sqlite;
mod window;

use crate::approvals::{Grant, Ticket, TicketStatus};
use crate::audit::{AuditRecord, RecordView};

/// Whether `url` names a PostgreSQL server (`postgres://` or `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// Opens the store a URL names: `postgres://…` or `postgresql://…` for a
/// shared PostgreSQL server (needs the `postgres` feature; the `capfence`
/// binary has it), anything else a SQLite state directory (`sqlite:DIR` or
/// a plain path). Only the URL is checked here: a server or file that
/// cannot be reached makes each transaction fail (deny) until it can be.
pub fn open_url(
    url: &str,
    lock_timeout: std::time::Duration,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if is_postgres_url(url) {
        #[cfg(feature = "postgres")]
        {
            let options = postgres::PostgresOptions {
                lock_timeout,
                ..postgres::PostgresOptions::default()
            };
            return Ok(std::sync::Arc::new(postgres::PostgresStore::new(
                url, options,
            )?));
        }
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::Io(
            "this build of capfence has no PostgreSQL store (enable the `postgres` feature)"
                .to_owned()
                .into(),
        ));
    }
    let dir = url.strip_prefix("sqlite:").unwrap_or(url);
    if dir.is_empty() || dir.contains("://") {
        return Err(StoreError::Io(
            format!("`{url}` is neither a postgres:// URL nor a SQLite state directory").into(),
        ));
    }
    Ok(std::sync::Arc::new(sqlite::SqliteStore::new(
        dir,
        sqlite::SqliteOptions {
            lock_timeout,
            ..sqlite::SqliteOptions::default()
        },
    )))
}

/// Opens the ledger a URL names ([`open_url`]'s forms) for an operator
/// command, connecting now so a fault is reported at once: the PostgreSQL
/// schema is checked (created if missing); a SQLite state directory must
/// already hold a ledger when `must_exist`.
pub fn open_url_checked(
    url: &str,
    must_exist: bool,
) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    if is_postgres_url(url) {
        #[cfg(feature = "postgres")]
        return Ok(std::sync::Arc::new(postgres::PostgresStore::open_checked(
            url,
            postgres::PostgresOptions::default(),
        )?));
        #[cfg(not(feature = "postgres"))]
        return Err(StoreError::Io(
            "this build of capfence has no PostgreSQL store (enable the `postgres` feature)"
                .to_owned()
                .into(),
        ));
    }
    let dir = std::path::Path::new(url.strip_prefix("sqlite:").unwrap_or(url));
    if must_exist && !dir.join(sqlite::LEDGER_FILE).exists() {
        return Err(StoreError::Io(
            format!(
                "no CapFence state in {} (set --state or CAPFENCE_STATE)",
                dir.display()
            )
            .into(),
        ));
    }
    Ok(std::sync::Arc::new(sqlite::SqliteStore::open_checked(
        dir,
        sqlite::SqliteOptions::default(),
    )?))
}

/// A storage fault. Every one of them makes `execute` deny. The kind is for
/// code to branch on; each carries a [`Detail`] (what happened, and the
/// driver's or the OS's error beneath it as its `source()`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// Another writer held the database past the lock timeout.
    #[error("audit storage is locked by another writer past the lock timeout: {0}")]
    Locked(#[source] Detail),
    /// The storage is read-only.
    #[error("audit storage is read-only: {0}")]
    ReadOnly(#[source] Detail),
    /// The disk (or the configured size limit) is full.
    #[error("audit storage is full: {0}")]
    Full(#[source] Detail),
    /// The files are damaged.
    #[error("audit storage is corrupted: {0}")]
    Corrupt(#[source] Detail),
    /// This host's clock differs from the ledger's (the PostgreSQL server's)
    /// by more than the tolerance: its decisions are refused rather than
    /// stamped with a time the others do not share.
    #[error(
        "this host's clock is off the ledger's: this host's clock is {} the server's by \
         {:.3} s, more than the tolerance of {:.3} s (clock_tolerance_ms); fix the host's \
         time (NTP)",
        if .host_micros > .ledger_micros { "ahead of" } else { "behind" },
        .host_micros.abs_diff(*.ledger_micros) as f64 / 1e6,
        *.tolerance_micros as f64 / 1e6
    )]
    ClockSkew {
        /// This host's time (µs since the epoch).
        host_micros: i64,
        /// The ledger's (the server's) time at the same moment.
        ledger_micros: i64,
        /// How far apart they may be (µs).
        tolerance_micros: u64,
    },
    /// The files belong to something else, or to a newer format.
    #[error("audit storage is not a CapFence state directory: {0}")]
    Foreign(#[source] Detail),
    /// The files cannot be opened or written.
    #[error("audit storage I/O error: {0}")]
    Io(#[source] Detail),
    /// The data in storage breaks an invariant (a malformed row).
    #[error("audit storage holds invalid data: {0}")]
    Invalid(#[source] Detail),
}

/// What a [`StoreError`] says happened, with the error beneath it (the
/// SQLite or PostgreSQL driver's, the OS's) as its `source()` when there is
/// one. Compared by message; cloned cheaply (one waiter of a group commit
/// each gets the same fault).
#[derive(Clone)]
pub struct Detail {
    message: String,
    source: Option<std::sync::Arc<dyn std::error::Error + Send + Sync>>,
}

impl Detail {
    /// `message`, caused by `source`.
    pub fn caused(
        message: impl Into<String>,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Detail {
        Detail {
            message: message.into(),
            source: Some(std::sync::Arc::new(source)),
        }
    }

    /// What happened, in words.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl From<String> for Detail {
    fn from(message: String) -> Detail {
        Detail {
            message,
            source: None,
        }
    }
}

impl From<&str> for Detail {
    fn from(message: &str) -> Detail {
        Detail::from(message.to_owned())
    }
}

impl std::fmt::Display for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::fmt::Debug for Detail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Detail");
        d.field("message", &self.message);
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl std::error::Error for Detail {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn std::error::Error + 'static))
    }
}

impl PartialEq for Detail {
    fn eq(&self, other: &Detail) -> bool {
        self.message == other.message
    }
}

impl Eq for Detail {}

/// A window's total for a group, and when the oldest call it counts was
/// recorded (`None`: it counts none).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WindowTotal {
    /// The sum of the counted calls' contributions.
    pub total: rust_decimal::Decimal,
    /// The oldest counted call's time (µs since the epoch).
    pub oldest: Option<i64>,
}

/// One row of a velocity window: a call it counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRow {
    /// The window's reserved name.
    pub spec: String,
    /// The call's group.
    pub group: String,
    /// When (µs since the epoch).
    pub at: i64,
    /// The call's contribution.
    pub value: rust_decimal::Decimal,
    /// The group's running total, this call included.
    pub running: rust_decimal::Decimal,
}

/// The rows beside the chain at one moment (see [`Store::rows`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rows {
    /// The seq of the last record committed when they were read (0: none).
    pub head: u64,
    /// Every ticket.
    pub tickets: Vec<Ticket>,
    /// Every grant.
    pub grants: Vec<Grant>,
    /// Every window row, each group's in order.
    pub windows: Vec<WindowRow>,
    /// Each window group's head: (window, group, rows, running total).
    pub window_heads: Vec<(String, String, u64, rust_decimal::Decimal)>,
}

/// Writing, sealed inside this crate: only the runtime's ledger appends
/// records, opens tickets and moves window totals. Code outside the crate can
/// name neither trait, so it can read a store but never write one.
mod sealed {
    use super::*;

    /// How a store runs a transaction.
    pub trait Writer {
        /// Runs `work` in one transaction that is serialized against every
        /// other writer (threads and processes) and durable when this
        /// returns `Ok`. If `work` or the commit fails, nothing of it is kept.
        fn transaction(
            &self,
            work: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
        ) -> Result<(), StoreError>;
    }

    /// Work inside one transaction.
    pub trait Tx {
        /// The last record's (seq, hash); `(0, GENESIS)` for an empty chain.
        fn head(&mut self) -> Result<(u64, String), StoreError>;
        /// The ledger's time for this transaction (µs since the epoch), given
        /// this host's: a store that every host shares keeps one clock (the
        /// PostgreSQL server's) and refuses a host whose clock is off it by
        /// more than a tolerance; a store of one host uses the host's.
        fn ledger_time(&mut self, host: i64) -> Result<i64, StoreError> {
            Ok(host)
        }
        /// Appends a sealed record.
        fn append(&mut self, record: &AuditRecord) -> Result<(), StoreError>;
        /// The chain records that make up the steps of ticket or grant
        /// `approval_id` (`T-7`, `G-3`), in seq order, including those appended
        /// earlier in this transaction: the first record citing it and every
        /// later one that is not a `require_approval` (a pending ticket asked
        /// again changes nothing, so re-asks are left out). The chain, not the
        /// ticket and grant rows, is what vouches for an approval.
        fn records_citing(&mut self, approval_id: &str) -> Result<Vec<AuditRecord>, StoreError>;
        /// The record at `seq`, including one appended earlier in this
        /// transaction.
        fn record_at(&mut self, seq: u64) -> Result<Option<AuditRecord>, StoreError>;
        /// The newest live ticket for an event key: pending, approved or
        /// rejected, and not expired at `now`.
        fn latest_ticket(
            &mut self,
            event_key: &str,
            now: i64,
        ) -> Result<Option<Ticket>, StoreError>;
        /// A ticket by id.
        fn ticket(&mut self, id: u64) -> Result<Option<Ticket>, StoreError>;
        /// Stores a new ticket (its `id` is ignored) and returns its id.
        fn insert_ticket(&mut self, ticket: &Ticket) -> Result<u64, StoreError>;
        /// Changes a ticket's status.
        fn update_ticket(
            &mut self,
            id: u64,
            status: TicketStatus,
            decided_by: Option<&str>,
        ) -> Result<(), StoreError>;
        /// The grants for (actor, capability, environment), oldest first.
        fn grants_for(
            &mut self,
            actor: &str,
            capability: &str,
            environment: &str,
        ) -> Result<Vec<Grant>, StoreError>;
        /// A grant by id.
        fn grant(&mut self, id: u64) -> Result<Option<Grant>, StoreError>;
        /// Stores a new grant (its `id` is ignored) and returns its id.
        fn insert_grant(&mut self, grant: &Grant) -> Result<u64, StoreError>;
        /// Updates a grant's remaining uses and revocation.
        fn update_grant(
            &mut self,
            id: u64,
            uses_left: Option<u32>,
            revoked_by: Option<&str>,
        ) -> Result<(), StoreError>;
        /// The total of `spec`'s window rows for `group` recorded after `after`
        /// (µs since the epoch): the authorized calls a velocity rule counts,
        /// and the oldest of them.
        fn window_total(
            &mut self,
            spec: &str,
            group: &str,
            after: i64,
        ) -> Result<super::WindowTotal, StoreError>;
        /// Changes what an authorized call made at `at` counts in `spec`'s
        /// window for `group`, from `old` to `new` (an outcome: a failed
        /// call counts nothing, an executed one the amount sent). `false`
        /// when no row of that call is left.
        fn adjust_window(
            &mut self,
            spec: &str,
            group: &str,
            at: i64,
            old: rust_decimal::Decimal,
            new: rust_decimal::Decimal,
        ) -> Result<bool, StoreError>;
        /// Adds an authorized call's contribution to `spec`'s window for `group`.
        fn add_to_window(
            &mut self,
            spec: &str,
            group: &str,
            at: i64,
            value: rust_decimal::Decimal,
        ) -> Result<(), StoreError>;
        /// A note kept beside the chain (`approvers:<digest>`: the signing
        /// requirements of a policy, for operator tools that have no policy).
        /// Notes are hints for refusing early; decisions never rely on them.
        fn note(&mut self, key: &str) -> Result<Option<String>, StoreError>;
        /// Keeps a note (replacing one with the same key).
        fn set_note(&mut self, key: &str, value: &str) -> Result<(), StoreError>;
        /// Whether any note's key starts with `prefix`.
        fn has_note_with_prefix(&mut self, prefix: &str) -> Result<bool, StoreError>;
    }
}

pub(crate) use sealed::{Tx, Writer};

/// A storage backend: the embedded SQLite store, PostgreSQL, or memory. The
/// writing half is sealed (only this crate's ledger writes); anything may
/// read.
pub trait Store: Writer + Send + Sync {
    /// Calls `visit` with every audit record in seq order until it returns false.
    fn scan(&self, visit: &mut dyn FnMut(AuditRecord) -> bool) -> Result<(), StoreError> {
        self.scan_after(0, visit)
    }

    /// Calls `visit` with every audit record whose seq is greater than
    /// `after`, in seq order, until it returns false. A read: it never takes
    /// the writers' turn (a follower does not slow the decisions).
    fn scan_after(
        &self,
        after: u64,
        visit: &mut dyn FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError>;

    /// Whether a record with a seq greater than `after` is committed (one
    /// indexed read).
    fn has_records_after(&self, after: u64) -> Result<bool, StoreError> {
        let mut found = false;
        self.scan_after(after, &mut |_| {
            found = true;
            false
        })?;
        Ok(found)
    }

    /// Waits until a record with a seq greater than `after` is committed, or
    /// `timeout` passes: `true` when there is one. The default checks every
    /// 200 ms with one indexed read (SQLite, memory); PostgreSQL sleeps on
    /// `LISTEN capfence_audit`, which every appending commit notifies.
    fn wait_for_records(
        &self,
        after: u64,
        timeout: std::time::Duration,
    ) -> Result<bool, StoreError> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let found = self.has_records_after(after)?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if found || left.is_zero() {
                return Ok(found);
            }
            std::thread::sleep(left.min(std::time::Duration::from_millis(200)));
        }
    }

    /// Like [`scan`](Self::scan) with borrowed records, for verification
    /// without copying; the default copies.
    fn scan_views(&self, visit: &mut dyn FnMut(&RecordView<'_>) -> bool) -> Result<(), StoreError> {
        self.scan(&mut |record| visit(&record.view()))
    }

    /// Every ticket, newest first.
    fn tickets(&self) -> Result<Vec<Ticket>, StoreError>;

    /// Every grant, newest first.
    fn grants(&self) -> Result<Vec<Grant>, StoreError>;

    /// The rows kept beside the chain, read in one snapshot together with
    /// the seq of the last record committed then, for `verify`: rows and
    /// records commit together, so the rows match the chain up to that seq
    /// however many decisions are made meanwhile.
    fn rows(&self) -> Result<Rows, StoreError>;
}
