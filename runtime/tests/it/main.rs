//! Integration tests of the capfence runtime (one test binary).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod approvals;
mod audit;
mod checkpoint;
mod cli;
mod concurrency;
mod corners;
mod crash;
mod detail;
mod faults;
mod follow;
mod forgery;
mod http_api;
mod mcp_http;
mod new_payee;
mod outcome;
mod policy;
mod postgres;
mod pytest;
mod reconcile;
mod serve;
mod signed;
mod tamper;
mod telemetry;
mod vectors;
mod velocity;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::time::Duration;

use capfence::clock::Clock;
use capfence::{ActionEvent, ActionRuntime, Decimal, Risk, payload};

pub const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policies/fintech_policy.yaml"
);

/// Serves `runtime` with `options` (`capfence serve` in this process) on a
/// thread of its own; the address it listens on. An agent on `line` (an
/// agents-file line) may call it; no console options.
pub fn serve_in_process(
    runtime: &ActionRuntime,
    line: &str,
    mcp: Option<capfence::serve::mcp_http::McpOptions>,
) -> String {
    let options = capfence::serve::ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        insecure_http: false,
        viewers: Vec::new(),
        notify: None,
        checkpoints: None,
        agents: capfence::serve::agents::Agents::parse(line, "test").unwrap(),
        mcp,
    };
    let (ready, bound) = std::sync::mpsc::channel();
    let served = runtime.clone();
    std::thread::spawn(move || {
        capfence::serve::serve(served, &options, |addr, _| {
            let _ = ready.send(addr);
        })
        .unwrap();
    });
    bound.recv().unwrap().to_string()
}

/// A fresh, empty directory under the system temp dir, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("capfence-it-{}-{name}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A clock the test moves by hand.
#[derive(Default)]
pub struct ManualClock(pub AtomicI64);

impl ManualClock {
    pub fn advance(&self, by: Duration) {
        self.0
            .fetch_add(i64::try_from(by.as_micros()).unwrap(), Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> i64 {
        1_795_000_000_000_000 + self.0.load(Ordering::SeqCst)
    }
}

pub fn runtime(dir: &Path) -> ActionRuntime {
    ActionRuntime::builder(POLICY)
        .state_dir(dir)
        .build()
        .unwrap()
}

pub fn runtime_with_clock(dir: &Path, clock: Arc<ManualClock>) -> ActionRuntime {
    ActionRuntime::builder(POLICY)
        .state_dir(dir)
        .clock(clock)
        .build()
        .unwrap()
}

pub fn transfer(amount: &str, destination: &str) -> ActionEvent {
    ActionEvent::create(
        "treasury-agent",
        "transfer",
        "payments",
        "production",
        Risk::High,
        payload! {"amount" => amount.parse::<Decimal>().unwrap(), "destination" => destination},
    )
}

/// Copies a state directory's files (a backup, or its restore).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// Direct SQL access to a state directory's ledger.db, for tampering.
pub fn sql(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join("ledger.db")).unwrap()
}

/// Writes `r` into the ledger's audit table under its seq, as a writer with
/// SQL access would (replacing a record already there).
pub fn insert_record(db: &rusqlite::Connection, r: &capfence::AuditRecord) {
    db.execute(
        "INSERT OR REPLACE INTO audit (seq, time, actor, capability, environment, risk, payload, \
         decision, rule, reason, approval_id, policy_digest, prev_hash, hash) VALUES \
         (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
        rusqlite::params![
            i64::try_from(r.seq).unwrap(),
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
        ],
    )
    .unwrap();
}

/// Runs `count` copies of this test binary's test `entry` (a worker whose
/// body runs only when its environment variable is set), with `env`, all at
/// once; each one's stdout. Panics, showing its output, if one fails.
pub fn run_workers(entry: &str, count: usize, env: &[(&str, &str)]) -> Vec<String> {
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..count)
        .map(|_| {
            std::process::Command::new(&exe)
                .args(["--exact", entry, "--nocapture", "--test-threads", "1"])
                .envs(env.iter().copied())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    children
        .into_iter()
        .map(|child| {
            let out = child.wait_with_output().unwrap();
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            assert!(
                out.status.success(),
                "worker {entry} failed:\n{text}{}",
                String::from_utf8_lossy(&out.stderr)
            );
            text
        })
        .collect()
}

/// The number a worker printed as `name=N`.
pub fn reported(output: &str, name: &str) -> usize {
    output
        .split(&format!("{name}="))
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no {name}= in worker output:\n{output}"))
}
