//! Many writers, one chain: threads and processes sharing a state directory,
//! and a process killed mid-stream.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use super::{TempDir, run_workers, runtime, transfer};

const WORKER_ENV: &str = "CAPFENCE_IT_WORKER_STATE";
const PROCESSES: usize = 4;
const THREADS: usize = 2;
const PER_THREAD: usize = 250;

/// Entry point of the worker processes that `processes_and_threads_never_fork_the_chain`
/// starts (this test binary, re-run with the worker variable set). Without the
/// variable it has nothing to do.
#[test]
fn worker_entry() {
    let Some(state) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    let rt = runtime(std::path::Path::new(&state));
    let threads: Vec<_> = (0..THREADS)
        .map(|t| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                for i in 0..PER_THREAD {
                    let amount = ["120", "700", "20000"][i % 3];
                    let v = rt.execute(&transfer(
                        amount,
                        &format!("vendor-{}-{t}-{i}", std::process::id()),
                    ));
                    assert!(!v.reason.contains("audit record"), "{}", v.reason);
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn processes_and_threads_never_fork_the_chain() {
    let dir = TempDir::new("fork");
    run_workers(
        "concurrency::worker_entry",
        PROCESSES,
        &[(WORKER_ENV, dir.path().to_str().unwrap())],
    );
    let rt = runtime(dir.path());
    let records = rt.ledger().records().unwrap();
    // Every decision, after the one activation of the policy the racing
    // processes all decided with.
    assert_eq!(records.len(), PROCESSES * THREADS * PER_THREAD + 1);
    assert_eq!(
        records
            .iter()
            .filter(|r| r.decision == capfence::RecordKind::Activate)
            .count(),
        1
    );
    for (i, r) in records.iter().enumerate() {
        assert_eq!(r.seq, i as u64 + 1);
    }
    assert_eq!(rt.verify().unwrap().0, 2000 + 1);
    let allowed = records
        .iter()
        .filter(|r| r.decision.as_str() == "allow")
        .count();
    assert_eq!(allowed, PROCESSES * THREADS * PER_THREAD.div_ceil(3));
}

#[test]
fn threads_in_one_process_share_group_commits() {
    let dir = TempDir::new("threads");
    let rt = runtime(dir.path());
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                (0..50)
                    .filter(|i| {
                        rt.execute(&transfer("120", &format!("v-{t}-{i}")))
                            .authorized
                    })
                    .count()
            })
        })
        .collect();
    let authorized: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    assert_eq!(authorized, 400);
    assert_eq!(
        rt.verify().unwrap().0,
        400 + 1,
        "and the policy's activation"
    );
}

#[test]
fn a_process_killed_mid_stream_leaves_a_chain_that_verifies() {
    let dir = TempDir::new("sigkill");
    let mut child = Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(dir.path())
        .args(["decide", "--policy", super::POLICY])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || {
        for i in 0..100_000 {
            let line = format!(
                r#"{{"actor":"a","capability":"payments.transfer","environment":"production","risk":"low","payload":{{"amount":{}}}}}"#,
                100 + i % 900
            );
            if writeln!(stdin, "{line}").is_err() {
                break;
            }
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut seen = 0;
    while seen < 300 {
        let line = lines.next().unwrap().unwrap();
        assert!(line.starts_with(r#"{"authorized":"#), "{line}");
        seen += 1;
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    drop(lines);
    writer.join().unwrap();
    let rt = runtime(dir.path());
    let (count, _) = rt.verify().unwrap();
    assert!(
        count >= 300,
        "every verdict printed has its record ({count})"
    );
    // The chain goes on after the crash.
    assert!(rt.execute(&transfer("120", "v")).authorized);
    assert_eq!(rt.verify().unwrap().0, count + 1);
}

/// `verify` on a live ledger: agents keep deciding (new tickets, window
/// rows) while it runs. Every run must pass: rows written after the chain
/// was read are not "rows written outside CapFence".
#[test]
fn verify_while_agents_decide_never_reports_a_false_fault() {
    let dir = TempDir::new("live-verify");
    let policy = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../policies/treasury_velocity.yaml"
    );
    let rt = capfence::ActionRuntime::builder(policy)
        .state_dir(dir.path())
        .build()
        .unwrap();
    verify_while_deciding(&rt, 15);
}

/// Runs `verify` `times` while a thread decides allowed and held calls on
/// `rt` (a runtime on policies/treasury_velocity.yaml); every run must pass.
pub fn verify_while_deciding(rt: &capfence::ActionRuntime, times: usize) {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let running = std::sync::Arc::new(AtomicBool::new(true));
    let done = std::sync::Arc::new(AtomicU64::new(0));
    let writer = {
        let rt = rt.clone();
        let running = std::sync::Arc::clone(&running);
        let done = std::sync::Arc::clone(&done);
        std::thread::spawn(move || {
            let mut i = 0u64;
            while running.load(Ordering::SeqCst) {
                i += 1;
                done.store(i, Ordering::SeqCst);
                // An allowed call (a window row) and a held one (a new ticket).
                rt.execute(&transfer("100", &format!("vendor-{i}")));
                rt.execute(&transfer("700", &format!("vendor-{i}")));
                // Paced, so the chain (and each verify) stays short.
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            i
        })
    };
    let mut faults = Vec::new();
    // At least `times` runs, and on until the writer has made 30 pairs of
    // decisions alongside them (a loaded machine decides slowly).
    let mut runs = 0;
    while runs < times || done.load(Ordering::SeqCst) <= 30 {
        runs += 1;
        if let Err(e) = rt.verify() {
            faults.push(e.to_string());
        }
    }
    running.store(false, Ordering::SeqCst);
    let pairs = writer.join().unwrap();
    assert!(pairs > 10, "the writer barely ran: {pairs}");
    assert!(
        faults.is_empty(),
        "{} false faults, first: {}",
        faults.len(),
        faults[0]
    );
    rt.verify().unwrap();
}
