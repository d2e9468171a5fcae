//! The cost of `capfence mcp-proxy` per `tools/call`: the round trip from the
//! client's request line to the response line, through the proxy (decision
//! and durable SQLite audit record, fsync'd, then the server) against the same
//! server called directly. Prints p50 and p99 of every round trip measured.
//! Run: `cargo bench --bench mcp`.
//!
//! The server is this executable started again with `--capfence-echo`:
//! a minimal MCP stdio server that answers every request at once, so the
//! difference is the proxy's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use capfence::mcp::{Proxy, ProxyOptions};
use capfence::{ActionRuntime, Policy, Risk};
use criterion::Criterion;

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/mcp/policy.yaml");
const CALL: &str = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"transfer_funds","arguments":{"amount":120.00,"destination":"vendor-corp-123"}}}"#;

/// The echo server: one result line per request line.
fn echo() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(message) = serde_json::from_str::<serde_json::Value>(&line) else {
            continue;
        };
        let Some(id) = message.get("id") else {
            continue;
        };
        let reply = serde_json::json!({
            "jsonrpc": "2.0", "id": id,
            "result": {"content": [{"type": "text", "text": "ok"}], "isError": false},
        });
        writeln!(out, "{reply}").unwrap();
        out.flush().unwrap();
    }
}

fn server() -> Vec<std::ffi::OsString> {
    vec![
        std::env::current_exe().unwrap().into_os_string(),
        ECHO_FLAG.into(),
    ]
}

const ECHO_FLAG: &str = "--capfence-echo";

/// One request line out, one response line back.
fn round_trip(to: &mut impl Write, from: &mut impl BufRead, line: &mut String) -> Duration {
    let started = Instant::now();
    writeln!(to, "{CALL}").unwrap();
    to.flush().unwrap();
    line.clear();
    from.read_line(line).unwrap();
    let took = started.elapsed();
    assert!(line.contains("\"isError\":false"), "{line}");
    took
}

fn percentiles(name: &str, samples: &mut [Duration]) {
    samples.sort();
    let at = |p: f64| samples[((samples.len() - 1) as f64 * p) as usize];
    println!(
        "mcp/{name}: {} round trips, p50 {:.1} us, p99 {:.1} us",
        samples.len(),
        at(0.50).as_secs_f64() * 1e6,
        at(0.99).as_secs_f64() * 1e6
    );
}

/// Benchmarks round trips over `to` / `from` as `name`, then prints p50/p99.
fn measure(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    to: &mut impl Write,
    from: &mut impl BufRead,
) {
    let samples = RefCell::new(Vec::new());
    let mut line = String::new();
    group.bench_function(name, |b| {
        b.iter_custom(|n| {
            let mut total = Duration::ZERO;
            for _ in 0..n {
                let took = round_trip(to, from, &mut line);
                samples.borrow_mut().push(took);
                total += took;
            }
            total
        })
    });
    percentiles(name, &mut samples.borrow_mut());
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("mcp");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));

    // Directly: the client talks to the server's stdio.
    let mut child = Command::new(&server()[0])
        .arg(ECHO_FLAG)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut to = child.stdin.take().unwrap();
    let mut from = BufReader::new(child.stdout.take().unwrap());
    measure(&mut group, "direct", &mut to, &mut from);
    drop(to);
    child.wait().unwrap();

    // Through the proxy, in process, with the durable SQLite ledger.
    let state = std::env::temp_dir().join(format!("capfence-bench-mcp-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let runtime = ActionRuntime::builder(POLICY)
        .state_dir(&state)
        .build()
        .unwrap();
    let proxy = Proxy::new(
        runtime,
        Policy::load(POLICY).unwrap(),
        ProxyOptions {
            actor: "treasury-agent".into(),
            environment: "production".into(),
            risk: Risk::Low,
            hide_denied: false,
            server: server(),
        },
    );
    let (client_in, mut to) = std::io::pipe().unwrap();
    let (from, client_out) = std::io::pipe().unwrap();
    let mut from = BufReader::new(from);
    let running = std::thread::spawn(move || proxy.run(client_in, Box::new(client_out)));
    measure(&mut group, "proxied_sqlite", &mut to, &mut from);
    drop(to);
    let _ = running.join();
    group.finish();
    let _ = std::fs::remove_dir_all(&state);
}

fn main() {
    if std::env::args().any(|a| a == ECHO_FLAG) {
        echo();
        return;
    }
    let mut c = Criterion::default().configure_from_args();
    bench(&mut c);
    c.final_summary();
}
