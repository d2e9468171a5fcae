//! `capfence serve --mcp`: what the MCP server behind `/mcp/NAME` receives
//! is what was decided, and nothing the agent sent besides. A recording
//! server stands in for the MCP server: it keeps every request's head and
//! body and answers tool calls on an event stream it holds open until the
//! test says so.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use capfence::audit::RecordKind;
use capfence::serve::mcp_http::{McpOptions, Upstream};

use super::TempDir;

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/mcp/policy.yaml");

/// A request the recording server received.
#[derive(Debug, Clone)]
struct Received {
    head: String,
    body: String,
}

impl Received {
    fn header(&self, name: &str) -> Option<String> {
        self.head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case(name).then(|| v.trim().to_owned())
        })
    }
}

/// Starts the recording server: every request is kept; a tools/call is
/// answered on an event stream (a log notification, then the result with a
/// rail reference), held open until `release` gets a message.
fn recording_server() -> (String, Arc<Mutex<Vec<Received>>>, Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let received = Arc::new(Mutex::new(Vec::new()));
    let (release, released): (Sender<()>, Receiver<()>) = channel();
    let kept = Arc::clone(&received);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut head = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                head.push_str(&line);
            }
            let length = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let body = String::from_utf8(body).unwrap();
            kept.lock().unwrap().push(Received {
                head,
                body: body.clone(),
            });
            let message: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
            if message["method"] == "tools/call" {
                let id = message["id"].to_string();
                let _ = stream.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n\
                      event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\"params\":{\"level\":\"info\",\"data\":\"paying\"}}\n\n",
                );
                let _ = stream.flush();
                // A call to `hold` is answered once the test says so.
                let hold = message["params"]["arguments"]["destination"] == "hold";
                if hold {
                    let _ = released.recv_timeout(Duration::from_secs(30));
                }
                let answer = format!(
                    "event: message\ndata: {{\"jsonrpc\":\"2.0\",\"id\":{id},\"result\":{{\"content\":[{{\"type\":\"text\",\"text\":\"paid\"}}],\r\ndata: \"structuredContent\":{{\"reference\":\"RAIL-{id}\",\"amount_sent\":\"119.5\"}},\"isError\":false}}}}\r\n\r\n"
                );
                let _ = stream.write_all(answer.as_bytes());
                let _ = stream.flush();
                // Held open until the test has looked at the ledger.
                if !hold {
                    let _ = released.recv_timeout(Duration::from_secs(30));
                }
            } else {
                // A tool list marks transfer_funds' destination for an
                // Mcp-Param-Destination header; anything else gets {}.
                let result = if message["method"] == "tools/list" {
                    "{\"tools\":[{\"name\":\"transfer_funds\",\"inputSchema\":{\"type\":\"object\",\"properties\":{\"amount\":{\"type\":\"number\"},\"destination\":{\"type\":\"string\",\"x-mcp-header\":\"Destination\"}}}}]}"
                } else {
                    "{}"
                };
                let answer = format!(
                    "{{\"jsonrpc\":\"2.0\",\"id\":{},\"result\":{result}}}",
                    message["id"]
                );
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nMcp-Session-Id: s-1\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        }
    });
    (addr, received, release)
}

/// Serves `runtime` with the gateways `bank` (the recording server) and
/// `gone` (nothing listens); the agent's token.
fn serve(runtime: &capfence::ActionRuntime, bank: &str) -> (String, String) {
    let (token, line) = capfence::serve::agents::new_agent("treasury-agent").unwrap();
    let policy = capfence::Policy::load(std::path::Path::new(POLICY)).unwrap();
    let closed = TcpListener::bind("127.0.0.1:0").unwrap();
    let gone = closed.local_addr().unwrap();
    drop(closed);
    let mcp = McpOptions {
        upstreams: vec![
            Upstream::parse(&format!("bank=http://{bank}/mcp")).unwrap(),
            Upstream::parse(&format!("gone=http://{gone}/mcp")).unwrap(),
        ],
        policy: Arc::new(policy),
        environment: "production".to_owned(),
        risk: capfence::Risk::Low,
    };
    (super::serve_in_process(runtime, &line, Some(mcp)), token)
}

/// Sends one request; the open connection, its head read.
fn post(
    addr: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, BufReader<TcpStream>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nAccept: application/json, text/event-stream\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        request.push_str(&format!("{k}: {v}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut reader = BufReader::new(stream);
    let mut status = String::new();
    reader.read_line(&mut status).unwrap();
    let code = status.get(9..12).unwrap_or("0").parse().unwrap();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
    }
    (code, reader)
}

fn outcomes(runtime: &capfence::ActionRuntime) -> Vec<capfence::audit::AuditRecord> {
    let mut found = Vec::new();
    runtime
        .ledger()
        .records_after(0, &mut |r| {
            if r.decision == RecordKind::Outcome {
                found.push(r);
            }
            true
        })
        .unwrap();
    found
}

#[test]
fn the_server_gets_the_decided_message_and_the_answer_is_recorded_before_it_is_relayed() {
    let dir = TempDir::new("mcp-http");
    let runtime = capfence::ActionRuntime::builder(POLICY)
        .state_dir(dir.path().join("state"))
        .build()
        .unwrap();
    let (bank, received, release) = recording_server();
    let (addr, token) = serve(&runtime, &bank);
    let bearer = format!("Bearer {token}");

    // A modern client lists the tools first (the gateway learns which
    // arguments are mirrored into headers).
    let list = "{\"jsonrpc\":\"2.0\",\"id\":6,\"method\":\"tools/list\",\"params\":{}}";
    let (status, _) = post(
        &addr,
        "/mcp/bank",
        &[("Authorization", &bearer), ("Mcp-Method", "tools/list")],
        list,
    );
    assert_eq!(status, 200);
    // The agent's bytes: a bare \r between members, an amount past f64's
    // precision, routing headers that name another tool, amount and
    // destination than the body.
    let call = "{\"jsonrpc\":\"2.0\",\r\"id\":7,\"method\":\"tools/call\",\"params\":{\"name\":\"transfer_funds\",\"arguments\":{\"amount\":120.000000000000000001,  \"destination\":\"vendor-corp-123\"}}}";
    let (status, mut answer) = post(
        &addr,
        "/mcp/bank",
        &[
            ("Authorization", &bearer),
            ("Mcp-Method", "tools/call"),
            ("Mcp-Name", "read_balance"),
            ("Mcp-Param-Amount", "1"),
            ("Mcp-Param-Destination", "attacker-999"),
            ("Mcp-Session-Id", "s-1"),
            ("Mcp-Protocol-Version", "2026-07-28"),
        ],
        call,
    );
    assert_eq!(status, 200);
    // Read up to the result's event while the server still holds the
    // stream open: its outcome is already on the record.
    let mut relayed = String::new();
    while !relayed.contains("RAIL-7") {
        let mut line = String::new();
        assert!(answer.read_line(&mut line).unwrap() > 0, "{relayed}");
        relayed.push_str(&line);
    }
    let recorded = outcomes(&runtime);
    assert_eq!(recorded.len(), 1, "{recorded:?}");
    let outcome: serde_json::Value = serde_json::from_str(&recorded[0].payload).unwrap();
    assert_eq!(outcome["reference"], "RAIL-7");

    assert_eq!(outcome["amount"], "119.5");
    release.send(()).unwrap();
    let mut rest = String::new();
    let _ = answer.read_to_string(&mut rest);
    relayed.push_str(&rest);
    // The events reach the agent as the server wrote them.
    assert!(relayed.contains("\"data\":\"paying\""), "{relayed}");
    assert!(relayed.contains("\"isError\":false}}\r\n\r\n"), "{relayed}");

    // A second call under an id still waiting for its answer would have its
    // outcome read from the first one's: refused, never sent.
    let held = "{\"jsonrpc\":\"2.0\",\"id\":8,\"method\":\"tools/call\",\"params\":{\"name\":\"transfer_funds\",\"arguments\":{\"amount\":10,\"destination\":\"hold\"}}}";
    let session = [
        ("Authorization", bearer.as_str()),
        ("Mcp-Session-Id", "s-1"),
    ];
    let (status, mut first) = post(&addr, "/mcp/bank", &session, held);
    assert_eq!(status, 200);
    let (status, _) = post(
        &addr,
        "/mcp/bank",
        &session,
        &held.replace("\"amount\":10", "\"amount\":400"),
    );
    assert_eq!(status, 400);
    release.send(()).unwrap();
    let mut answered = String::new();
    first.read_to_string(&mut answered).unwrap();
    assert!(answered.contains("RAIL-8"), "{answered}");
    assert_eq!(outcomes(&runtime).len(), 2);

    let got = received.lock().unwrap().clone();
    assert_eq!(got.len(), 3, "{got:?}");
    let sent = &got[1];
    // This gateway's serialization of the decided message: no \r, the
    // amount as its exact text.
    let decided: serde_json::Value = serde_json::from_str(call).unwrap();
    assert_eq!(sent.body, capfence::mcp::wire(&decided));
    assert!(!sent.body.contains('\r'));
    assert!(sent.body.contains("120.000000000000000001"));
    // Routing headers rebuilt from the decided body; the agent's own
    // dropped, and its token kept from the server.
    assert_eq!(sent.header("mcp-name").as_deref(), Some("transfer_funds"));
    assert_eq!(sent.header("mcp-method").as_deref(), Some("tools/call"));
    assert_eq!(sent.header("mcp-param-amount"), None);
    assert_eq!(
        sent.header("mcp-param-destination").as_deref(),
        Some("vendor-corp-123")
    );
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(
        sent.header("mcp-protocol-version").as_deref(),
        Some("2026-07-28")
    );
    assert_eq!(sent.header("host").as_deref(), Some(bank.as_str()));
    assert!(sent.head.starts_with("POST /mcp HTTP/1.1"), "{}", sent.head);

    // The first decision is the agent's, on the exact amount.
    let mut decision = None;
    runtime
        .ledger()
        .records_after(0, &mut |r| {
            if decision.is_none() && matches!(r.decision, RecordKind::Decision(_)) {
                decision = Some(r);
            }
            true
        })
        .unwrap();
    let decision = decision.unwrap();
    assert_eq!(decision.actor.as_deref(), Some("treasury-agent"));
    assert!(
        decision.payload.contains("120.000000000000000001"),
        "{}",
        decision.payload
    );
}

#[test]
fn refused_calls_never_reach_the_server_and_an_unreachable_one_fails() {
    let dir = TempDir::new("mcp-http-refused");
    let runtime = capfence::ActionRuntime::builder(POLICY)
        .state_dir(dir.path().join("state"))
        .build()
        .unwrap();
    let (bank, received, _release) = recording_server();
    let (addr, token) = serve(&runtime, &bank);
    let bearer = format!("Bearer {token}");
    let call = |amount: &str| {
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":3,\"method\":\"tools/call\",\"params\":{{\"name\":\"transfer_funds\",\"arguments\":{{\"amount\":{amount},\"destination\":\"x\"}}}}}}"
        )
    };
    for amount in ["15000", "2500", "-5"] {
        let (status, mut answer) = post(
            &addr,
            "/mcp/bank",
            &[("Authorization", &bearer)],
            &call(amount),
        );
        assert_eq!(status, 200);
        let mut body = String::new();
        answer.read_to_string(&mut body).unwrap();
        let refusal: serde_json::Value = serde_json::from_str(&body).unwrap();
        assert_eq!(refusal["id"], 3);
        assert_eq!(refusal["result"]["isError"], true, "{body}");
        assert_ne!(refusal["result"]["structuredContent"]["decision"], "allow");
    }
    // A call named in a batch, and a tool the policy does not know.
    let batch = format!("[{}]", call("10"));
    let (status, _) = post(&addr, "/mcp/bank", &[("Authorization", &bearer)], &batch);
    assert_eq!(status, 400);
    let unknown = "{\"jsonrpc\":\"2.0\",\"id\":4,\"method\":\"tools/call\",\"params\":{\"name\":\"Transfer_Funds\",\"arguments\":{}}}";
    let (status, mut answer) = post(&addr, "/mcp/bank", &[("Authorization", &bearer)], unknown);
    assert_eq!(status, 200);
    let mut body = String::new();
    answer.read_to_string(&mut body).unwrap();
    assert!(body.contains("has no capability"), "{body}");
    assert!(
        received.lock().unwrap().is_empty(),
        "the server got a refused call"
    );

    // Allowed, but nothing listens: 502, and the call's outcome is failed
    // (it never left).
    let (status, mut answer) = post(
        &addr,
        "/mcp/gone",
        &[("Authorization", &bearer)],
        &call("10"),
    );
    assert_eq!(status, 502);
    let mut body = String::new();
    answer.read_to_string(&mut body).unwrap();
    assert!(body.contains("did not answer"), "{body}");
    let recorded = outcomes(&runtime);
    assert_eq!(recorded.len(), 1);
    let outcome: serde_json::Value = serde_json::from_str(&recorded[0].payload).unwrap();
    assert_eq!(outcome["outcome"], "failed");
    assert!(
        outcome["error"]
            .as_str()
            .unwrap()
            .contains("could not be reached")
    );

    // Another method than GET, POST and DELETE; an unknown gateway.
    let (status, _) = post(
        &addr,
        "/mcp/elsewhere",
        &[("Authorization", &bearer)],
        &call("10"),
    );
    assert_eq!(status, 404);
    assert!(runtime.verify().unwrap().0 > 0);
}
