//! The embedded default store: SQLite (bundled) in WAL mode, one file under a
//! state directory, `ledger.db`, holding the chain, the tickets and the grants.
//! A decision's record and the ticket or grant change it makes commit in one
//! transaction, with one fsync: never one without the other.
//!
//! Every transaction starts with `BEGIN IMMEDIATE`, so reading the previous
//! hash and appending happen under the write lock: threads and processes that
//! share the directory never fork the chain. `synchronous=FULL` makes a commit
//! durable before it returns. A connection that fails to open is retried on
//! the next transaction, and until then every transaction fails (deny).

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::{Connection, ErrorCode, OpenFlags, OptionalExtension, params};

use rust_decimal::Decimal;

use super::rows::{self, GrantColumns, TicketColumns, from_i64, to_i64};
use super::window::{self, WindowHead, WindowRows, decimal_of};
use super::{Detail, Store, StoreError, Tx, WindowRow};
use crate::approvals::{Grant, Ticket, TicketStatus};
use crate::audit::{AuditRecord, GENESIS, RecordKind, RecordView};

/// Value of `capfence_meta.format` in a state directory of this version.
pub(crate) const STATE_FORMAT: &str = "capfence-ledger-v1";

/// The ledger file inside a state directory.
pub const LEDGER_FILE: &str = "ledger.db";

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS capfence_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    time TEXT NOT NULL,
    actor TEXT,
    capability TEXT,
    environment TEXT,
    risk TEXT,
    payload TEXT NOT NULL,
    decision TEXT NOT NULL,
    rule TEXT,
    reason TEXT NOT NULL,
    approval_id TEXT,
    policy_digest TEXT,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_by_approval ON audit (approval_id, decision, seq) WHERE approval_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS tickets (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    event_key TEXT NOT NULL,
    actor TEXT,
    capability TEXT NOT NULL,
    environment TEXT,
    risk TEXT,
    payload TEXT NOT NULL,
    rule TEXT,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    decided_by TEXT
);
CREATE INDEX IF NOT EXISTS tickets_by_event ON tickets (event_key, id);
CREATE TABLE IF NOT EXISTS grants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    actor TEXT NOT NULL,
    capability TEXT NOT NULL,
    environment TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    caps TEXT NOT NULL,
    uses_left INTEGER,
    revoked_by TEXT
);
CREATE INDEX IF NOT EXISTS grants_by_subject ON grants (actor, capability, environment);
CREATE TABLE IF NOT EXISTS windows (
    spec TEXT NOT NULL,
    grp TEXT NOT NULL,
    n INTEGER NOT NULL,
    at INTEGER NOT NULL,
    value TEXT NOT NULL,
    running TEXT NOT NULL,
    PRIMARY KEY (spec, grp, n)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS window_heads (
    spec TEXT NOT NULL,
    grp TEXT NOT NULL,
    last_n INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    running TEXT NOT NULL,
    start_n INTEGER NOT NULL,
    start_at INTEGER NOT NULL,
    start_before TEXT NOT NULL,
    PRIMARY KEY (spec, grp)
) WITHOUT ROWID;
";

/// How the SQLite store opens its files.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// How long a writer waits for another writer's lock before the
    /// transaction fails (and the decision is denied). Default 5 s.
    pub lock_timeout: Duration,
    /// Open the files read-only (for inspection; every write fails).
    pub read_only: bool,
    /// Cap `ledger.db` at this many pages (SQLite's `max_page_count`): a way
    /// to bound its size, and to exercise the disk-full path.
    pub max_page_count: Option<u32>,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            lock_timeout: Duration::from_secs(5),
            read_only: false,
            max_page_count: None,
        }
    }
}

/// The SQLite store.
pub struct SqliteStore {
    dir: PathBuf,
    options: SqliteOptions,
    connection: Mutex<Option<Connection>>,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

fn classify(error: rusqlite::Error) -> StoreError {
    let code = error.sqlite_error_code();
    let text = Detail::caused(error.to_string(), error);
    match code {
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => StoreError::Locked(text),
        Some(ErrorCode::ReadOnly) => StoreError::ReadOnly(text),
        Some(ErrorCode::DiskFull) => StoreError::Full(text),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase) => StoreError::Corrupt(text),
        Some(ErrorCode::CannotOpen | ErrorCode::SystemIoFailure | ErrorCode::PermissionDenied) => {
            StoreError::Io(text)
        }
        _ => StoreError::Io(text),
    }
}

impl SqliteStore {
    /// A store under `dir` (created if missing). Opening is attempted now,
    /// without waiting for another writer's lock; if it fails, the store still
    /// exists and every transaction retries the open, within its own lock
    /// timeout, and fails until it succeeds.
    pub fn new(dir: impl AsRef<Path>, options: SqliteOptions) -> SqliteStore {
        let store = SqliteStore {
            dir: dir.as_ref().to_owned(),
            options,
            connection: Mutex::new(None),
        };
        if let Ok(mut slot) = store.connection.lock() {
            *slot = store.open(Duration::ZERO).ok().filter(|conn| {
                // Opened without waiting; later transactions wait as configured.
                conn.busy_timeout(store.options.lock_timeout).is_ok()
            });
        }
        store
    }

    /// Opens the store now, reporting why it cannot be used.
    pub fn open_checked(
        dir: impl AsRef<Path>,
        options: SqliteOptions,
    ) -> Result<SqliteStore, StoreError> {
        let store = SqliteStore {
            dir: dir.as_ref().to_owned(),
            options,
            connection: Mutex::new(None),
        };
        let connection = store.open(store.options.lock_timeout)?;
        if let Ok(mut slot) = store.connection.lock() {
            *slot = Some(connection);
        }
        Ok(store)
    }

    /// The state directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Opens the files, waiting at most `wait` for another writer's lock.
    fn open(&self, wait: Duration) -> Result<Connection, StoreError> {
        if !self.options.read_only {
            std::fs::create_dir_all(&self.dir).map_err(|e| {
                StoreError::Io(
                    format!("cannot create state directory {}: {e}", self.dir.display()).into(),
                )
            })?;
        }
        let flags = if self.options.read_only {
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
        } else {
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
        };
        for old in ["audit.db", "approvals.db"] {
            let path = self.dir.join(old);
            if path.exists() && !self.dir.join(LEDGER_FILE).exists() {
                return Err(StoreError::Foreign(
                    format!(
                        "{} holds an earlier CapFence state ({old}, approvals in a second \
                     file); this version keeps one ledger in {LEDGER_FILE}: verify the old \
                     directory with the earlier version, archive it, and point --state at a \
                     new directory",
                        self.dir.display()
                    )
                    .into(),
                ));
            }
        }
        let ledger = self.dir.join(LEDGER_FILE);
        let conn = Connection::open_with_flags(&ledger, flags).map_err(classify)?;
        // Every statement on the decision path stays prepared: rusqlite's
        // default cache of 16 is smaller than the set the ledger uses, and
        // re-preparing costs ~20 us a statement.
        conn.set_prepared_statement_cache_capacity(64);
        conn.busy_timeout(wait).map_err(classify)?;
        if !self.options.read_only {
            let mode: String = conn
                .query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))
                .map_err(classify)?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(StoreError::Io(
                    format!("the ledger refused WAL mode ({mode})").into(),
                ));
            }
            conn.execute_batch("PRAGMA synchronous=FULL;")
                .map_err(classify)?;
        }
        if let Some(pages) = self.options.max_page_count {
            let _: i64 = conn
                .query_row(&format!("PRAGMA max_page_count={pages}"), [], |r| r.get(0))
                .map_err(classify)?;
        }
        self.check_schema(&conn)?;
        Ok(conn)
    }

    /// Refuses files that belong to something else; creates the schema in a
    /// fresh directory.
    fn check_schema(&self, conn: &Connection) -> Result<(), StoreError> {
        let tables: Vec<String> = {
            let mut stmt = conn
                .prepare("SELECT name FROM sqlite_master WHERE type='table'")
                .map_err(classify)?;
            let rows = stmt
                .query_map([], |r| r.get::<_, String>(0))
                .map_err(classify)?;
            rows.collect::<Result<_, _>>().map_err(classify)?
        };
        let has_meta = tables.iter().any(|t| t == "capfence_meta");
        let foreign = tables.iter().any(|t| !is_ours(t));
        let file = self.dir.join(LEDGER_FILE);
        if foreign || (!tables.is_empty() && !has_meta) {
            return Err(StoreError::Foreign(
                format!("{} holds tables CapFence did not create", file.display()).into(),
            ));
        }
        if has_meta {
            let format: Option<String> = conn
                .query_row(
                    "SELECT value FROM capfence_meta WHERE key='format'",
                    [],
                    |r| r.get(0),
                )
                .optional()
                .map_err(classify)?;
            if format.as_deref() != Some(STATE_FORMAT) {
                return Err(StoreError::Foreign(
                    format!(
                        "{} has format {:?}, expected {STATE_FORMAT}",
                        file.display(),
                        format.unwrap_or_default()
                    )
                    .into(),
                ));
            }
        }
        if self.options.read_only {
            return Ok(());
        }
        conn.execute_batch("BEGIN IMMEDIATE").map_err(classify)?;
        let created = conn
            .execute_batch(SCHEMA)
            .and_then(|()| {
                conn.execute(
                    "INSERT OR IGNORE INTO capfence_meta (key, value) VALUES ('format', ?1)",
                    [STATE_FORMAT],
                )
            })
            .and_then(|_| conn.execute_batch("COMMIT"));
        if let Err(e) = created {
            let _ = conn.execute_batch("ROLLBACK");
            return Err(classify(e));
        }
        Ok(())
    }

    fn with_connection<T>(
        &self,
        work: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut slot = self
            .connection
            .lock()
            .map_err(|_| StoreError::Io("store connection lock poisoned".to_owned().into()))?;
        // One lock timeout covers the open and the work: a store that must
        // be opened first never waits twice.
        let started = std::time::Instant::now();
        let opened_now = slot.is_none();
        if opened_now {
            *slot = Some(self.open(self.options.lock_timeout)?);
        }
        match slot.as_ref() {
            Some(conn) => {
                if opened_now {
                    let left = self.options.lock_timeout.saturating_sub(started.elapsed());
                    conn.busy_timeout(left).map_err(classify)?;
                }
                let result = work(conn);
                if opened_now {
                    let _ = conn.busy_timeout(self.options.lock_timeout);
                }
                if matches!(result, Err(StoreError::Corrupt(_) | StoreError::Foreign(_))) {
                    *slot = None;
                }
                result
            }
            None => Err(StoreError::Io("no connection".to_owned().into())),
        }
    }
}

fn is_ours(table: &str) -> bool {
    matches!(
        table,
        "capfence_meta"
            | "audit"
            | "tickets"
            | "grants"
            | "windows"
            | "window_heads"
            | "sqlite_sequence"
    )
}

struct SqliteTx<'c> {
    conn: &'c Connection,
    head: Option<(u64, String)>,
    /// Window heads read or written in this transaction.
    window_heads: window::HeadCache,
}

fn ticket_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<TicketColumns> {
    Ok(TicketColumns {
        id: row.get(0)?,
        status: row.get(8)?,
        ticket: Ticket {
            id: 0,
            event_key: row.get(1)?,
            actor: row.get(2)?,
            capability: row.get(3)?,
            environment: row.get(4)?,
            risk: row.get(5)?,
            payload: row.get(6)?,
            rule: row.get(7)?,
            status: TicketStatus::Pending,
            created_at: row.get(9)?,
            expires_at: row.get(10)?,
            decided_by: row.get(11)?,
        },
    })
}

const TICKET_COLUMNS: &str = "id, event_key, actor, capability, environment, risk, payload, rule, status, created_at, expires_at, decided_by";
const GRANT_COLUMNS: &str = "id, actor, capability, environment, granted_by, created_at, expires_at, caps, uses_left, revoked_by";

fn grant_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<GrantColumns> {
    Ok(GrantColumns {
        id: row.get(0)?,
        actor: row.get(1)?,
        capability: row.get(2)?,
        environment: row.get(3)?,
        granted_by: row.get(4)?,
        created_at: row.get(5)?,
        expires_at: row.get(6)?,
        caps: row.get(7)?,
        uses: row.get(8)?,
        revoked_by: row.get(9)?,
    })
}

/// A record's `decision` column as its kind; a value CapFence never writes
/// is a conversion error naming it.
fn record_kind(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<RecordKind> {
    let text: String = row.get(index)?;
    rows::record_kind(&text).map_err(|e| {
        rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, e.into())
    })
}

fn record_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(i64, AuditRecord)> {
    Ok((
        row.get(0)?,
        AuditRecord {
            seq: 0,
            time: row.get(1)?,
            actor: row.get(2)?,
            capability: row.get(3)?,
            environment: row.get(4)?,
            risk: row.get(5)?,
            payload: row.get(6)?,
            decision: record_kind(row, 7)?,
            rule: row.get(8)?,
            reason: row.get(9)?,
            approval_id: row.get(10)?,
            policy_digest: row.get(11)?,
            prev_hash: row.get(12)?,
            hash: row.get(13)?,
        },
    ))
}

impl Tx for SqliteTx<'_> {
    fn records_citing(&mut self, approval_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let rows: Vec<(i64, AuditRecord)> = self
            .conn
            .prepare_cached(
                "SELECT seq, time, actor, capability, environment, risk, payload, decision, rule, \
                 reason, approval_id, policy_digest, prev_hash, hash FROM audit \
                 WHERE approval_id = ?1 AND (decision != 'require_approval' \
                 OR seq = (SELECT min(seq) FROM audit WHERE approval_id = ?1))",
            )
            .and_then(|mut s| {
                s.query_map([approval_id], record_from_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()
            })
            .map_err(classify)?;
        // In seq order; sorted here, which is cheaper than a sort in SQL.
        let mut records: Vec<AuditRecord> = rows
            .into_iter()
            .map(|(seq, mut record)| {
                record.seq = from_i64(seq)?;
                Ok(record)
            })
            .collect::<Result<_, StoreError>>()?;
        records.sort_by_key(|r| r.seq);
        Ok(records)
    }

    fn head(&mut self) -> Result<(u64, String), StoreError> {
        if let Some(head) = &self.head {
            return Ok(head.clone());
        }
        let row: Option<(i64, String)> = self
            .conn
            .prepare_cached("SELECT seq, hash FROM audit WHERE seq = (SELECT max(seq) FROM audit)")
            .and_then(|mut s| s.query_row([], |r| Ok((r.get(0)?, r.get(1)?))).optional())
            .map_err(classify)?;
        let head = match row {
            Some((seq, hash)) => (from_i64(seq)?, hash),
            None => (0, GENESIS.to_owned()),
        };
        self.head = Some(head.clone());
        Ok(head)
    }

    fn append(&mut self, r: &AuditRecord) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO audit (seq, time, actor, capability, environment, risk, payload, \
                 decision, rule, reason, approval_id, policy_digest, prev_hash, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    to_i64(r.seq).unwrap_or(i64::MAX),
                    r.time,
                    r.actor,
                    r.capability,
                    r.environment,
                    r.risk,
                    r.payload,
                    r.decision.as_str(),
                    r.rule,
                    r.reason,
                    r.approval_id,
                    r.policy_digest,
                    r.prev_hash,
                    r.hash
                ])
            })
            .map_err(classify)?;
        self.head = Some((r.seq, r.hash.clone()));
        Ok(())
    }

    fn record_at(&mut self, seq: u64) -> Result<Option<AuditRecord>, StoreError> {
        let seq = to_i64(seq)?;
        let row = self
            .conn
            .prepare_cached(
                "SELECT seq, time, actor, capability, environment, risk, payload, decision, rule, \
                 reason, approval_id, policy_digest, prev_hash, hash FROM audit WHERE seq = ?1",
            )
            .and_then(|mut s| s.query_row([seq], record_from_row).optional())
            .map_err(classify)?;
        row.map(|(seq, mut record)| {
            record.seq = from_i64(seq)?;
            Ok(record)
        })
        .transpose()
    }

    fn latest_ticket(&mut self, event_key: &str, now: i64) -> Result<Option<Ticket>, StoreError> {
        // Plain lookups only: `ORDER BY` or `max()` here costs SQLite five to
        // ten times the lookup itself. Live tickets per event are few.
        let rows = self
            .conn
            .prepare_cached(&format!(
                "SELECT {TICKET_COLUMNS} FROM tickets \
                 WHERE event_key = ?1 AND status != 'used' AND expires_at > ?2"
            ))
            .and_then(|mut s| {
                s.query_map(params![event_key, now], ticket_from_row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(classify)?;
        let newest = rows.into_iter().max_by_key(|t| t.id);
        newest.map(TicketColumns::finish).transpose()
    }

    fn ticket(&mut self, id: u64) -> Result<Option<Ticket>, StoreError> {
        let row = self
            .conn
            .prepare_cached(&format!(
                "SELECT {TICKET_COLUMNS} FROM tickets WHERE id = ?1"
            ))
            .and_then(|mut s| {
                s.query_row([to_i64(id).unwrap_or(-1)], ticket_from_row)
                    .optional()
            })
            .map_err(classify)?;
        row.map(TicketColumns::finish).transpose()
    }

    fn insert_ticket(&mut self, t: &Ticket) -> Result<u64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO tickets (event_key, actor, capability, environment, risk, \
                 payload, rule, status, created_at, expires_at, decided_by) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    t.event_key,
                    t.actor,
                    t.capability,
                    t.environment,
                    t.risk,
                    t.payload,
                    t.rule,
                    t.status.as_str(),
                    t.created_at,
                    t.expires_at,
                    t.decided_by
                ])
            })
            .map_err(classify)?;
        from_i64(self.conn.last_insert_rowid())
    }

    fn update_ticket(
        &mut self,
        id: u64,
        status: TicketStatus,
        decided_by: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE tickets SET status = ?2, decided_by = COALESCE(?3, decided_by) WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![to_i64(id).unwrap_or(-1), status.as_str(), decided_by]))
            .map_err(classify)?;
        Ok(())
    }

    fn grants_for(
        &mut self,
        actor: &str,
        capability: &str,
        environment: &str,
    ) -> Result<Vec<Grant>, StoreError> {
        let rows: Vec<GrantColumns> = self
            .conn
            .prepare_cached(&format!(
                "SELECT {GRANT_COLUMNS} FROM grants \
                 WHERE actor = ?1 AND capability = ?2 AND environment = ?3"
            ))
            .and_then(|mut s| {
                s.query_map([actor, capability, environment], grant_from_row)?
                    .collect::<Result<Vec<_>, _>>()
            })
            .map_err(classify)?;
        let mut grants = rows
            .into_iter()
            .map(GrantColumns::finish)
            .collect::<Result<Vec<_>, _>>()?;
        grants.sort_by_key(|g| g.id);
        Ok(grants)
    }

    fn grant(&mut self, id: u64) -> Result<Option<Grant>, StoreError> {
        let row = self
            .conn
            .prepare_cached(&format!("SELECT {GRANT_COLUMNS} FROM grants WHERE id = ?1"))
            .and_then(|mut s| {
                s.query_row([to_i64(id).unwrap_or(-1)], grant_from_row)
                    .optional()
            })
            .map_err(classify)?;
        row.map(GrantColumns::finish).transpose()
    }

    fn insert_grant(&mut self, g: &Grant) -> Result<u64, StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO grants (actor, capability, environment, granted_by, created_at, \
                 expires_at, caps, uses_left, revoked_by) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    g.actor,
                    g.capability,
                    g.environment,
                    g.granted_by,
                    g.created_at,
                    g.expires_at,
                    crate::approvals::caps_text(&g.caps),
                    g.uses_left,
                    g.revoked_by
                ])
            })
            .map_err(classify)?;
        from_i64(self.conn.last_insert_rowid())
    }

    fn update_grant(
        &mut self,
        id: u64,
        uses_left: Option<u32>,
        revoked_by: Option<&str>,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE grants SET uses_left = ?2, revoked_by = COALESCE(?3, revoked_by) WHERE id = ?1",
            )
            .and_then(|mut s| s.execute(params![to_i64(id).unwrap_or(-1), uses_left, revoked_by]))
            .map_err(classify)?;
        Ok(())
    }

    fn window_total(
        &mut self,
        spec: &str,
        group: &str,
        after: i64,
    ) -> Result<super::WindowTotal, StoreError> {
        window::total(self, spec, group, after)
    }

    fn adjust_window(
        &mut self,
        spec: &str,
        group: &str,
        at: i64,
        old: Decimal,
        new: Decimal,
    ) -> Result<bool, StoreError> {
        window::adjust(self, spec, group, at, old, new)
    }

    fn add_to_window(
        &mut self,
        spec: &str,
        group: &str,
        at: i64,
        value: Decimal,
    ) -> Result<(), StoreError> {
        window::add(self, spec, group, at, value)
    }

    fn note(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        self.conn
            .prepare_cached("SELECT value FROM capfence_meta WHERE key = ?1")
            .and_then(|mut s| s.query_row([note_key(key)], |row| row.get(0)).optional())
            .map_err(classify)
    }

    fn set_note(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.conn
            .prepare_cached("INSERT OR REPLACE INTO capfence_meta (key, value) VALUES (?1, ?2)")
            .and_then(|mut s| s.execute(params![note_key(key), value]))
            .map_err(classify)?;
        Ok(())
    }

    fn has_note_with_prefix(&mut self, prefix: &str) -> Result<bool, StoreError> {
        let prefix = note_key(prefix);
        self.conn
            .prepare_cached("SELECT 1 FROM capfence_meta WHERE substr(key, 1, ?2) = ?1 LIMIT 1")
            .and_then(|mut s| {
                s.query_row(
                    params![prefix, i64::try_from(prefix.len()).unwrap_or(i64::MAX)],
                    |_| Ok(()),
                )
                .optional()
            })
            .map(|found| found.is_some())
            .map_err(classify)
    }
}

impl WindowRows for SqliteTx<'_> {
    fn update_row(
        &mut self,
        spec: &str,
        group: &str,
        n: i64,
        value: Decimal,
        running: Decimal,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "UPDATE windows SET value = ?4, running = ?5 WHERE spec = ?1 AND grp = ?2 AND n = ?3",
            )
            .and_then(|mut s| {
                s.execute(params![
                    spec,
                    group,
                    n,
                    value.normalize().to_string(),
                    running.normalize().to_string()
                ])
            })
            .map_err(classify)?;
        Ok(())
    }

    fn head_cache(&mut self) -> &mut window::HeadCache {
        &mut self.window_heads
    }

    fn load_head(&mut self, spec: &str, group: &str) -> Result<Option<WindowHead>, StoreError> {
        type Row = (i64, i64, String, i64, i64, String);
        let row: Option<Row> = self
            .conn
            .prepare_cached(
                "SELECT last_n, last_at, running, start_n, start_at, start_before FROM \
                 window_heads WHERE spec = ?1 AND grp = ?2",
            )
            .and_then(|mut s| {
                s.query_row(params![spec, group], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                })
                .optional()
            })
            .map_err(classify)?;
        row.map(|(last_n, last_at, running, start_n, start_at, before)| {
            Ok(WindowHead {
                last_n,
                last_at,
                running: decimal_of(&running)?,
                start_n,
                start_at,
                start_before: decimal_of(&before)?,
            })
        })
        .transpose()
    }

    fn store_head(&mut self, spec: &str, group: &str, head: &WindowHead) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO window_heads (spec, grp, last_n, last_at, running, \
                 start_n, start_at, start_before) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    spec,
                    group,
                    head.last_n,
                    head.last_at,
                    head.running.normalize().to_string(),
                    head.start_n,
                    head.start_at,
                    head.start_before.normalize().to_string()
                ])
            })
            .map_err(classify)?;
        Ok(())
    }

    fn row(
        &mut self,
        spec: &str,
        group: &str,
        n: i64,
    ) -> Result<Option<(i64, Decimal, Decimal)>, StoreError> {
        let row: Option<(i64, String, String)> = self
            .conn
            .prepare_cached(
                "SELECT at, running, value FROM windows WHERE spec = ?1 AND grp = ?2 AND n = ?3",
            )
            .and_then(|mut s| {
                s.query_row(params![spec, group, n], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
            })
            .map_err(classify)?;
        row.map(|(at, running, value)| Ok((at, decimal_of(&running)?, decimal_of(&value)?)))
            .transpose()
    }

    fn insert_row(
        &mut self,
        spec: &str,
        group: &str,
        head: &WindowHead,
        value: Decimal,
    ) -> Result<(), StoreError> {
        self.conn
            .prepare_cached(
                "INSERT INTO windows (spec, grp, n, at, value, running) VALUES (?1, ?2, ?3, ?4, \
                 ?5, ?6)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    spec,
                    group,
                    head.last_n,
                    head.last_at,
                    value.normalize().to_string(),
                    head.running.normalize().to_string()
                ])
            })
            .map_err(classify)?;
        Ok(())
    }
}

/// Notes live in the meta table under their own namespace, apart from the
/// store's format key.
fn note_key(key: &str) -> String {
    format!("note:{key}")
}

impl crate::store::Writer for SqliteStore {
    fn transaction(
        &self,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        self.with_connection(|conn| {
            let run = |sql: &str| {
                conn.prepare_cached(sql)
                    .and_then(|mut s| s.execute([]))
                    .map(|_| ())
                    .map_err(classify)
            };
            run("BEGIN IMMEDIATE")?;
            let mut tx = SqliteTx {
                conn,
                head: None,
                window_heads: window::HeadCache::new(),
            };
            let result = work(&mut tx).and_then(|()| run("COMMIT"));
            if result.is_err() && !conn.is_autocommit() {
                let _ = conn.execute_batch("ROLLBACK");
            }
            result
        })
    }
}

impl Store for SqliteStore {
    fn scan_after(
        &self,
        after: u64,
        visit: &mut dyn FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError> {
        let after = to_i64(after)?;
        self.with_connection(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT seq, time, actor, capability, environment, risk, payload, decision, rule, \
                     reason, approval_id, policy_digest, prev_hash, hash FROM audit \
                     WHERE seq > ?1 ORDER BY seq",
                )
                .map_err(classify)?;
            let mut rows = stmt.query([after]).map_err(classify)?;
            while let Some(row) = rows.next().map_err(classify)? {
                let (seq, mut record) = record_from_row(row).map_err(classify)?;
                record.seq = from_i64(seq)?;
                if !visit(record) {
                    break;
                }
            }
            Ok(())
        })
    }

    fn scan_views(&self, visit: &mut dyn FnMut(&RecordView<'_>) -> bool) -> Result<(), StoreError> {
        fn text<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<&'r [u8]> {
            row.get_ref(i)?.as_bytes().map_err(Into::into)
        }
        fn opt<'r>(row: &'r rusqlite::Row<'_>, i: usize) -> rusqlite::Result<Option<&'r [u8]>> {
            row.get_ref(i)?.as_bytes_or_null().map_err(Into::into)
        }
        self.with_connection(|conn| {
            let mut stmt = conn
                .prepare(
                    "SELECT seq, time, actor, capability, environment, risk, payload, decision, rule, \
                     reason, approval_id, policy_digest, prev_hash, hash FROM audit ORDER BY seq",
                )
                .map_err(classify)?;
            let mut rows = stmt.query([]).map_err(classify)?;
            while let Some(row) = rows.next().map_err(classify)? {
                let view = (|| -> rusqlite::Result<RecordView<'_>> {
                    Ok(RecordView {
                        seq: u64::try_from(row.get::<_, i64>(0)?).unwrap_or(0),
                        time: text(row, 1)?,
                        actor: opt(row, 2)?,
                        capability: opt(row, 3)?,
                        environment: opt(row, 4)?,
                        risk: opt(row, 5)?,
                        payload: text(row, 6)?,
                        decision: text(row, 7)?,
                        rule: opt(row, 8)?,
                        reason: text(row, 9)?,
                        approval_id: opt(row, 10)?,
                        policy_digest: opt(row, 11)?,
                        prev_hash: text(row, 12)?,
                        hash: text(row, 13)?,
                    })
                })()
                .map_err(classify)?;
                if !visit(&view) {
                    break;
                }
            }
            Ok(())
        })
    }

    fn tickets(&self) -> Result<Vec<Ticket>, StoreError> {
        self.with_connection(tickets_on)
    }

    fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.with_connection(grants_on)
    }

    fn rows(&self) -> Result<super::Rows, StoreError> {
        self.with_connection(|conn| {
            // One read transaction: one snapshot for the head and every row.
            conn.execute_batch("BEGIN DEFERRED").map_err(classify)?;
            let rows = (|| {
                let head: Option<i64> = conn
                    .query_row("SELECT max(seq) FROM audit", [], |r| r.get(0))
                    .map_err(classify)?;
                Ok(super::Rows {
                    head: head.map_or(Ok(0), from_i64)?,
                    tickets: tickets_on(conn)?,
                    grants: grants_on(conn)?,
                    windows: window_rows_on(conn)?,
                    window_heads: window_heads_on(conn)?,
                })
            })();
            let _ = conn.execute_batch(if rows.is_ok() { "COMMIT" } else { "ROLLBACK" });
            rows
        })
    }
}

fn tickets_on(conn: &Connection) -> Result<Vec<Ticket>, StoreError> {
    let rows = conn
        .prepare(&format!(
            "SELECT {TICKET_COLUMNS} FROM tickets ORDER BY id DESC"
        ))
        .and_then(|mut s| {
            s.query_map([], ticket_from_row)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(classify)?;
    rows.into_iter().map(TicketColumns::finish).collect()
}

fn grants_on(conn: &Connection) -> Result<Vec<Grant>, StoreError> {
    let rows = conn
        .prepare(&format!(
            "SELECT {GRANT_COLUMNS} FROM grants ORDER BY id DESC"
        ))
        .and_then(|mut s| {
            s.query_map([], grant_from_row)?
                .collect::<Result<Vec<_>, _>>()
        })
        .map_err(classify)?;
    rows.into_iter().map(GrantColumns::finish).collect()
}

fn window_heads_on(conn: &Connection) -> Result<Vec<(String, String, u64, Decimal)>, StoreError> {
    let rows = conn
        .prepare("SELECT spec, grp, last_n, running FROM window_heads ORDER BY spec, grp")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(classify)?;
    rows.into_iter()
        .map(|(spec, group, n, running)| {
            Ok((
                spec,
                group,
                u64::try_from(n).unwrap_or(0),
                decimal_of(&running)?,
            ))
        })
        .collect()
}

fn window_rows_on(conn: &Connection) -> Result<Vec<WindowRow>, StoreError> {
    let rows = conn
        .prepare("SELECT spec, grp, at, value, running FROM windows ORDER BY spec, grp, n")
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        })
        .map_err(classify)?;
    rows.into_iter()
        .map(|(spec, group, at, value, running)| {
            Ok(WindowRow {
                value: decimal_of(&value)?,
                running: decimal_of(&running)?,
                spec,
                group,
                at,
            })
        })
        .collect()
}
