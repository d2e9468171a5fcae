//! Durable, audited decisions per second on the embedded SQLite store, with 1,
//! 8 and 32 callers, beside the raw SQLite floor measured in the same run at
//! the same rows per fsync'd transaction (1, 8, 32: what a group commit of
//! that many callers can gather at best); on a PostgreSQL server with 1 and
//! 8 callers; and `verify` throughput, over 1,000,000 records on both.
//! Run: `cargo bench --bench runtime`; with `CAPFENCE_BENCH_POSTGRES` set to
//! a server URL (`tests/postgres/server.sh start DIR PORT` prints one) the
//! PostgreSQL cases run too, in a database of their own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use capfence::{ActionEvent, ActionRuntime, Decimal, Risk, payload};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/fintech_policy.yaml");

fn fresh_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("capfence-bench-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn event(i: u64) -> ActionEvent {
    // A mix of allow, deny and require_approval, like the shared bench events.
    let amount = [
        Decimal::new(12000, 2),
        Decimal::new(1_500_000, 2),
        Decimal::new(250_000, 2),
    ][(i % 3) as usize];
    ActionEvent::create(
        "treasury-agent",
        "transfer",
        "payments",
        "production",
        Risk::Low,
        payload! {"amount" => amount, "destination" => format!("vendor-{}", i % 97)},
    )
}

fn sqlite_floor(c: &mut Criterion) {
    let mut group = c.benchmark_group("sqlite_floor");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    let dir = fresh_dir("floor");
    let conn = rusqlite::Connection::open(dir.join("floor.db")).unwrap();
    conn.query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .unwrap();
    conn.execute_batch(
        "PRAGMA synchronous=FULL; CREATE TABLE t (seq INTEGER PRIMARY KEY, body TEXT NOT NULL);",
    )
    .unwrap();
    let body = "x".repeat(300);
    group.throughput(Throughput::Elements(1));
    group.bench_function("one_insert_per_transaction", |b| {
        b.iter(|| {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            conn.execute("INSERT INTO t (body) VALUES (?1)", [&body])
                .unwrap();
            conn.execute_batch("COMMIT").unwrap();
        });
    });
    group.throughput(Throughput::Elements(8));
    group.bench_function("eight_inserts_per_transaction", |b| {
        b.iter(|| {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            for _ in 0..8 {
                conn.execute("INSERT INTO t (body) VALUES (?1)", [&body])
                    .unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
        });
    });
    group.throughput(Throughput::Elements(32));
    group.bench_function("thirty_two_inserts_per_transaction", |b| {
        b.iter(|| {
            conn.execute_batch("BEGIN IMMEDIATE").unwrap();
            for _ in 0..32 {
                conn.execute("INSERT INTO t (body) VALUES (?1)", [&body])
                    .unwrap();
            }
            conn.execute_batch("COMMIT").unwrap();
        });
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The case-study policy with a velocity rule beside its thresholds, with a
/// cap no bench history reaches: the same decisions, plus the window read
/// and write inside each transaction.
const VELOCITY_POLICY: &str = "
deny:
  - capability: payments.transfer
    amount_gt: 10000.0
  - capability: payments.transfer
    environment: staging
    amount_gt: 50.0
require_approval:
  - capability: payments.transfer
    amount_sum_gt: 1000000000000
    window: 24h
    per: [actor, destination]
  - capability: payments.transfer
    amount_gt: 500.0
  - capability: payments.refund
    amount_gt: 100.0
allow:
  - capability: payments.transfer
    amount_lte: 500.0
  - capability: payments.read
";

/// Durable decisions with and without a velocity window, at 1 and 8 callers.
fn velocity_decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("velocity_decisions");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1));
    let dir = fresh_dir("velocity-policy");
    let velocity = dir.join("velocity.yaml");
    std::fs::write(&velocity, VELOCITY_POLICY).unwrap();
    for (name, policy) in [
        ("without_window", PathBuf::from(POLICY)),
        ("with_window", velocity),
    ] {
        for threads in [1u64, 8] {
            let state = fresh_dir(&format!("velocity-{name}-{threads}"));
            let runtime = ActionRuntime::builder(&policy)
                .state_dir(&state)
                .build()
                .unwrap();
            let commits = Arc::new(CommitTally::default());
            let tally = commits.clone();
            runtime
                .ledger()
                .observe_commits(Box::new(move |took, jobs| tally.add(took, jobs)));
            group.bench_function(format!("{name}/threads_{threads}"), |b| {
                b.iter_custom(|iters| run_threads(&runtime, threads, iters));
            });
            commits.report(&format!("velocity_decisions/{name}/threads_{threads}"));
            let _ = std::fs::remove_dir_all(&state);
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    group.finish();
}

/// `iters` decisions of the bench mix spread over `threads` callers; the
/// time they took, scaled to `iters`.
fn run_threads(runtime: &ActionRuntime, threads: u64, iters: u64) -> Duration {
    let per_thread = iters.div_ceil(threads);
    let start = Instant::now();
    std::thread::scope(|s| {
        for t in 0..threads {
            let runtime = runtime.clone();
            s.spawn(move || {
                for i in 0..per_thread {
                    let verdict = runtime.execute(&event(t * 1_000_003 + i));
                    assert!(
                        !verdict.reason.contains("audit record")
                            && !verdict.reason.contains("malformed"),
                        "{}",
                        verdict.reason
                    );
                }
            });
        }
    });
    start
        .elapsed()
        .mul_f64(iters as f64 / (per_thread * threads) as f64)
}

fn durable_decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("durable_decisions");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1));
    for threads in [1u64, 8, 32] {
        let dir = fresh_dir(&format!("decisions-{threads}"));
        let runtime = ActionRuntime::builder(POLICY)
            .state_dir(&dir)
            .build()
            .unwrap();
        let commits = Arc::new(CommitTally::default());
        let tally = commits.clone();
        runtime
            .ledger()
            .observe_commits(Box::new(move |took, jobs| tally.add(took, jobs)));
        group.bench_function(format!("threads_{threads}"), |b| {
            b.iter_custom(|iters| run_threads(&runtime, threads, iters));
        });
        commits.report(&format!("durable_decisions/threads_{threads}"));
        let _ = std::fs::remove_dir_all(&dir);
    }
    group.finish();
}

/// The ledger's commits during a bench case: how many, how many decisions
/// they carried, how long their transactions took (fsync included).
#[derive(Default)]
struct CommitTally {
    commits: AtomicU64,
    jobs: AtomicU64,
    nanos: AtomicU64,
}

impl CommitTally {
    fn add(&self, took: Duration, jobs: usize) {
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.jobs.fetch_add(jobs as u64, Ordering::Relaxed);
        self.nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
    }

    fn report(&self, case: &str) {
        let commits = self.commits.load(Ordering::Relaxed);
        if commits == 0 {
            return;
        }
        let jobs = self.jobs.load(Ordering::Relaxed);
        let nanos = self.nanos.load(Ordering::Relaxed);
        println!(
            "{case}: {commits} commits, {:.2} decisions a commit, {:.1} us a transaction",
            jobs as f64 / commits as f64,
            nanos as f64 / commits as f64 / 1000.0
        );
    }
}

/// A fresh database on the bench server, its URL; None (the PostgreSQL
/// cases are skipped) without `CAPFENCE_BENCH_POSTGRES`.
fn postgres_database(name: &str) -> Option<String> {
    let Ok(admin) = std::env::var("CAPFENCE_BENCH_POSTGRES") else {
        eprintln!("skipped: PostgreSQL cases need CAPFENCE_BENCH_POSTGRES");
        return None;
    };
    let db = format!("capfence_bench_{name}_{}", std::process::id());
    let mut client = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    let (base, _) = admin.rsplit_once('/').unwrap();
    Some(format!("{base}/{db}"))
}

/// The PostgreSQL server's own floor: a transaction of 1 or 8 plain
/// INSERTs of 300 bytes each (one COMMIT, the server's WAL flush), on the
/// connection a ledger would use.
fn postgres_floor(c: &mut Criterion) {
    let Some(url) = postgres_database("floor") else {
        return;
    };
    let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    client
        .batch_execute("CREATE TABLE t (seq BIGSERIAL PRIMARY KEY, body TEXT NOT NULL)")
        .unwrap();
    let insert = client.prepare("INSERT INTO t (body) VALUES ($1)").unwrap();
    let body = "x".repeat(300);
    let mut group = c.benchmark_group("postgres_floor");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(5));
    for rows in [1u64, 8] {
        group.throughput(Throughput::Elements(rows));
        group.bench_function(format!("inserts_per_transaction_{rows}"), |b| {
            b.iter(|| {
                let mut tx = client.transaction().unwrap();
                for _ in 0..rows {
                    tx.execute(&insert, &[&body]).unwrap();
                }
                tx.commit().unwrap();
            });
        });
    }
    group.finish();
}

fn postgres_decisions(c: &mut Criterion) {
    let mut group = c.benchmark_group("postgres_decisions");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1));
    for threads in [1u64, 8] {
        let Some(url) = postgres_database(&format!("decisions_{threads}")) else {
            return;
        };
        let runtime = ActionRuntime::builder(POLICY)
            .store_url(&url)
            .build()
            .unwrap();
        let commits = Arc::new(CommitTally::default());
        let tally = commits.clone();
        runtime
            .ledger()
            .observe_commits(Box::new(move |took, jobs| tally.add(took, jobs)));
        group.bench_function(format!("threads_{threads}"), |b| {
            b.iter_custom(|iters| run_threads(&runtime, threads, iters));
        });
        commits.report(&format!("postgres_decisions/threads_{threads}"));
    }
    group.finish();
}

const VERIFY_RECORDS: u64 = 1_000_000;

/// COPY's text format: backslash, tab, newline and carriage return escaped;
/// NULL as `\N`.
fn copy_field(out: &mut Vec<u8>, value: Option<&str>) {
    let Some(v) = value else {
        out.extend_from_slice(b"\\N");
        return;
    };
    for b in v.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => out.push(b),
        }
    }
}

/// The SQLite ledger's chain and tickets copied into a fresh PostgreSQL
/// ledger (COPY for the records, the store's own inserts for the tickets).
fn copy_to_postgres(sqlite: &ActionRuntime, url: &str) {
    use std::io::Write as _;
    // Creates the schema.
    capfence::store::postgres::PostgresStore::open_checked(
        url,
        capfence::store::postgres::PostgresOptions::default(),
    )
    .unwrap();
    let mut tickets = sqlite.ledger().tickets().unwrap();
    tickets.reverse();
    let mut client = postgres::Client::connect(url, postgres::NoTls).unwrap();
    for t in &tickets {
        let id: i64 = client
            .query_one(
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
            .unwrap()
            .get(0);
        assert_eq!(u64::try_from(id).unwrap(), t.id);
    }
    let mut writer = client
        .copy_in(
            "COPY capfence.audit (seq, time, actor, capability, environment, risk, payload, \
             decision, rule, reason, approval_id, policy_digest, prev_hash, hash) FROM STDIN",
        )
        .unwrap();
    let mut line = Vec::new();
    for r in sqlite.ledger().records().unwrap() {
        line.clear();
        let seq = r.seq.to_string();
        let fields = [
            Some(seq.as_str()),
            Some(r.time.as_str()),
            r.actor.as_deref(),
            r.capability.as_deref(),
            r.environment.as_deref(),
            r.risk.as_deref(),
            Some(r.payload.as_str()),
            Some(r.decision.as_str()),
            r.rule.as_deref(),
            Some(r.reason.as_str()),
            r.approval_id.as_deref(),
            r.policy_digest.as_deref(),
            Some(r.prev_hash.as_str()),
            Some(r.hash.as_str()),
        ];
        for (i, f) in fields.iter().enumerate() {
            if i > 0 {
                line.push(b'\t');
            }
            copy_field(&mut line, *f);
        }
        line.push(b'\n');
        writer.write_all(&line).unwrap();
    }
    writer.finish().unwrap();
    // The note naming the active policy goes with the chain.
    let active = sqlite.ledger().active_policy().unwrap().unwrap();
    client
        .execute(
            "INSERT INTO capfence.meta (key, value) VALUES ('note:policy.active', $1)",
            &[&format!("{} {}", active.seq, active.digest)],
        )
        .unwrap();
}

fn verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("verify");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    let dir = fresh_dir("verify");
    let runtime = ActionRuntime::builder(POLICY)
        .state_dir(&dir)
        .build()
        .unwrap();
    std::thread::scope(|s| {
        for t in 0..32 {
            let runtime = runtime.clone();
            s.spawn(move || {
                for i in 0..VERIFY_RECORDS / 32 {
                    runtime.execute(&event(t * 1_000_003 + i));
                }
            });
        }
    });
    // The decisions and the policy's activation.
    assert_eq!(runtime.verify().unwrap().0, VERIFY_RECORDS + 1);
    group.throughput(Throughput::Elements(VERIFY_RECORDS + 1));
    group.bench_function("sqlite_1m_records", |b| {
        b.iter(|| runtime.verify().unwrap())
    });
    // Its parts, one thread each: reading the rows alone, and reading with
    // each record re-encoded, hashed and linked.
    let store = capfence::store::sqlite::SqliteStore::open_checked(
        &dir,
        capfence::store::sqlite::SqliteOptions::default(),
    )
    .unwrap();
    group.bench_function("sqlite_1m_read_only", |b| {
        b.iter(|| {
            let mut n = 0u64;
            capfence::store::Store::scan_views(&store, &mut |v| {
                n += v.seq;
                true
            })
            .unwrap();
            n
        })
    });
    group.bench_function("sqlite_1m_read_and_hash", |b| {
        b.iter(|| {
            let mut verifier = capfence::audit::Verifier::default();
            capfence::store::Store::scan_views(&store, &mut |v| verifier.check_view(v).is_ok())
                .unwrap();
            verifier.finish().unwrap()
        })
    });
    if let Some(url) = postgres_database("verify") {
        copy_to_postgres(&runtime, &url);
        let on_postgres = ActionRuntime::builder(POLICY)
            .store_url(&url)
            .build()
            .unwrap();
        assert_eq!(on_postgres.verify().unwrap(), runtime.verify().unwrap());
        group.bench_function("postgres_1m_records", |b| {
            b.iter(|| on_postgres.verify().unwrap())
        });
    }
    group.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

criterion_group!(
    benches,
    sqlite_floor,
    durable_decisions,
    postgres_floor,
    postgres_decisions,
    velocity_decisions,
    verify
);
criterion_main!(benches);
