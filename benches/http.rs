//! `POST /v1/decide` over loopback, with 1, 8 and 32 keep-alive clients, on
//! the embedded SQLite store, beside the same decisions through the library
//! in the same run (same policy, same events, same number of callers, a
//! fresh ledger each), and `GET /healthz` with the same clients (the HTTP
//! path's own cost). Run: `cargo bench --bench http`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use capfence::ActionRuntime;
use capfence::serve::agents::{Agents, new_agent};
use capfence::serve::{ServeOptions, serve};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

/// The `capfence` binary's allocator: this process stands in for `capfence
/// serve` (and the library callers share it).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/fintech_policy.yaml");

fn fresh_dir(name: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("capfence-bench-http-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The case-study mix: allowed, denied and held transfers.
fn body(i: u64) -> String {
    let amount = ["120.00", "15000.00", "2500.00"][(i % 3) as usize];
    format!(
        "{{\"capability\":\"payments.transfer\",\"environment\":\"production\",\"risk\":\"high\",\"payload\":{{\"amount\":{amount},\"destination\":\"vendor-{i}\"}}}}"
    )
}

/// A server on a fresh ledger with one agent; its address and token.
fn start_server(name: &str) -> (SocketAddr, String) {
    let dir = fresh_dir(name);
    let runtime = ActionRuntime::builder(POLICY)
        .state_dir(&dir)
        .build()
        .unwrap();
    let (token, line) = new_agent("treasury-agent").unwrap();
    let options = ServeOptions {
        listen: "127.0.0.1:0".parse().unwrap(),
        tls: None,
        insecure_http: false,
        viewers: Vec::new(),
        notify: None,
        checkpoints: None,
        agents: Agents::parse(&line, "bench").unwrap(),
        mcp: None,
    };
    let (ready, bound) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        serve(runtime, &options, |addr, _| {
            let _ = ready.send(addr);
        })
        .unwrap();
    });
    (bound.recv().unwrap(), token)
}

/// One keep-alive client: `count` requests, each answered before the next
/// (`GET /healthz` instead of a decision when `floor`: the HTTP path alone).
fn client(addr: SocketAddr, token: &str, first: u64, count: u64, floor: bool) {
    let stream = TcpStream::connect(addr).unwrap();
    stream.set_nodelay(true).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    let mut request = Vec::new();
    for i in first..first + count {
        // Each request leaves in one write, as an HTTP client's do (a
        // `write!` straight to the socket sends each formatted piece alone).
        request.clear();
        if floor {
            request.extend_from_slice(b"GET /healthz HTTP/1.1\r\nHost: bench\r\n\r\n");
        } else {
            let body = body(i);
            write!(
                request,
                "POST /v1/decide HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
        }
        writer.write_all(&request).unwrap();
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        assert!(status.starts_with("HTTP/1.1 200"), "{status}");
        let mut length = 0usize;
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            }
        }
        let mut answer = vec![0; length];
        reader.read_exact(&mut answer).unwrap();
        assert!(!answer.windows(12).any(|w| w == b"audit record"));
    }
}

fn over_http(addr: SocketAddr, token: &str, clients: u64, iters: u64, floor: bool) -> Duration {
    let per = iters.div_ceil(clients);
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..clients {
            s.spawn(move || client(addr, token, c * 1_000_003, per, floor));
        }
    });
    start
        .elapsed()
        .mul_f64(iters as f64 / (per * clients) as f64)
}

fn in_process(runtime: &ActionRuntime, callers: u64, iters: u64) -> Duration {
    let per = iters.div_ceil(callers);
    let start = Instant::now();
    std::thread::scope(|s| {
        for c in 0..callers {
            let runtime = runtime.clone();
            s.spawn(move || {
                for i in c * 1_000_003..c * 1_000_003 + per {
                    let event = capfence::Event::from_json(&body(i)).unwrap();
                    let verdict = runtime.execute_event(&event);
                    assert!(!verdict.reason.contains("audit record"));
                }
            });
        }
    });
    start
        .elapsed()
        .mul_f64(iters as f64 / (per * callers) as f64)
}

fn decide_over_http(c: &mut Criterion) {
    let mut group = c.benchmark_group("decide_http");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(8));
    group.throughput(Throughput::Elements(1));
    for clients in [1u64, 8, 32] {
        let (addr, token) = start_server(&format!("server-{clients}"));
        group.bench_function(format!("http/clients_{clients}"), |b| {
            b.iter_custom(|iters| over_http(addr, &token, clients, iters, false));
        });
        // The HTTP path alone, same clients, no decision: what the machine
        // spends on requests and answers (the clients' share included).
        group.bench_function(format!("healthz/clients_{clients}"), |b| {
            b.iter_custom(|iters| over_http(addr, &token, clients, iters, true));
        });
        let dir = fresh_dir(&format!("library-{clients}"));
        let runtime = ActionRuntime::builder(POLICY)
            .state_dir(&dir)
            .build()
            .unwrap();
        group.bench_function(format!("library/callers_{clients}"), |b| {
            b.iter_custom(|iters| in_process(&runtime, clients, iters));
        });
    }
    group.finish();
}

criterion_group!(benches, decide_over_http);
criterion_main!(benches);
