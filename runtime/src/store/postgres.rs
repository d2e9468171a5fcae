//! The shared store: one PostgreSQL database for every agent host, so they
//! have one approval queue, one chain and one set of velocity windows.
//!
//! Same one-ledger semantics as the SQLite store: a decision's record and
//! the ticket, grant or window change it makes commit in one transaction.
//! Every transaction first locks the format row of `capfence.meta`
//! (`SELECT … FOR UPDATE`), so writers on every host take turns: the head
//! they read is the last committed one, sequence numbers stay contiguous and
//! the chain never forks; velocity windows are read under the same lock.
//! Transactions run at READ COMMITTED: after the lock is granted, each
//! statement sees everything committed before.
//!
//! Fail closed: a server that is down, a cut connection, a statement or lock
//! timeout, a serialization failure, all fail the transaction (the decision
//! is denied with the reason) and the server rolls back whatever it held.
//! The only retry is a reconnect before anything is written: when the
//! connection is found dead at `BEGIN`, one fresh connection is tried. A
//! transaction whose `COMMIT` was sent but not answered is never retried: it
//! may have committed, and a second try could record the decision twice.
//!
//! A commit is checked, not assumed: before `COMMIT` the transaction's id
//! is read, and after it the server is asked that transaction's status. A
//! `COMMIT` answered by anything but a committed transaction (a server that
//! rolled back, or a relay that rewrote the statement) fails the
//! transaction: every decision in it is denied.
//!
//! The URL is a libpq-style `postgres://user[:password]@host[:port]/db[?…]`.
//! TLS: a server on another host must speak it (`sslmode=verify-full` is the
//! default there: an on-path relay that answers "no TLS" gets no
//! statement); on a loopback address or a Unix socket the default is
//! `prefer`. Whenever TLS is used, the server's certificate and host name are
//! verified — against the system's roots, or the CA in `sslrootcert=FILE`;
//! a certificate that does not verify fails the connection, it is never used
//! unverified. `sslmode=prefer` or `disable` in the URL opts out.

use std::collections::HashMap;
use std::str::FromStr as _;
use std::sync::Mutex;
use std::time::Duration;

use postgres::error::SqlState;
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::types::ToSql;
use postgres::{Client, Config, Row, Statement};
use rust_decimal::Decimal;
use tokio_postgres_rustls::MakeRustlsConnect;

use super::rows::{self, GrantColumns, TicketColumns, from_i64, to_i64};
use super::window::{self, WindowHead, WindowRows, decimal_of};
use super::{Detail, Store, StoreError, Tx, WindowRow, is_postgres_url};
use crate::approvals::{Grant, Ticket, TicketStatus};
use crate::audit::{AuditRecord, GENESIS, RecordView};

/// The schema every table lives in.
pub const SCHEMA_NAME: &str = "capfence";

const SCHEMA: &str = "
CREATE SCHEMA IF NOT EXISTS capfence;
CREATE TABLE IF NOT EXISTS capfence.meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS capfence.audit (
    seq BIGINT PRIMARY KEY,
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
CREATE INDEX IF NOT EXISTS audit_by_approval ON capfence.audit (approval_id, seq)
    WHERE approval_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS capfence.tickets (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_key TEXT NOT NULL,
    actor TEXT,
    capability TEXT NOT NULL,
    environment TEXT,
    risk TEXT,
    payload TEXT NOT NULL,
    rule TEXT,
    status TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_by TEXT
);
CREATE INDEX IF NOT EXISTS tickets_by_event ON capfence.tickets (event_key, id);
CREATE TABLE IF NOT EXISTS capfence.grants (
    id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    actor TEXT NOT NULL,
    capability TEXT NOT NULL,
    environment TEXT NOT NULL,
    granted_by TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    caps TEXT NOT NULL,
    uses_left BIGINT,
    revoked_by TEXT
);
CREATE INDEX IF NOT EXISTS grants_by_subject ON capfence.grants (actor, capability, environment);
CREATE TABLE IF NOT EXISTS capfence.windows (
    spec TEXT NOT NULL,
    grp TEXT NOT NULL,
    n BIGINT NOT NULL,
    at BIGINT NOT NULL,
    value TEXT NOT NULL,
    running TEXT NOT NULL,
    PRIMARY KEY (spec, grp, n)
);
CREATE TABLE IF NOT EXISTS capfence.window_heads (
    spec TEXT NOT NULL,
    grp TEXT NOT NULL,
    last_n BIGINT NOT NULL,
    last_at BIGINT NOT NULL,
    running TEXT NOT NULL,
    start_n BIGINT NOT NULL,
    start_at BIGINT NOT NULL,
    start_before TEXT NOT NULL,
    PRIMARY KEY (spec, grp)
);
";

const TABLES: [&str; 6] = [
    "meta",
    "audit",
    "tickets",
    "grants",
    "windows",
    "window_heads",
];

/// How the PostgreSQL store connects and how long it waits.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    /// The server-side limit on every statement of a decision, waiting for
    /// another host's turn included (`statement_timeout`); past it the
    /// transaction fails and the decision is denied. Default 5 s.
    pub lock_timeout: Duration,
    /// How long a connection attempt may take. Default 5 s.
    pub connect_timeout: Duration,
    /// How long sent data may stay unacknowledged before the connection is
    /// dropped (`TCP_USER_TIMEOUT`): a cut network fails a decision instead
    /// of hanging it. Default 10 s.
    pub network_timeout: Duration,
    /// How far this host's clock may be from the server's: records and
    /// window rows are stamped with the server's clock, and a host further
    /// off is refused (every decision denied, naming the skew). Default 5 s;
    /// `clock_tolerance_ms=N` in the URL sets it.
    pub clock_tolerance: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            lock_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            network_timeout: Duration::from_secs(10),
            clock_tolerance: Duration::from_secs(5),
        }
    }
}

struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

/// The PostgreSQL store.
pub struct PostgresStore {
    config: Config,
    tls: MakeRustlsConnect,
    /// The URL without its password, for messages.
    shown: String,
    options: PostgresOptions,
    connection: Mutex<Option<Conn>>,
    /// A connection that LISTENs on the audit channel, for followers.
    listener: Mutex<Option<Client>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("server", &self.shown)
            .finish_non_exhaustive()
    }
}

fn shown(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .zip(config.get_ports().iter().chain(std::iter::repeat(&5432)))
        .map(|(host, port)| match host {
            postgres::config::Host::Tcp(h) => format!("{h}:{port}"),
            #[cfg(unix)]
            postgres::config::Host::Unix(p) => format!("{}:{port}", p.display()),
        })
        .collect();
    format!(
        "postgres://{}@{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        config.get_dbname().unwrap_or("")
    )
}

/// The URL without the parameters the client library does not take:
/// `sslrootcert=FILE` (returned) and `sslmode=verify-full`/`verify-ca`
/// (read as `require`, which verifies here anyway).
fn tls_parameters(url: &str) -> Result<(String, Option<String>), StoreError> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), None));
    };
    let mut root_cert = None;
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("sslrootcert", value)) => root_cert = Some(percent_decoded(value)?),
            Some(("sslmode", "verify-full" | "verify-ca")) => kept.push("sslmode=require"),
            // Read by `clock_tolerance`, not by the client library.
            Some(("clock_tolerance_ms", _)) => {}
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, root_cert))
}

/// `clock_tolerance_ms=N` from the URL, if given.
fn clock_tolerance(url: &str) -> Result<Option<Duration>, StoreError> {
    let Some((_, query)) = url.split_once('?') else {
        return Ok(None);
    };
    for pair in query.split('&') {
        if let Some(("clock_tolerance_ms", value)) = pair.split_once('=') {
            let ms: u64 = value.parse().map_err(|_| {
                StoreError::Io(
                    format!("clock_tolerance_ms={value}: not a whole number of milliseconds")
                        .into(),
                )
            })?;
            return Ok(Some(Duration::from_millis(ms)));
        }
    }
    Ok(None)
}

/// Whether the URL sets `sslmode` itself.
fn names_sslmode(url: &str) -> bool {
    url.split_once('?').is_some_and(|(_, query)| {
        query.split('&').any(|pair| {
            pair.split_once('=')
                .is_some_and(|(key, _)| key == "sslmode")
        })
    })
}

/// Whether every host of `config` is this machine: `localhost`, a loopback
/// address, or a Unix socket. A name that merely resolves to a loopback
/// address counts as another host (the stricter default).
fn all_hosts_loopback(config: &Config) -> bool {
    config.get_hosts().iter().all(|host| match host {
        postgres::config::Host::Tcp(name) => {
            let name = name.trim_start_matches('[').trim_end_matches(']');
            name.eq_ignore_ascii_case("localhost")
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        #[cfg(unix)]
        postgres::config::Host::Unix(_) => true,
    })
}

/// The TLS client every connection uses: rustls (aws-lc-rs), trusting the CA
/// certificates in `root_cert` if given, else the platform's roots. webpki
/// checks the chain and the host name; there is no way to turn either off.
fn tls_connector(root_cert: Option<&str>) -> Result<MakeRustlsConnect, StoreError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    if let Some(path) = root_cert {
        let pem = std::fs::read(path).map_err(|e| {
            StoreError::Io(format!("sslrootcert {path}: cannot read it: {e}").into())
        })?;
        let not_pem = |e: &dyn std::fmt::Display| {
            StoreError::Io(format!("sslrootcert {path}: not a PEM certificate: {e}").into())
        };
        for cert in CertificateDer::pem_slice_iter(&pem) {
            let cert = cert.map_err(|e| not_pem(&e))?;
            roots.add(cert).map_err(|e| not_pem(&e))?;
        }
        if roots.is_empty() {
            return Err(not_pem(&"it holds no certificate"));
        }
    } else {
        // Certificates the platform's store holds but webpki cannot parse are
        // skipped; with none at all every certificate fails to verify.
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
    }
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| StoreError::Io(format!("cannot set up TLS: {e}").into()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// `%XX` escapes decoded (a file name in a URL).
fn percent_decoded(text: &str) -> Result<String, StoreError> {
    let bad = || StoreError::Io(format!("bad escape in URL parameter {text:?}").into());
    let mut out = Vec::with_capacity(text.len());
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let hex = [bytes.next().ok_or_else(bad)?, bytes.next().ok_or_else(bad)?];
            let hex = std::str::from_utf8(&hex).map_err(|_| bad())?;
            out.push(u8::from_str_radix(hex, 16).map_err(|_| bad())?);
        } else {
            out.push(b);
        }
    }
    String::from_utf8(out).map_err(|_| bad())
}

impl PostgresStore {
    /// A store on the server at `url`. Only the URL is checked now; the
    /// connection is made by the first transaction (and remade after a
    /// fault), so a server that is down makes decisions deny, not the
    /// runtime fail to start.
    pub fn new(url: &str, options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        if !is_postgres_url(url) {
            return Err(StoreError::Io(
                "a PostgreSQL store URL starts with postgres:// or postgresql://"
                    .to_owned()
                    .into(),
            ));
        }
        let mut options = options;
        if let Some(ms) = clock_tolerance(url)? {
            options.clock_tolerance = ms;
        }
        let (url, root_cert) = tls_parameters(url)?;
        let mut config = Config::from_str(&url)
            .map_err(|e| StoreError::Io(format!("bad PostgreSQL URL: {e}").into()))?;
        if !names_sslmode(&url) && !all_hosts_loopback(&config) {
            config.ssl_mode(postgres::config::SslMode::Require);
        }
        let tls = tls_connector(root_cert.as_deref())?;
        config
            .connect_timeout(options.connect_timeout)
            .tcp_user_timeout(options.network_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30))
            .application_name("capfence");
        Ok(PostgresStore {
            shown: shown(&config),
            config,
            tls,
            options,
            connection: Mutex::new(None),
            listener: Mutex::new(None),
        })
    }

    /// Takes the writers' turn as a transaction does, runs `while_held`,
    /// then ends the transaction without writing anything. For tests of a
    /// host that stalls while it holds the turn; it can read and wait, never
    /// append.
    #[doc(hidden)]
    pub fn hold_turn(&self, while_held: &mut dyn FnMut()) -> Result<(), StoreError> {
        use crate::store::Writer as _;
        self.transaction(&mut |tx| {
            tx.head()?;
            while_held();
            Ok(())
        })
    }

    /// Connects now and checks (or creates) the schema, reporting why the
    /// server cannot be used.
    pub fn open_checked(url: &str, options: PostgresOptions) -> Result<PostgresStore, StoreError> {
        let store = PostgresStore::new(url, options)?;
        let conn = store.connect()?;
        if let Ok(mut slot) = store.connection.lock() {
            *slot = Some(conn);
        }
        Ok(store)
    }

    /// The server, without the password.
    pub fn server(&self) -> &str {
        &self.shown
    }

    fn classify(&self, e: postgres::Error) -> StoreError {
        classify(&self.shown, e)
    }

    /// A new connection to the server (TLS as configured).
    fn open_client(&self) -> Result<Client, StoreError> {
        self.config.connect(self.tls.clone()).map_err(|e| {
            StoreError::Io(
                format!(
                    "cannot reach the ledger at {}: {}",
                    self.shown,
                    describe(&e)
                )
                .into(),
            )
        })
    }

    fn connect(&self) -> Result<Conn, StoreError> {
        let mut client = self.open_client()?;
        let timeout = self.options.lock_timeout.as_millis().max(1);
        client
            .batch_execute(&format!(
                "SET statement_timeout = {timeout}; SET lock_timeout = {timeout}; \
                 SET idle_in_transaction_session_timeout = {}; \
                 SET default_transaction_isolation = 'read committed'",
                timeout.saturating_mul(4)
            ))
            .map_err(|e| self.classify(e))?;
        // A server set to acknowledge commits before they are on disk would
        // make an allowed call's record losable: ask for durable commits.
        let sync: String = client
            .query_one("SHOW synchronous_commit", &[])
            .and_then(|r| r.try_get(0))
            .map_err(|e| self.classify(e))?;
        if sync == "off" || sync == "local" {
            client
                .batch_execute("SET synchronous_commit = on")
                .map_err(|e| self.classify(e))?;
        }
        self.check_schema(&mut client)?;
        Ok(Conn {
            client,
            statements: HashMap::new(),
        })
    }

    /// Creates the schema in a database that has none (under a lock, so
    /// hosts starting together do not race); refuses a `capfence` schema
    /// that holds other tables or another format.
    fn check_schema(&self, client: &mut Client) -> Result<(), StoreError> {
        let err = |e: postgres::Error| self.classify(e);
        let mut tx = client.transaction().map_err(err)?;
        // One lock for every host creating the schema at once; it ends with
        // the transaction.
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('capfence.schema'))",
            &[],
        )
        .map_err(err)?;
        let tables: Vec<String> = tx
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1",
                &[&SCHEMA_NAME],
            )
            .map_err(err)?
            .iter()
            .map(|r| r.try_get::<_, String>(0))
            .collect::<Result<_, _>>()
            .map_err(err)?;
        if let Some(other) = tables.iter().find(|t| !TABLES.contains(&t.as_str())) {
            return Err(StoreError::Foreign(
                format!(
                    "schema {SCHEMA_NAME} at {} holds a table CapFence did not create: {other}",
                    self.shown
                )
                .into(),
            ));
        }
        if tables.iter().any(|t| t == "meta") {
            let format: Option<String> = tx
                .query_opt("SELECT value FROM capfence.meta WHERE key = 'format'", &[])
                .map_err(err)?
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(err)?;
            if format.as_deref() != Some(super::sqlite::STATE_FORMAT) {
                return Err(StoreError::Foreign(
                    format!(
                        "schema {SCHEMA_NAME} at {} has format {:?}, expected {}",
                        self.shown,
                        format.unwrap_or_default(),
                        super::sqlite::STATE_FORMAT
                    )
                    .into(),
                ));
            }
        }
        // DDL only where something is missing: `CREATE INDEX IF NOT EXISTS`
        // locks its table even when the index exists, which would deadlock
        // with writers of another host.
        if tables.len() < TABLES.len() {
            tx.batch_execute(SCHEMA).map_err(err)?;
            tx.execute(
                "INSERT INTO capfence.meta (key, value) VALUES ('format', $1) \
                 ON CONFLICT DO NOTHING",
                &[&super::sqlite::STATE_FORMAT],
            )
            .map_err(err)?;
        }
        tx.commit().map_err(err)
    }

    fn slot(&self) -> Result<std::sync::MutexGuard<'_, Option<Conn>>, StoreError> {
        self.connection
            .lock()
            .map_err(|_| StoreError::Io("store connection lock poisoned".to_owned().into()))
    }

    /// The connection in `slot`, made anew if there is none or it died.
    fn live<'s>(&self, slot: &'s mut Option<Conn>) -> Result<&'s mut Conn, StoreError> {
        if slot.as_ref().is_some_and(|c| c.client.is_closed()) {
            *slot = None;
        }
        match slot {
            Some(conn) => Ok(conn),
            None => Ok(slot.insert(self.connect()?)),
        }
    }

    /// Runs `work` on the connection, connecting first if there is none or
    /// it died; a connection found dead afterwards is dropped, so the next
    /// call reconnects.
    fn with_conn<T>(
        &self,
        work: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut slot = self.slot()?;
        let conn = self.live(&mut slot)?;
        let result = work(conn);
        if conn.client.is_closed()
            || matches!(result, Err(StoreError::Corrupt(_) | StoreError::Foreign(_)))
        {
            *slot = None;
        }
        result
    }

    /// A read-only snapshot transaction with no statement limit (a scan of
    /// a long chain takes as long as it takes).
    fn read<T>(
        &self,
        work: impl FnOnce(&mut postgres::Transaction<'_>) -> Result<T, postgres::Error>,
    ) -> Result<T, StoreError> {
        self.with_conn(|conn| {
            let mut tx = conn
                .client
                .build_transaction()
                .read_only(true)
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .start()
                .map_err(|e| self.classify(e))?;
            tx.batch_execute("SET LOCAL statement_timeout = 0")
                .map_err(|e| self.classify(e))?;
            let value = work(&mut tx).map_err(|e| self.classify(e))?;
            tx.commit().map_err(|e| self.classify(e))?;
            Ok(value)
        })
    }
}

/// The error with its cause (the client's own message often says only
/// "error connecting to server" or "db error").
fn describe(e: &postgres::Error) -> String {
    if let Some(bad) = certificate_fault(e) {
        return format!("TLS: certificate verify failed: {bad}");
    }
    match (e.as_db_error(), std::error::Error::source(e)) {
        (Some(db), _) => format!("{}: {}", db.severity(), db.message()),
        (None, Some(cause)) => format!("{e}: {cause}"),
        (None, None) => e.to_string(),
    }
}

/// The rustls error in `e`'s chain when the server's certificate was refused
/// (unknown issuer, wrong host name, expired…).
fn certificate_fault(e: &postgres::Error) -> Option<&rustls::Error> {
    let mut cause = std::error::Error::source(e);
    while let Some(err) = cause {
        let tls = err.downcast_ref::<rustls::Error>().or_else(|| {
            err.downcast_ref::<std::io::Error>()
                .and_then(|io| io.get_ref())
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        });
        if let Some(tls @ rustls::Error::InvalidCertificate(_)) = tls {
            return Some(tls);
        }
        cause = err.source();
    }
    None
}

fn classify(server: &str, e: postgres::Error) -> StoreError {
    let code = e.code().cloned();
    let text = Detail::caused(format!("{server}: {}", describe(&e)), e);
    let Some(code) = code.as_ref() else {
        // No SQLSTATE: the connection (refused, cut, timed out) or the
        // protocol.
        return StoreError::Io(text);
    };
    if *code == SqlState::T_R_SERIALIZATION_FAILURE
        || *code == SqlState::T_R_DEADLOCK_DETECTED
        || *code == SqlState::LOCK_NOT_AVAILABLE
        || *code == SqlState::QUERY_CANCELED
    {
        StoreError::Locked(text)
    } else if *code == SqlState::DISK_FULL || *code == SqlState::PROGRAM_LIMIT_EXCEEDED {
        StoreError::Full(text)
    } else if *code == SqlState::READ_ONLY_SQL_TRANSACTION {
        StoreError::ReadOnly(text)
    } else if *code == SqlState::DATA_CORRUPTED || *code == SqlState::INDEX_CORRUPTED {
        StoreError::Corrupt(text)
    } else if *code == SqlState::UNDEFINED_TABLE || *code == SqlState::UNDEFINED_COLUMN {
        StoreError::Foreign(text)
    } else {
        StoreError::Io(text)
    }
}

struct PgTx<'c, 's> {
    tx: postgres::Transaction<'c>,
    statements: &'s mut HashMap<&'static str, Statement>,
    server: &'s str,
    head: Option<(u64, String)>,
    window_heads: window::HeadCache,
    /// The server's clock, read once per transaction (µs since the epoch).
    clock: Option<i64>,
    /// How far a host's clock may be from it (µs).
    tolerance: i64,
    /// Whether this transaction has queued its `NOTIFY` (once, on the first
    /// append: delivered at commit, to followers of the chain).
    notified: bool,
}

/// The channel every commit that appends records notifies, for
/// `capfence audit log --follow`.
const AUDIT_CHANNEL: &str = "capfence_audit";

fn record_from_row(row: &Row) -> Result<AuditRecord, StoreError> {
    let get = |e: postgres::Error| StoreError::Invalid(format!("audit row: {e}").into());
    let decision: String = row.try_get(7).map_err(get)?;
    Ok(AuditRecord {
        seq: from_i64(row.try_get(0).map_err(get)?)?,
        time: row.try_get(1).map_err(get)?,
        actor: row.try_get(2).map_err(get)?,
        capability: row.try_get(3).map_err(get)?,
        environment: row.try_get(4).map_err(get)?,
        risk: row.try_get(5).map_err(get)?,
        payload: row.try_get(6).map_err(get)?,
        decision: rows::record_kind(&decision)?,
        rule: row.try_get(8).map_err(get)?,
        reason: row.try_get(9).map_err(get)?,
        approval_id: row.try_get(10).map_err(get)?,
        policy_digest: row.try_get(11).map_err(get)?,
        prev_hash: row.try_get(12).map_err(get)?,
        hash: row.try_get(13).map_err(get)?,
    })
}

fn ticket_from_row(row: &Row) -> Result<Ticket, StoreError> {
    let get = |e: postgres::Error| StoreError::Invalid(format!("ticket row: {e}").into());
    TicketColumns {
        id: row.try_get(0).map_err(get)?,
        status: row.try_get(8).map_err(get)?,
        ticket: Ticket {
            id: 0,
            event_key: row.try_get(1).map_err(get)?,
            actor: row.try_get(2).map_err(get)?,
            capability: row.try_get(3).map_err(get)?,
            environment: row.try_get(4).map_err(get)?,
            risk: row.try_get(5).map_err(get)?,
            payload: row.try_get(6).map_err(get)?,
            rule: row.try_get(7).map_err(get)?,
            status: TicketStatus::Pending,
            created_at: row.try_get(9).map_err(get)?,
            expires_at: row.try_get(10).map_err(get)?,
            decided_by: row.try_get(11).map_err(get)?,
        },
    }
    .finish()
}

fn grant_from_row(row: &Row) -> Result<Grant, StoreError> {
    let get = |e: postgres::Error| StoreError::Invalid(format!("grant row: {e}").into());
    GrantColumns {
        id: row.try_get(0).map_err(get)?,
        actor: row.try_get(1).map_err(get)?,
        capability: row.try_get(2).map_err(get)?,
        environment: row.try_get(3).map_err(get)?,
        granted_by: row.try_get(4).map_err(get)?,
        created_at: row.try_get(5).map_err(get)?,
        expires_at: row.try_get(6).map_err(get)?,
        caps: row.try_get(7).map_err(get)?,
        uses: row.try_get(8).map_err(get)?,
        revoked_by: row.try_get(9).map_err(get)?,
    }
    .finish()
}

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

impl PgTx<'_, '_> {
    fn statement(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self.tx.prepare(sql).map_err(|e| classify(self.server, e))?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }

    fn query(&mut self, sql: &'static str, params: Params<'_>) -> Result<Vec<Row>, StoreError> {
        let s = self.statement(sql)?;
        self.tx
            .query(&s, params)
            .map_err(|e| classify(self.server, e))
    }

    fn query_opt(
        &mut self,
        sql: &'static str,
        params: Params<'_>,
    ) -> Result<Option<Row>, StoreError> {
        let s = self.statement(sql)?;
        self.tx
            .query_opt(&s, params)
            .map_err(|e| classify(self.server, e))
    }

    fn execute(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, StoreError> {
        let s = self.statement(sql)?;
        self.tx
            .execute(&s, params)
            .map_err(|e| classify(self.server, e))
    }

    fn returning_id(&mut self, sql: &'static str, params: Params<'_>) -> Result<u64, StoreError> {
        let row = self
            .query_opt(sql, params)?
            .ok_or_else(|| StoreError::Invalid("an insert returned no id".to_owned().into()))?;
        let id: i64 = row
            .try_get(0)
            .map_err(|e| StoreError::Invalid(format!("inserted id: {e}").into()))?;
        from_i64(id)
    }
}

impl Tx for PgTx<'_, '_> {
    fn ledger_time(&mut self, host: i64) -> Result<i64, StoreError> {
        let server = match self.clock {
            Some(t) => t,
            None => {
                let row = self.query_opt(
                    "SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::int8",
                    &[],
                )?;
                let t = row
                    .and_then(|r| r.try_get::<_, i64>(0).ok())
                    .ok_or_else(|| {
                        StoreError::Invalid("the server's clock is unreadable".into())
                    })?;
                self.clock = Some(t);
                t
            }
        };
        let apart = host.abs_diff(server);
        if apart > self.tolerance.unsigned_abs() {
            return Err(StoreError::ClockSkew {
                host_micros: host,
                ledger_micros: server,
                tolerance_micros: self.tolerance.unsigned_abs(),
            });
        }
        Ok(server)
    }

    fn head(&mut self) -> Result<(u64, String), StoreError> {
        if let Some(head) = &self.head {
            return Ok(head.clone());
        }
        let row = self.query_opt(
            "SELECT seq, hash FROM capfence.audit ORDER BY seq DESC LIMIT 1",
            &[],
        )?;
        let head = match row {
            Some(row) => {
                let get =
                    |e: postgres::Error| StoreError::Invalid(format!("audit head: {e}").into());
                (
                    from_i64(row.try_get(0).map_err(get)?)?,
                    row.try_get(1).map_err(get)?,
                )
            }
            None => (0, GENESIS.to_owned()),
        };
        self.head = Some(head.clone());
        Ok(head)
    }

    fn append(&mut self, r: &AuditRecord) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO capfence.audit (seq, time, actor, capability, environment, risk, \
             payload, decision, rule, reason, approval_id, policy_digest, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
            &[
                &to_i64(r.seq)?,
                &r.time,
                &r.actor,
                &r.capability,
                &r.environment,
                &r.risk,
                &r.payload,
                &r.decision.as_str(),
                &r.rule,
                &r.reason,
                &r.approval_id,
                &r.policy_digest,
                &r.prev_hash,
                &r.hash,
            ],
        )?;
        self.head = Some((r.seq, r.hash.clone()));
        if !self.notified {
            // Transactional: listeners hear of it when (and only if) the
            // records commit.
            self.tx
                .batch_execute(&format!("NOTIFY {AUDIT_CHANNEL}"))
                .map_err(|e| classify(self.server, e))?;
            self.notified = true;
        }
        Ok(())
    }

    fn records_citing(&mut self, approval_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
        self.query(
            "SELECT seq, time, actor, capability, environment, risk, payload, decision, rule, \
             reason, approval_id, policy_digest, prev_hash, hash FROM capfence.audit \
             WHERE approval_id = $1 AND (decision != 'require_approval' \
             OR seq = (SELECT min(seq) FROM capfence.audit WHERE approval_id = $1)) \
             ORDER BY seq",
            &[&approval_id],
        )?
        .iter()
        .map(record_from_row)
        .collect()
    }

    fn record_at(&mut self, seq: u64) -> Result<Option<AuditRecord>, StoreError> {
        self.query_opt(
            "SELECT seq, time, actor, capability, environment, risk, payload, decision, rule, \
             reason, approval_id, policy_digest, prev_hash, hash FROM capfence.audit \
             WHERE seq = $1",
            &[&to_i64(seq)?],
        )?
        .as_ref()
        .map(record_from_row)
        .transpose()
    }

    fn latest_ticket(&mut self, event_key: &str, now: i64) -> Result<Option<Ticket>, StoreError> {
        self.query_opt(
            "SELECT id, event_key, actor, capability, environment, risk, payload, rule, status, \
             created_at, expires_at, decided_by FROM capfence.tickets \
             WHERE event_key = $1 AND status != 'used' AND expires_at > $2 \
             ORDER BY id DESC LIMIT 1",
            &[&event_key, &now],
        )?
        .as_ref()
        .map(ticket_from_row)
        .transpose()
    }

    fn ticket(&mut self, id: u64) -> Result<Option<Ticket>, StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        self.query_opt(
            "SELECT id, event_key, actor, capability, environment, risk, payload, rule, status, \
             created_at, expires_at, decided_by FROM capfence.tickets WHERE id = $1",
            &[&id],
        )?
        .as_ref()
        .map(ticket_from_row)
        .transpose()
    }

    fn insert_ticket(&mut self, t: &Ticket) -> Result<u64, StoreError> {
        self.returning_id(
            "INSERT INTO capfence.tickets (event_key, actor, capability, environment, risk, \
             payload, rule, status, created_at, expires_at, decided_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
            &[
                &t.event_key,
                &t.actor,
                &t.capability,
                &t.environment,
                &t.risk,
                &t.payload,
                &t.rule,
                &t.status.as_str(),
                &t.created_at,
                &t.expires_at,
                &t.decided_by,
            ],
        )
    }

    fn update_ticket(
        &mut self,
        id: u64,
        status: TicketStatus,
        decided_by: Option<&str>,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE capfence.tickets SET status = $2, decided_by = COALESCE($3, decided_by) \
             WHERE id = $1",
            &[&to_i64(id)?, &status.as_str(), &decided_by],
        )
        .map(|_| ())
    }

    fn grants_for(
        &mut self,
        actor: &str,
        capability: &str,
        environment: &str,
    ) -> Result<Vec<Grant>, StoreError> {
        self.query(
            "SELECT id, actor, capability, environment, granted_by, created_at, expires_at, \
             caps, uses_left, revoked_by FROM capfence.grants \
             WHERE actor = $1 AND capability = $2 AND environment = $3 ORDER BY id",
            &[&actor, &capability, &environment],
        )?
        .iter()
        .map(grant_from_row)
        .collect()
    }

    fn grant(&mut self, id: u64) -> Result<Option<Grant>, StoreError> {
        let Ok(id) = i64::try_from(id) else {
            return Ok(None);
        };
        self.query_opt(
            "SELECT id, actor, capability, environment, granted_by, created_at, expires_at, \
             caps, uses_left, revoked_by FROM capfence.grants WHERE id = $1",
            &[&id],
        )?
        .as_ref()
        .map(grant_from_row)
        .transpose()
    }

    fn insert_grant(&mut self, g: &Grant) -> Result<u64, StoreError> {
        self.returning_id(
            "INSERT INTO capfence.grants (actor, capability, environment, granted_by, \
             created_at, expires_at, caps, uses_left, revoked_by) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) RETURNING id",
            &[
                &g.actor,
                &g.capability,
                &g.environment,
                &g.granted_by,
                &g.created_at,
                &g.expires_at,
                &crate::approvals::caps_text(&g.caps),
                &g.uses_left.map(i64::from),
                &g.revoked_by,
            ],
        )
    }

    fn update_grant(
        &mut self,
        id: u64,
        uses_left: Option<u32>,
        revoked_by: Option<&str>,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE capfence.grants SET uses_left = $2, revoked_by = COALESCE($3, revoked_by) \
             WHERE id = $1",
            &[&to_i64(id)?, &uses_left.map(i64::from), &revoked_by],
        )
        .map(|_| ())
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
        let key = note_key(key);
        self.query_opt("SELECT value FROM capfence.meta WHERE key = $1", &[&key])?
            .map(|r| {
                r.try_get(0)
                    .map_err(|e| StoreError::Invalid(format!("note {key}: {e}").into()))
            })
            .transpose()
    }

    fn set_note(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO capfence.meta (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value",
            &[&note_key(key), &value],
        )
        .map(|_| ())
    }

    fn has_note_with_prefix(&mut self, prefix: &str) -> Result<bool, StoreError> {
        let prefix = note_key(prefix);
        Ok(self
            .query_opt(
                "SELECT 1 FROM capfence.meta WHERE left(key, length($1)) = $1 LIMIT 1",
                &[&prefix],
            )?
            .is_some())
    }
}

fn note_key(key: &str) -> String {
    format!("note:{key}")
}

fn decimal_text(d: Decimal) -> String {
    d.normalize().to_string()
}

impl WindowRows for PgTx<'_, '_> {
    fn update_row(
        &mut self,
        spec: &str,
        group: &str,
        n: i64,
        value: Decimal,
        running: Decimal,
    ) -> Result<(), StoreError> {
        self.execute(
            "UPDATE capfence.windows SET value = $4, running = $5 \
             WHERE spec = $1 AND grp = $2 AND n = $3",
            &[
                &spec,
                &group,
                &n,
                &decimal_text(value),
                &decimal_text(running),
            ],
        )
        .map(|_| ())
    }

    fn head_cache(&mut self) -> &mut window::HeadCache {
        &mut self.window_heads
    }

    fn load_head(&mut self, spec: &str, group: &str) -> Result<Option<WindowHead>, StoreError> {
        let Some(row) = self.query_opt(
            "SELECT last_n, last_at, running, start_n, start_at, start_before \
             FROM capfence.window_heads WHERE spec = $1 AND grp = $2",
            &[&spec, &group],
        )?
        else {
            return Ok(None);
        };
        let get = |e: postgres::Error| StoreError::Invalid(format!("window head: {e}").into());
        Ok(Some(WindowHead {
            last_n: row.try_get(0).map_err(get)?,
            last_at: row.try_get(1).map_err(get)?,
            running: decimal_of(row.try_get(2).map_err(get)?)?,
            start_n: row.try_get(3).map_err(get)?,
            start_at: row.try_get(4).map_err(get)?,
            start_before: decimal_of(row.try_get(5).map_err(get)?)?,
        }))
    }

    fn store_head(&mut self, spec: &str, group: &str, head: &WindowHead) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO capfence.window_heads (spec, grp, last_n, last_at, running, start_n, \
             start_at, start_before) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (spec, grp) DO UPDATE SET last_n = EXCLUDED.last_n, \
             last_at = EXCLUDED.last_at, running = EXCLUDED.running, start_n = EXCLUDED.start_n, \
             start_at = EXCLUDED.start_at, start_before = EXCLUDED.start_before",
            &[
                &spec,
                &group,
                &head.last_n,
                &head.last_at,
                &decimal_text(head.running),
                &head.start_n,
                &head.start_at,
                &decimal_text(head.start_before),
            ],
        )
        .map(|_| ())
    }

    fn row(
        &mut self,
        spec: &str,
        group: &str,
        n: i64,
    ) -> Result<Option<(i64, Decimal, Decimal)>, StoreError> {
        let Some(row) = self.query_opt(
            "SELECT at, running, value FROM capfence.windows \
             WHERE spec = $1 AND grp = $2 AND n = $3",
            &[&spec, &group, &n],
        )?
        else {
            return Ok(None);
        };
        let get = |e: postgres::Error| StoreError::Invalid(format!("window row: {e}").into());
        Ok(Some((
            row.try_get(0).map_err(get)?,
            decimal_of(row.try_get(1).map_err(get)?)?,
            decimal_of(row.try_get(2).map_err(get)?)?,
        )))
    }

    fn insert_row(
        &mut self,
        spec: &str,
        group: &str,
        head: &WindowHead,
        value: Decimal,
    ) -> Result<(), StoreError> {
        self.execute(
            "INSERT INTO capfence.windows (spec, grp, n, at, value, running) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            &[
                &spec,
                &group,
                &head.last_n,
                &head.last_at,
                &decimal_text(value),
                &decimal_text(head.running),
            ],
        )
        .map(|_| ())
    }
}

/// Whether the error says the connection is gone: closed, cut with no
/// answer, or ended by the server (SQLSTATE class 08, connection
/// exception, or 57P, operator intervention: shutdown, terminated backend).
fn dead_connection(e: &postgres::Error) -> bool {
    e.is_closed()
        || e.code()
            .is_none_or(|c| c.code().starts_with("08") || c.code().starts_with("57P"))
}

/// How one attempt at a transaction ended.
enum Attempt {
    /// Committed, or failed after it began (never retried).
    Done(Result<(), StoreError>),
    /// The connection was dead at `BEGIN`: nothing reached the server.
    Dead(StoreError),
    /// The connection died around `COMMIT`: the server may have committed.
    /// The last record appended, to look for.
    InDoubt(StoreError, Option<(u64, String)>),
}

impl PostgresStore {
    fn attempt(
        &self,
        conn: &mut Conn,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Attempt {
        let Conn { client, statements } = conn;
        // BEGIN, then this host's turn: the format row, locked until COMMIT
        // or ROLLBACK, orders every writer on every host.
        let (last, xid) = match self.begin_work_commit(client, statements, work) {
            Ok(done) => done,
            Err(attempt) => return attempt,
        };
        let Some(xid) = xid else {
            return Attempt::Done(Ok(()));
        };
        match client.query_one("SELECT pg_xact_status($1::text::xid8)", &[&xid]) {
            Ok(row) => match row.try_get::<_, Option<String>>(0) {
                Ok(Some(status)) if status == "committed" => Attempt::Done(Ok(())),
                Ok(status) => Attempt::Done(Err(StoreError::Io(
                    format!(
                        "{}: COMMIT was answered, but transaction {xid} is {} on the server: \
                     nothing of it was kept",
                        self.shown,
                        status.as_deref().unwrap_or("unknown")
                    )
                    .into(),
                ))),
                Err(e) => Attempt::Done(Err(self.classify(e))),
            },
            Err(e) if dead_connection(&e) => Attempt::InDoubt(self.classify(e), last),
            Err(e) => Attempt::Done(Err(self.classify(e))),
        }
    }

    /// BEGIN, this host's turn, `work`, COMMIT: the last record appended and
    /// the transaction's id (none when it wrote nothing), or how it ended.
    #[allow(clippy::type_complexity)]
    fn begin_work_commit(
        &self,
        client: &mut Client,
        statements: &mut HashMap<&'static str, Statement>,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(Option<(u64, String)>, Option<String>), Attempt> {
        let tx = match client.transaction().and_then(|mut tx| {
            tx.execute(
                "SELECT 1 FROM capfence.meta WHERE key = 'format' FOR UPDATE",
                &[],
            )
            .map(|_| tx)
        }) {
            Ok(tx) => tx,
            Err(e) if dead_connection(&e) => return Err(Attempt::Dead(self.classify(e))),
            Err(e) => return Err(Attempt::Done(Err(self.classify(e)))),
        };
        let mut pg = PgTx {
            tx,
            statements,
            server: &self.shown,
            head: None,
            window_heads: window::HeadCache::new(),
            clock: None,
            tolerance: i64::try_from(self.options.clock_tolerance.as_micros()).unwrap_or(i64::MAX),
            notified: false,
        };
        // Dropping an uncommitted transaction rolls it back.
        if let Err(fault) = work(&mut pg) {
            return Err(Attempt::Done(Err(fault)));
        }
        let last = pg.head.clone();
        // The transaction's id (none when it wrote nothing): after COMMIT the
        // server says whether that transaction committed. COMMIT's own
        // answer does not tell: a server answers it with ROLLBACK for a
        // failed transaction, and rust-postgres reports both as success.
        let xid = match pg
            .tx
            .query_one("SELECT pg_current_xact_id_if_assigned()::text", &[])
        {
            Ok(row) => match row.try_get::<_, Option<String>>(0) {
                Ok(xid) => xid,
                Err(e) => return Err(Attempt::Done(Err(self.classify(e)))),
            },
            Err(e) if dead_connection(&e) => return Err(Attempt::Done(Err(self.classify(e)))),
            Err(e) => return Err(Attempt::Done(Err(self.classify(e)))),
        };
        match pg.tx.commit() {
            Ok(()) => Ok((last, xid)),
            Err(e) if dead_connection(&e) => Err(Attempt::InDoubt(self.classify(e), last)),
            Err(e) => Err(Attempt::Done(Err(self.classify(e)))),
        }
    }
}

impl PostgresStore {
    /// A commit whose answer was lost: on a new connection, the record it
    /// appended tells whether it committed (then it counts as done).
    /// Otherwise — not there, or the server still unreachable — it fails:
    /// the decision is denied, and if it did commit after all, the chain
    /// holds an allowed call that never ran (never the reverse).
    fn resolve(&self, fault: StoreError, last: Option<(u64, String)>) -> Result<(), StoreError> {
        let Some((seq, hash)) = last else {
            return Err(fault);
        };
        let found = self.connect().and_then(|mut conn| {
            let seq = to_i64(seq)?;
            let row = conn
                .client
                .query_opt("SELECT hash FROM capfence.audit WHERE seq = $1", &[&seq])
                .map_err(|e| self.classify(e))?;
            if let Ok(mut slot) = self.slot() {
                *slot = Some(conn);
            }
            row.map(|r| r.try_get::<_, String>(0))
                .transpose()
                .map_err(|e| StoreError::Invalid(format!("audit row {seq}: {e}").into()))
        });
        match found {
            Ok(Some(stored)) if stored == hash => {
                tracing::info!(seq, "commit answer lost; the record is on the chain");
                Ok(())
            }
            _ => Err(fault),
        }
    }
}

impl crate::store::Writer for PostgresStore {
    fn transaction(
        &self,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut retried = false;
        loop {
            let mut slot = self.slot()?;
            let conn = self.live(&mut slot)?;
            let outcome = self.attempt(conn, work);
            if conn.client.is_closed() {
                *slot = None;
            }
            match outcome {
                Attempt::Done(result) => return result,
                // A connection that died while idle (a server restart) is
                // replaced once; nothing of this transaction was sent.
                Attempt::Dead(_) if !retried => {
                    *slot = None;
                    retried = true;
                }
                Attempt::Dead(fault) => return Err(fault),
                Attempt::InDoubt(fault, last) => {
                    *slot = None;
                    drop(slot);
                    return self.resolve(fault, last);
                }
            }
        }
    }
}

impl Store for PostgresStore {
    fn wait_for_records(&self, after: u64, timeout: Duration) -> Result<bool, StoreError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut slot = self
            .listener
            .lock()
            .map_err(|_| StoreError::Io("listener lock poisoned".to_owned().into()))?;
        loop {
            if slot.is_none() {
                let mut client = self.open_client()?;
                client
                    .batch_execute(&format!("LISTEN {AUDIT_CHANNEL}"))
                    .map_err(|e| self.classify(e))?;
                *slot = Some(client);
            }
            // Listening before looking: a commit after the look is heard.
            let found = self.has_records_after(after)?;
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if found || left.is_zero() {
                return Ok(found);
            }
            let Some(client) = slot.as_mut() else {
                continue;
            };
            let waited = {
                let mut heard = client.notifications();
                let waited = heard.timeout_iter(left).next().map(|_| ());
                // Drain what else arrived, then look again.
                while let Ok(Some(_)) = heard.iter().next() {}
                waited
            };
            if let Err(e) = waited {
                // A dead listener is remade on the next wait.
                *slot = None;
                return Err(self.classify(e));
            }
        }
    }

    fn scan_after(
        &self,
        after: u64,
        visit: &mut dyn FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError> {
        let after = to_i64(after)?;
        let mut fault = None;
        self.read(|tx| {
            let mut rows = tx.query_raw(
                "SELECT seq, time, actor, capability, environment, risk, payload, decision, \
                 rule, reason, approval_id, policy_digest, prev_hash, hash FROM capfence.audit \
                 WHERE seq > $1 ORDER BY seq",
                [&after as &(dyn ToSql + Sync)],
            )?;
            while let Some(row) = rows.next()? {
                match record_from_row(&row) {
                    Ok(record) => {
                        if !visit(record) {
                            break;
                        }
                    }
                    Err(e) => {
                        fault = Some(e);
                        break;
                    }
                }
            }
            Ok(())
        })?;
        fault.map_or(Ok(()), Err)
    }

    fn scan_views(&self, visit: &mut dyn FnMut(&RecordView<'_>) -> bool) -> Result<(), StoreError> {
        fn text(row: &Row, i: usize) -> Result<&[u8], postgres::Error> {
            row.try_get::<_, &str>(i).map(str::as_bytes)
        }
        fn opt(row: &Row, i: usize) -> Result<Option<&[u8]>, postgres::Error> {
            row.try_get::<_, Option<&str>>(i)
                .map(|v| v.map(str::as_bytes))
        }
        self.read(|tx| {
            let mut rows = tx.query_raw(
                "SELECT seq, time, actor, capability, environment, risk, payload, decision, \
                 rule, reason, approval_id, policy_digest, prev_hash, hash FROM capfence.audit \
                 ORDER BY seq",
                std::iter::empty::<&(dyn ToSql + Sync)>(),
            )?;
            while let Some(row) = rows.next()? {
                let view = RecordView {
                    seq: u64::try_from(row.try_get::<_, i64>(0)?).unwrap_or(0),
                    time: text(&row, 1)?,
                    actor: opt(&row, 2)?,
                    capability: opt(&row, 3)?,
                    environment: opt(&row, 4)?,
                    risk: opt(&row, 5)?,
                    payload: text(&row, 6)?,
                    decision: text(&row, 7)?,
                    rule: opt(&row, 8)?,
                    reason: text(&row, 9)?,
                    approval_id: opt(&row, 10)?,
                    policy_digest: opt(&row, 11)?,
                    prev_hash: text(&row, 12)?,
                    hash: text(&row, 13)?,
                };
                if !visit(&view) {
                    break;
                }
            }
            Ok(())
        })
    }

    fn tickets(&self) -> Result<Vec<Ticket>, StoreError> {
        self.read(|tx| tx.query(TICKETS, &[]))?
            .iter()
            .map(ticket_from_row)
            .collect()
    }

    fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.read(|tx| tx.query(GRANTS, &[]))?
            .iter()
            .map(grant_from_row)
            .collect()
    }

    fn rows(&self) -> Result<super::Rows, StoreError> {
        // One read-only REPEATABLE READ transaction: one snapshot.
        let (head, tickets, grants, windows, heads) = self.read(|tx| {
            let head: Option<i64> = tx
                .query_one("SELECT max(seq) FROM capfence.audit", &[])?
                .try_get(0)?;
            Ok((
                head,
                tx.query(TICKETS, &[])?,
                tx.query(GRANTS, &[])?,
                tx.query(
                    "SELECT spec, grp, at, value, running FROM capfence.windows \
                     ORDER BY spec, grp, n",
                    &[],
                )?,
                tx.query(
                    "SELECT spec, grp, last_n, running FROM capfence.window_heads \
                     ORDER BY spec, grp",
                    &[],
                )?,
            ))
        })?;
        let window = |e: postgres::Error| StoreError::Invalid(format!("window row: {e}").into());
        Ok(super::Rows {
            head: head.map_or(Ok(0), from_i64)?,
            tickets: tickets
                .iter()
                .map(ticket_from_row)
                .collect::<Result<_, _>>()?,
            grants: grants
                .iter()
                .map(grant_from_row)
                .collect::<Result<_, _>>()?,
            windows: windows
                .iter()
                .map(|row| {
                    Ok(WindowRow {
                        spec: row.try_get(0).map_err(window)?,
                        group: row.try_get(1).map_err(window)?,
                        at: row.try_get(2).map_err(window)?,
                        value: decimal_of(row.try_get(3).map_err(window)?)?,
                        running: decimal_of(row.try_get(4).map_err(window)?)?,
                    })
                })
                .collect::<Result<_, StoreError>>()?,
            window_heads: heads
                .iter()
                .map(|row| {
                    Ok((
                        row.try_get(0).map_err(window)?,
                        row.try_get(1).map_err(window)?,
                        u64::try_from(row.try_get::<_, i64>(2).map_err(window)?).unwrap_or(0),
                        decimal_of(row.try_get(3).map_err(window)?)?,
                    ))
                })
                .collect::<Result<_, StoreError>>()?,
        })
    }
}

const TICKETS: &str = "SELECT id, event_key, actor, capability, environment, risk, payload, \
     rule, status, created_at, expires_at, decided_by FROM capfence.tickets ORDER BY id DESC";
const GRANTS: &str = "SELECT id, actor, capability, environment, granted_by, created_at, \
     expires_at, caps, uses_left, revoked_by FROM capfence.grants ORDER BY id DESC";

#[cfg(test)]
mod url_tests {
    use super::{percent_decoded, tls_parameters};

    #[test]
    fn tls_parameters_are_taken_out_of_the_url() {
        assert_eq!(
            tls_parameters("postgres://u@h/db").ok(),
            Some(("postgres://u@h/db".to_owned(), None))
        );
        assert_eq!(
            tls_parameters("postgres://u@h/db?sslrootcert=%2Fetc%2Fca%20x.pem&sslmode=verify-full")
                .ok(),
            Some((
                "postgres://u@h/db?sslmode=require".to_owned(),
                Some("/etc/ca x.pem".to_owned())
            ))
        );
        assert_eq!(
            tls_parameters("postgres://u@h/db?application_name=x&sslrootcert=/ca.pem").ok(),
            Some((
                "postgres://u@h/db?application_name=x".to_owned(),
                Some("/ca.pem".to_owned())
            ))
        );
    }

    #[test]
    fn bad_escapes_are_errors() {
        for bad in ["%", "%4", "%zz", "%ff"] {
            assert!(percent_decoded(bad).is_err(), "{bad}");
        }
    }
}
