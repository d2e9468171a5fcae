//! The PostgreSQL ledger on a real server: many processes and threads on
//! one chain, one approval raced by every host, a velocity cap shared by
//! hosts, and the faults (server restart, connection cut, lock timeout).
//!
//! `CAPFENCE_TEST_POSTGRES` names a server to create test databases on
//! (`postgres://postgres@127.0.0.1:PORT/postgres`; `.ci/run` starts one with
//! tests/postgres/server.sh). Without it each test says it was skipped,
//! except under CI (`CI` set), where that is a failure.

use std::io::Write as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use capfence::{ActionRuntime, DecisionKind};

use super::{POLICY, TempDir, reported, run_workers, transfer};

const VELOCITY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policies/treasury_velocity.yaml"
);
const SERVER_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/postgres/server.sh");

const WORKER: &str = "CAPFENCE_IT_PG_WORKER";
const WORKER_URL: &str = "CAPFENCE_IT_PG_URL";

/// `url` with its database replaced by `db`.
fn with_database(url: &str, db: &str) -> String {
    let scheme_end = url.find("://").map_or(0, |i| i + 3);
    let (base, query) = match url.find('?') {
        Some(q) => url.split_at(q),
        None => (url, ""),
    };
    let path_start = base[scheme_end..]
        .find('/')
        .map_or(base.len(), |i| scheme_end + i);
    format!("{}/{db}{query}", &base[..path_start])
}

/// The admin URL, or None (skipped) when no server is configured.
fn server() -> Option<String> {
    match std::env::var("CAPFENCE_TEST_POSTGRES") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run the PostgreSQL tests: set CAPFENCE_TEST_POSTGRES \
                 (tests/postgres/server.sh start DIR PORT prints a URL)"
            );
            eprintln!(
                "skipped: the PostgreSQL tests need CAPFENCE_TEST_POSTGRES \
                 (tests/postgres/server.sh start DIR PORT prints one)"
            );
            None
        }
    }
}

/// A fresh database on the test server; its URL.
fn database(admin: &str, name: &str) -> String {
    let db = format!("capfence_it_{name}_{}", std::process::id());
    let mut client = postgres::Client::connect(admin, postgres::NoTls).unwrap();
    client
        .batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"))
        .unwrap();
    client
        .batch_execute(&format!("CREATE DATABASE {db}"))
        .unwrap();
    with_database(admin, &db)
}

fn runtime_on(url: &str, policy: &str) -> ActionRuntime {
    ActionRuntime::builder(policy)
        .store_url(url)
        .build()
        .unwrap()
}

/// Worker processes: what they do is named by the worker variable.
#[test]
fn postgres_worker_entry() {
    let (Some(mode), Some(url)) = (std::env::var_os(WORKER), std::env::var_os(WORKER_URL)) else {
        return;
    };
    let url = url.to_str().unwrap().to_owned();
    let policy = if mode == "velocity" { VELOCITY } else { POLICY };
    let rt = runtime_on(&url, policy);
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let rt = rt.clone();
            let mode = mode.clone();
            std::thread::spawn(move || {
                let pid = std::process::id();
                (0..25)
                    .filter(|i| {
                        let event = match mode.to_str() {
                            Some("chain") => transfer(
                                ["120", "700", "20000"][i % 3],
                                &format!("vendor-{pid}-{t}-{i}"),
                            ),
                            Some("race") => transfer("700", "vendor-corp-123"),
                            _ => transfer("100", "attacker-3"),
                        };
                        let v = rt.execute(&event);
                        assert!(!v.reason.contains("storage"), "{}", v.reason);
                        v.authorized
                    })
                    .count()
            })
        })
        .collect();
    let authorized: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    writeln!(std::io::stdout().lock(), "authorized={authorized}").unwrap();
}

fn workers(mode: &str, url: &str) -> usize {
    run_workers(
        "postgres::postgres_worker_entry",
        4,
        &[(WORKER, mode), (WORKER_URL, url)],
    )
    .iter()
    .map(|out| reported(out, "authorized"))
    .sum()
}

#[test]
fn four_processes_of_two_threads_share_one_contiguous_chain() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "chain");
    let authorized = workers("chain", &url);
    let rt = runtime_on(&url, POLICY);
    let records = rt.ledger().records().unwrap();
    // The policy's activation, then 4 processes x 2 threads x 25 calls,
    // each recorded once, seq 2..=201.
    assert_eq!(records.len(), 200 + 1);
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
    }
    let allowed = records
        .iter()
        .filter(|r| r.decision.as_str() == "allow")
        .count();
    assert_eq!(allowed, authorized);
    assert_eq!(authorized, 4 * 2 * 9); // i % 3 == 0 for 9 of 0..25
    assert_eq!(rt.verify().unwrap().0, 200 + 1);
    // The operator CLI reads the same chain through --store.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_capfence"))
        .args(["--store", &url, "verify"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("ok: 201 records verified"),
        "{out:?}"
    );
}

#[test]
fn one_approved_ticket_raced_by_every_process_authorizes_once() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "race");
    let rt = runtime_on(&url, POLICY);
    let held = rt.execute(&transfer("700", "vendor-corp-123"));
    assert_eq!(held.decision, DecisionKind::RequireApproval);
    let ticket = held.approval_id.unwrap();
    rt.approve(&ticket, "cfo").unwrap();
    // 8 callers x 25 tries of the approved call.
    assert_eq!(workers("race", &url), 1);
    rt.verify().unwrap();
}

#[test]
fn a_velocity_cap_holds_across_processes() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "velocity");
    // 8 callers x 25 calls of 100 against a 1,000 cap: exactly 10.
    assert_eq!(workers("velocity", &url), 10);
    let rt = runtime_on(&url, VELOCITY);
    let records = rt.ledger().records().unwrap();
    assert_eq!(records.len(), 200 + 1, "and the policy's activation");
    rt.verify().unwrap();
}

#[test]
fn verify_on_a_live_shared_ledger_never_reports_a_false_fault() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "live_verify");
    super::concurrency::verify_while_deciding(&runtime_on(&url, VELOCITY), 15);
}

#[test]
fn a_forged_ticket_row_on_the_shared_server_authorizes_nothing() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "forged");
    let rt = runtime_on(&url, POLICY);
    let held = rt.execute(&transfer("9000", "vendor-corp-123"));
    assert_eq!(held.decision, DecisionKind::RequireApproval);
    // Anyone with SQL access marks the ticket approved, with no record.
    let mut sql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let n = sql
        .execute(
            "UPDATE capfence.tickets SET status = 'approved', decided_by = 'cfo'",
            &[],
        )
        .unwrap();
    assert_eq!(n, 1);
    let again = rt.execute(&transfer("9000", "vendor-corp-123"));
    assert!(!again.authorized, "{again:?}");
    // A second CapFence schema user with foreign tables is refused.
    sql.batch_execute("CREATE TABLE capfence.other (x int)")
        .unwrap();
    let fresh = runtime_on(&url, POLICY);
    let v = fresh.execute(&transfer("1", "vendor-corp-123"));
    assert!(
        !v.authorized && v.reason.contains("did not create"),
        "{v:?}"
    );
}

#[test]
fn a_cut_connection_is_replaced_before_anything_is_sent() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "cut");
    let rt = runtime_on(&url, POLICY);
    assert!(rt.execute(&transfer("120", "vendor-corp-123")).authorized);
    let db = url.rsplit('/').next().unwrap().to_owned();
    let mut sql = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    let cut = sql
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'capfence'",
            &[&db],
        )
        .unwrap();
    assert_eq!(cut.len(), 1);
    // The dead connection is found at BEGIN, nothing was sent: one reconnect.
    assert!(rt.execute(&transfer("120", "vendor-corp-123")).authorized);
    assert_eq!(rt.verify().unwrap().0, 2 + 1, "and the policy's activation");
}

#[test]
fn a_writer_holding_the_turn_past_the_timeout_denies() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "timeout");
    let rt = ActionRuntime::builder(POLICY)
        .store_url(&url)
        .lock_timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    assert!(rt.execute(&transfer("120", "vendor-corp-123")).authorized);
    let mut sql = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    let mut hold = sql.transaction().unwrap();
    hold.execute(
        "SELECT 1 FROM capfence.meta WHERE key = 'format' FOR UPDATE",
        &[],
    )
    .unwrap();
    let v = rt.execute(&transfer("120", "vendor-corp-123"));
    assert!(!v.authorized, "{v:?}");
    assert!(v.reason.contains("locked"), "{}", v.reason);
    hold.rollback().unwrap();
    assert!(rt.execute(&transfer("120", "vendor-corp-123")).authorized);
    // The denied call was never recorded; the chain has the two allowed
    // after the policy's activation.
    assert_eq!(rt.verify().unwrap().0, 2 + 1);
}

fn server_sh(args: &[&str]) -> String {
    let out = std::process::Command::new("bash")
        .arg(SERVER_SH)
        .args(args)
        .output()
        .unwrap();
    assert!(out.status.success(), "server.sh {args:?}: {out:?}");
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The server stops and starts again while a caller keeps deciding: every
/// call while it is down is denied, every authorized call is on the chain,
/// and deciding resumes when it is back.
#[test]
fn a_server_restart_mid_stream_denies_while_down_and_loses_nothing() {
    if server().is_none() {
        return;
    }
    // A server of its own: restarting the shared one would disturb the
    // other tests.
    let dir = TempDir::new("pg-restart");
    let data = dir.path().join("data");
    let port = free_port().to_string();
    let admin = server_sh(&["start", data.to_str().unwrap(), &port]);
    let stop = Stopper(data.clone());
    let url = database(&admin, "restart");
    let rt = runtime_on(&url, POLICY);
    let running = Arc::new(AtomicBool::new(true));
    let caller = {
        let rt = rt.clone();
        let running = Arc::clone(&running);
        std::thread::spawn(move || {
            let (mut authorized, mut denied) = (Vec::new(), 0usize);
            let mut i = 0u64;
            while running.load(Ordering::SeqCst) {
                i += 1;
                let destination = format!("vendor-{i}");
                let v = rt.execute(&transfer("120", &destination));
                if v.authorized {
                    authorized.push(destination);
                } else {
                    assert!(v.reason.contains("storage"), "{}", v.reason);
                    denied += 1;
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            (authorized, denied)
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    server_sh(&["stop", data.to_str().unwrap()]);
    // Down: a call now is denied, naming the storage.
    let down = rt.execute(&transfer("120", "vendor-down"));
    assert!(
        !down.authorized && down.reason.contains("storage"),
        "{down:?}"
    );
    std::thread::sleep(Duration::from_millis(300));
    server_sh(&["start", data.to_str().unwrap(), &port]);
    std::thread::sleep(Duration::from_millis(500));
    running.store(false, Ordering::SeqCst);
    let (authorized, denied) = caller.join().unwrap();
    assert!(denied > 0, "the caller never saw the server down");
    // Back up: deciding resumes on a new connection.
    assert!(rt.execute(&transfer("120", "vendor-after")).authorized);
    let records = rt.ledger().records().unwrap();
    // After the policy's activation, only allowed calls.
    assert_eq!(records[0].decision, capfence::RecordKind::Activate);
    let records = &records[1..];
    assert!(records.iter().all(|r| r.decision.as_str() == "allow"));
    // Every authorized call is on the chain, in order.
    let on_chain: Vec<String> = records
        .iter()
        .map(|r| {
            let payload: serde_json::Value = serde_json::from_str(&r.payload).unwrap();
            payload["destination"].as_str().unwrap().to_owned()
        })
        .collect();
    let mut rest = on_chain.iter();
    for d in authorized
        .iter()
        .chain(std::iter::once(&"vendor-after".to_owned()))
    {
        assert!(rest.any(|r| r == d), "{d} is missing from the chain");
    }
    // At most the one call in flight when the server stopped is recorded
    // without its caller having been told (its commit answer was lost while
    // the server was down): fail closed, never the reverse.
    assert!(
        on_chain.len() <= authorized.len() + 2,
        "{} records for {} authorized calls",
        on_chain.len(),
        authorized.len() + 1
    );
    assert_eq!(
        rt.verify().unwrap().0,
        on_chain.len() as u64 + 1,
        "and the activation"
    );
    drop(stop);
}

/// Stops a test's own server when the test ends, however it ends.
struct Stopper(std::path::PathBuf);

impl Drop for Stopper {
    fn drop(&mut self) {
        let _ = std::process::Command::new("bash")
            .arg(SERVER_SH)
            .args(["stop", &self.0.to_string_lossy()])
            .output();
    }
}

/// `capfence decide`, `approvals approve` and `verify` on the shared
/// ledger, by `--store` and by `CAPFENCE_STORE`.
#[test]
fn the_cli_decides_and_approves_on_the_shared_ledger() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "cli");
    let cwd = TempDir::new("pg-cli");
    let capfence = |args: &[&str], stdin: &str, by_env: bool| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_capfence"));
        cmd.current_dir(cwd.path());
        if by_env {
            cmd.env("CAPFENCE_STORE", &url);
        } else {
            cmd.args(["--store", &url]);
        }
        let mut child = cmd
            .args(args)
            .env_remove("CAPFENCE_STATE")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let event = r#"{"actor":"treasury-agent","resource":"payments","action":"transfer","environment":"production","risk":"low","payload":{"amount":900,"destination":"vendor-corp-123"}}"#;
    let (code, held) = capfence(&["decide", "--policy", POLICY], event, false);
    assert_eq!(code, Some(0));
    assert!(held.contains(r#""approval_id":"T-1""#), "{held}");
    let (code, _) = capfence(&["approvals", "approve", "T-1", "--by", "cfo"], "", true);
    assert_eq!(code, Some(0));
    let (_, allowed) = capfence(&["decide", "--policy", POLICY], event, true);
    assert!(allowed.contains(r#""authorized":true"#), "{allowed}");
    let (code, verified) = capfence(&["verify"], "", false);
    assert_eq!(code, Some(0), "{verified}");
    // The policy's activation, the held call, the approval, the allowed call.
    assert!(verified.starts_with("ok: 4 records verified"), "{verified}");
    // Nothing was written to a local state directory.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
}

/// A host that stalls inside a transaction while it holds the turn (here:
/// its work sleeps) is cut off by the server after four lock timeouts; the
/// other hosts are denied meanwhile, not hung, and go on afterwards.
#[test]
fn a_host_stalled_while_holding_the_turn_is_cut_off() {
    use capfence::store::postgres::{PostgresOptions, PostgresStore};
    let Some(admin) = server() else { return };
    let url = database(&admin, "stalled");
    let timeout = Duration::from_millis(250);
    let other = ActionRuntime::builder(POLICY)
        .store_url(&url)
        .lock_timeout(timeout)
        .build()
        .unwrap();
    assert!(
        other
            .execute(&transfer("120", "vendor-corp-123"))
            .authorized
    );
    let stalled = PostgresStore::new(
        &url,
        PostgresOptions {
            lock_timeout: timeout,
            ..PostgresOptions::default()
        },
    )
    .unwrap();
    let (entered, inside) = std::sync::mpsc::channel();
    let host = std::thread::spawn(move || {
        stalled.hold_turn(&mut || {
            entered.send(()).unwrap();
            std::thread::sleep(Duration::from_secs(3));
        })
    });
    inside.recv().unwrap();
    let started = std::time::Instant::now();
    let waiting = other.execute(&transfer("120", "vendor-corp-123"));
    assert!(
        !waiting.authorized && waiting.reason.contains("locked"),
        "{waiting:?}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    // After 4 x 250 ms idle inside its transaction, the stalled session is
    // ended by the server and its turn released.
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        other
            .execute(&transfer("120", "vendor-corp-123"))
            .authorized
    );
    let stalled_result = host.join().unwrap();
    assert!(stalled_result.is_err(), "{stalled_result:?}");
    assert_eq!(
        other.verify().unwrap().0,
        2 + 1,
        "and the policy's activation"
    );
}

/// TLS: a server that offers it is used with its certificate and host
/// name verified; a certificate that does not verify fails the connection
/// (deny), whatever `sslmode` says short of `disable` — never a silent
/// fallback to plain text.
#[test]
fn tls_is_verified_and_never_downgraded() {
    if server().is_none() {
        return;
    }
    let dir = TempDir::new("pg-tls");
    let data = dir.path().join("data");
    let port = free_port().to_string();
    let admin = server_sh(&["start", data.to_str().unwrap(), &port, "tls"]);
    let _stop = Stopper(data.clone());
    let ca = data.join("ca.pem");
    let ca = ca.to_str().unwrap();
    database(&admin, "tls");
    let db = format!("capfence_it_tls_{}", std::process::id());
    let url = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/{db}?{query}");

    let verified = runtime_on(
        &url("localhost", &format!("sslmode=require&sslrootcert={ca}")),
        POLICY,
    );
    assert!(
        verified
            .execute(&transfer("120", "vendor-corp-123"))
            .authorized
    );
    let ip = runtime_on(
        &url(
            "127.0.0.1",
            &format!("sslmode=verify-full&sslrootcert={ca}"),
        ),
        POLICY,
    );
    assert!(ip.execute(&transfer("120", "vendor-corp-123")).authorized);
    let mut sql = postgres::Client::connect(&admin, postgres::NoTls).unwrap();
    let encrypted: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) \
             WHERE application_name = 'capfence' AND ssl",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(encrypted, 2);

    for (what, rt_url) in [
        ("no CA given", url("localhost", "sslmode=require")),
        ("sslmode left to its default", url("localhost", "")),
        (
            "a host name the certificate does not name",
            url(
                "db.example",
                &format!("hostaddr=127.0.0.1&sslrootcert={ca}"),
            ),
        ),
    ] {
        let v = runtime_on(&rt_url, POLICY).execute(&transfer("120", "vendor-corp-123"));
        assert!(!v.authorized, "{what}: {v:?}");
        assert!(
            v.reason.contains("certificate verify failed"),
            "{what}: {}",
            v.reason
        );
    }
    let missing = ActionRuntime::builder(POLICY)
        .store_url(url("localhost", "sslrootcert=/nonexistent/ca.pem"))
        .build();
    assert!(
        matches!(&missing, Err(e) if e.to_string().contains("sslrootcert /nonexistent/ca.pem")),
        "{missing:?}"
    );
    let not_pem = dir.path().join("not-a-cert.pem");
    std::fs::write(&not_pem, "just text, no certificate\n").unwrap();
    let refused = ActionRuntime::builder(POLICY)
        .store_url(url(
            "localhost",
            &format!("sslrootcert={}", not_pem.display()),
        ))
        .build();
    assert!(
        matches!(&refused, Err(e) if e.to_string().contains("not a PEM certificate")),
        "{refused:?}"
    );
    assert_eq!(
        verified.verify().unwrap().0,
        2 + 1,
        "and the policy's activation"
    );
}

/// An on-path relay between the store and the server, on loopback. It
/// answers the client's TLS request with "no" itself (the server never sees
/// it), and, when `rewrite_commit`, turns each simple-query `COMMIT` into
/// `ROLLBACK`. It reports whether any client got past the TLS request (sent
/// its startup message, after which every statement is readable) and how
/// many commits it rewrote.
struct Relay {
    port: u16,
    startups: Arc<std::sync::atomic::AtomicUsize>,
    rewritten: Arc<std::sync::atomic::AtomicUsize>,
}

fn relay(upstream: String, rewrite_commit: bool) -> Relay {
    use std::io::Read as _;
    use std::sync::atomic::AtomicUsize;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let startups = Arc::new(AtomicUsize::new(0));
    let rewritten = Arc::new(AtomicUsize::new(0));
    let (s, r) = (Arc::clone(&startups), Arc::clone(&rewritten));
    std::thread::spawn(move || {
        for client in listener.incoming() {
            let Ok(mut client) = client else { return };
            let (upstream, startups, rewritten) =
                (upstream.clone(), Arc::clone(&s), Arc::clone(&r));
            std::thread::spawn(move || -> std::io::Result<()> {
                // Startup phase: length-prefixed messages without a type byte.
                let startup = loop {
                    let mut len = [0u8; 4];
                    client.read_exact(&mut len)?;
                    let mut body = vec![0u8; u32::from_be_bytes(len) as usize - 4];
                    client.read_exact(&mut body)?;
                    let code = u32::from_be_bytes(body[..4].try_into().unwrap());
                    if code == 80_877_103 || code == 80_877_104 {
                        client.write_all(b"N")?; // SSL or GSS encryption: refused
                        continue;
                    }
                    break [len.to_vec(), body].concat();
                };
                startups.fetch_add(1, Ordering::SeqCst);
                let mut server = std::net::TcpStream::connect(&upstream)?;
                server.write_all(&startup)?;
                let (mut from_server, mut to_client) = (server.try_clone()?, client.try_clone()?);
                std::thread::spawn(move || std::io::copy(&mut from_server, &mut to_client));
                loop {
                    let mut head = [0u8; 5];
                    client.read_exact(&mut head)?;
                    let len = u32::from_be_bytes(head[1..].try_into().unwrap()) as usize;
                    let mut body = vec![0u8; len - 4];
                    client.read_exact(&mut body)?;
                    if rewrite_commit && head[0] == b'Q' && body == b"COMMIT\0" {
                        body = b"ROLLBACK\0".to_vec();
                        head[1..]
                            .copy_from_slice(&u32::try_from(body.len() + 4).unwrap().to_be_bytes());
                        rewritten.fetch_add(1, Ordering::SeqCst);
                    }
                    server.write_all(&head)?;
                    server.write_all(&body)?;
                }
            });
        }
    });
    Relay {
        port,
        startups,
        rewritten,
    }
}

/// `host:port` of the server a URL names.
fn host_port(url: &str) -> String {
    let after = &url[url
        .find('@')
        .map_or(url.find("://").unwrap() + 3, |i| i + 1)..];
    after[..after.find('/').unwrap_or(after.len())].to_owned()
}

/// A server on another host is reached with TLS or not at all: a relay that
/// answers "no TLS" gets no startup message, so no statement, and every
/// decision is denied. `sslmode=prefer` (or `disable`) in the URL opts out.
#[test]
fn a_relay_that_refuses_tls_gets_nothing_from_a_remote_url() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "notls");
    let db = url.rsplit('/').next().unwrap().to_owned();
    let relay = relay(host_port(&admin), false);
    // `db.example` is another host to the store; the bytes go to the relay.
    let remote = |query: &str| {
        format!(
            "postgres://postgres@db.example:{}/{db}?hostaddr=127.0.0.1{query}",
            relay.port
        )
    };
    let denied = runtime_on(&remote(""), POLICY).execute(&transfer("120", "vendor-corp-123"));
    assert!(!denied.authorized, "{denied:?}");
    assert!(
        denied.reason.to_lowercase().contains("tls") || denied.reason.contains("SSL"),
        "{}",
        denied.reason
    );
    assert_eq!(
        relay.startups.load(Ordering::SeqCst),
        0,
        "the relay read a startup message"
    );
    // The URL's own choice is honoured: in plain text, the relay reads all.
    let plain = runtime_on(&remote("&sslmode=prefer"), POLICY);
    assert!(
        plain
            .execute(&transfer("120", "vendor-corp-123"))
            .authorized
    );
    assert!(relay.startups.load(Ordering::SeqCst) > 0);
}

/// COMMIT's answer is checked: a relay that rewrites COMMIT into ROLLBACK
/// gets every decision of that transaction denied, and nothing is on the
/// chain that was reported authorized.
#[test]
fn a_commit_rewritten_into_rollback_is_a_failed_commit() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "rollback");
    let db = url.rsplit('/').next().unwrap().to_owned();
    // The schema first, directly.
    let direct = runtime_on(&url, POLICY);
    assert!(
        direct
            .execute(&transfer("120", "vendor-corp-123"))
            .authorized
    );
    let relay = relay(host_port(&admin), true);
    let through = runtime_on(
        &format!(
            "postgres://postgres@127.0.0.1:{}/{db}?sslmode=disable",
            relay.port
        ),
        POLICY,
    );
    for _ in 0..2 {
        let v = through.execute(&transfer("120", "vendor-corp-123"));
        assert!(!v.authorized, "{v:?}");
        assert!(v.reason.contains("aborted"), "{}", v.reason);
    }
    assert!(relay.rewritten.load(Ordering::SeqCst) >= 2);
    // Only the direct decision is on the chain (after the policy's
    // activation), and it verifies.
    assert_eq!(direct.verify().unwrap().0, 1 + 1);
}

/// The system clock moved by `offset` µs.
struct Offset(i64);

impl capfence::clock::Clock for Offset {
    fn now_micros(&self) -> i64 {
        capfence::clock::SystemClock.now_micros() + self.0
    }
}

/// On PostgreSQL the server's clock stamps records and window rows, and a
/// host whose clock is 25 h ahead or behind it is refused, naming the skew;
/// the cap holds for the host with the right clock.
#[test]
fn a_host_with_a_skewed_clock_is_refused_and_the_cap_holds() {
    use capfence::clock::Clock as _;
    let Some(admin) = server() else { return };
    let url = database(&admin, "skew");
    let right = runtime_on(&url, VELOCITY);
    let skewed = |offset: i64| {
        ActionRuntime::builder(VELOCITY)
            .store_url(&url)
            .clock(Arc::new(Offset(offset)))
            .build()
            .unwrap()
    };
    let hours = |h: i64| h * 3600 * 1_000_000;
    assert!(right.execute(&transfer("400", "attacker-1")).authorized);
    assert!(right.execute(&transfer("400", "attacker-1")).authorized);
    for offset in [hours(25), hours(-25)] {
        let v = skewed(offset).execute(&transfer("0.01", "attacker-1"));
        assert!(!v.authorized, "{v:?}");
        assert!(v.reason.contains("clock"), "{}", v.reason);
        assert!(
            v.reason
                .contains(if offset > 0 { "ahead of" } else { "behind" }),
            "{}",
            v.reason
        );
    }
    // Within the tolerance (2 s off, default 5 s): decided, on the server's time.
    let close = skewed(2_000_000).execute(&transfer("0.01", "attacker-1"));
    assert!(close.authorized, "{close:?}");
    for _ in 0..2 {
        let v = right.execute(&transfer("400", "attacker-1"));
        assert_eq!(v.decision, DecisionKind::RequireApproval, "{v:?}");
    }
    // Records carry the server's time: within a few seconds of this host's.
    let records = right.ledger().records().unwrap();
    let now = capfence::clock::SystemClock.now_micros();
    for r in &records {
        let at = capfence_compiler_time(&r.time);
        assert!((now - at).abs() < 60_000_000, "{}", r.time);
    }
    right.verify().unwrap();
    // The tolerance can be set in the URL.
    let strict = ActionRuntime::builder(VELOCITY)
        .store_url(format!("{url}?clock_tolerance_ms=1000"))
        .clock(Arc::new(Offset(2_000_000)))
        .build()
        .unwrap();
    assert!(!strict.execute(&transfer("1", "vendor-9")).authorized);
}

fn capfence_compiler_time(text: &str) -> i64 {
    capfence_compiler::time::parse_rfc3339(text).unwrap()
}

/// `audit log --follow` on the shared ledger: woken by each commit's
/// NOTIFY, it sees every record once, in order, across a restart.
#[test]
fn a_postgres_follower_sees_every_record_once_across_a_restart() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "follow");
    let rt = runtime_on(&url, POLICY);
    super::follow::a_follower_sees_every_record_once(&["--store", &url], rt);
}

/// On PostgreSQL too, a failed call's outcome releases its room in the
/// window, and an executed one counts what it sent; the rows verify.
#[test]
fn outcomes_recount_windows_on_postgres() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "outcomes");
    let rt = runtime_on(&url, VELOCITY);
    let first = rt.execute(&transfer("450", "acct-pg"));
    assert!(first.authorized);
    assert!(rt.execute(&transfer("450", "acct-pg")).authorized);
    assert!(!rt.execute(&transfer("450", "acct-pg")).authorized);
    rt.record_outcome(
        first.seq.unwrap(),
        &capfence::Outcome::Failed {
            error: "rejected by the bank".to_owned(),
        },
    )
    .unwrap();
    let third = rt.execute(&transfer("450", "acct-pg"));
    assert!(third.authorized, "{}", third.reason);
    rt.record_outcome(
        third.seq.unwrap(),
        &capfence::Outcome::Executed {
            reference: Some("PG-1".to_owned()),
            amount: Some(capfence::Decimal::new(50, 0)),
        },
    )
    .unwrap();
    assert!(rt.execute(&transfer("500", "acct-pg")).authorized, "1,000");
    assert!(!rt.execute(&transfer("0.01", "acct-pg")).authorized);
    rt.verify().unwrap();
    let windows = capfence::Policy::load(VELOCITY).unwrap().windows();
    rt.ledger()
        .verify_windows(&windows, &rt.policy_facts().digest)
        .unwrap();
}

/// `new:` on PostgreSQL: the first payment to an account is held, the
/// approved retry makes it known, the next needs nobody; the rows verify.
#[test]
fn a_new_account_is_held_once_on_postgres() {
    let Some(admin) = server() else { return };
    let url = database(&admin, "newpayee");
    let policy = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/new_payee.yaml");
    let rt = runtime_on(&url, policy);
    let first = rt.execute(&transfer("300", "acct-pg-new"));
    assert_eq!(first.rule.as_deref(), Some("new-payee"));
    rt.approve(first.approval_id.as_deref().unwrap(), "ops")
        .unwrap();
    assert!(rt.execute(&transfer("300", "acct-pg-new")).authorized);
    assert!(rt.execute(&transfer("200", "acct-pg-new")).authorized);
    assert!(!rt.execute(&transfer("200", "acct-pg-other")).authorized);
    rt.verify().unwrap();
    let windows = capfence::Policy::load(policy).unwrap().windows();
    rt.ledger()
        .verify_windows(&windows, &rt.policy_facts().digest)
        .unwrap();
}
