//! The agents' HTTP door of `capfence serve`: `POST /v1/decide` with a
//! bearer token decides as the authenticated agent and no other; no token,
//! no decision (and the refusal is recorded); `/healthz`, `/readyz`,
//! `/metrics`.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::TempDir;
use super::serve::Server;

const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policies/fintech_policy.yaml"
);

fn capfence(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

/// A new agent: its token and its agents-file line.
fn new_agent(state: &Path, name: &str) -> (String, String) {
    let out = capfence(state, &["agents", "new", "--name", name]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let mut lines = text.lines();
    let token = lines.next().unwrap().to_owned();
    let line = lines.next().unwrap().to_owned();
    assert!(lines.next().is_none());
    (token, line)
}

fn serve(state: &Path, policy: &str, agents: &Path) -> Result<Server, String> {
    let agents = agents.to_str().unwrap();
    super::serve::serve(
        state,
        Path::new(policy),
        &["--listen", "127.0.0.1:0", "--agents", agents],
    )
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

fn http(addr: &str, method: &str, path: &str, token: Option<&str>, body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if let Some(token) = token {
        request.push_str(&format!("Authorization: Bearer {token}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    // A body the server refuses early may not be read in full.
    let _ = stream.write_all(body.as_bytes());
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw);
    let raw = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap_or((&raw, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .unwrap_or_default()
        .get(9..12)
        .unwrap_or("0")
        .parse()
        .unwrap();
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned()))
        .collect();
    Reply {
        status,
        headers,
        body: body.to_owned(),
    }
}

fn write_agents(dir: &Path, lines: &[&str], mode: u32) -> std::path::PathBuf {
    let path = dir.join("agents");
    std::fs::write(&path, lines.join("\n") + "\n").unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }
    path
}

#[test]
fn an_agent_decides_as_itself_and_no_one_else() {
    let dir = TempDir::new("http-api");
    let state = dir.path().join("state");
    let (token, line) = new_agent(&state, "treasury-agent");
    let (other_token, _) = new_agent(&state, "reporting-agent");
    // Hashes others can read are refused, naming the file.
    let agents = write_agents(dir.path(), &[&line], 0o644);
    let refused = serve(&state, POLICY, &agents).err().unwrap();
    assert!(refused.contains("readable by others"), "{refused}");
    let agents = write_agents(dir.path(), &["# the treasury's agents", &line], 0o600);
    let server = serve(&state, POLICY, &agents).unwrap();
    let addr = server.addr.as_str();
    let event = |extra: &str| {
        format!(
            "{{{extra}\"capability\":\"payments.transfer\",\"environment\":\"production\",\"payload\":{{\"amount\":120,\"destination\":\"vendor-corp-123\"}}}}"
        )
    };

    // No token, a wrong one, another server's agent: 401, recorded.
    for token in [None, Some("cfa_wrong"), Some(other_token.as_str())] {
        let reply = http(addr, "POST", "/v1/decide", token, &event(""));
        assert_eq!(reply.status, 401, "{}", reply.body);
        assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
        assert_eq!(reply.header("x-request-id").map(str::len), Some(32));
    }
    // The agent's own call: the actor is filled in.
    let allowed = http(addr, "POST", "/v1/decide", Some(&token), &event(""));
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    let verdict = allowed.json();
    assert_eq!(verdict["authorized"], true, "{verdict}");
    let seq = verdict["seq"].as_u64().unwrap();
    // Naming another actor is denied, and recorded as the agent's.
    let spoofed = http(
        addr,
        "POST",
        "/v1/decide",
        Some(&token),
        &event("\"actor\":\"admin-agent\","),
    )
    .json();
    assert_eq!(spoofed["decision"], "deny");
    assert_eq!(
        spoofed["reason"],
        "denied: actor admin-agent does not match the authenticated agent treasury-agent"
    );
    // Naming itself is fine.
    let named = http(
        addr,
        "POST",
        "/v1/decide",
        Some(&token),
        &event("\"actor\":\"treasury-agent\","),
    )
    .json();
    assert_eq!(named["authorized"], true);
    // A batch: each in order, one answer each; a malformed one is denied.
    let batch = format!("[{}, {{\"capability\": 7}}, {}]", event(""), event(""));
    let answers = http(addr, "POST", "/v1/decide", Some(&token), &batch).json();
    let decisions: Vec<&str> = answers
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["decision"].as_str().unwrap())
        .collect();
    assert_eq!(decisions, ["allow", "deny", "allow"]);
    // The intake rules of `decide`: a key given twice is refused.
    let twice =
        "{\"capability\":\"payments.transfer\",\"payload\":{\"amount\":1,\"amount\":99999}}";
    let dup = http(addr, "POST", "/v1/decide", Some(&token), twice).json();
    assert_eq!(dup["decision"], "deny", "{dup}");
    // Over a mebibyte: 413, nothing decided.
    let big = format!(
        "{{\"payload\":{{\"memo\":\"{}\"}}}}",
        "x".repeat(1024 * 1024)
    );
    assert_eq!(
        http(addr, "POST", "/v1/decide", Some(&token), &big).status,
        413
    );

    // The chain: every decision, and the refusals, under the right actor.
    drop(server);
    let log = capfence(&state, &["audit", "log", "--json"]);
    let records: Vec<serde_json::Value> = String::from_utf8(log.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let refusals = records
        .iter()
        .filter(|r| {
            r["reason"]
                .as_str()
                .unwrap()
                .contains("without a valid agent token")
        })
        .count();
    assert_eq!(refusals, 3);
    let call = records.iter().find(|r| r["seq"] == seq).unwrap();
    assert_eq!(call["actor"], "treasury-agent");
    let spoof = records
        .iter()
        .find(|r| r["reason"].as_str().unwrap().contains("admin-agent"))
        .unwrap();
    assert_eq!(spoof["actor"], "treasury-agent", "recorded as the sender");
    assert_eq!(capfence(&state, &["verify"]).status.code(), Some(0));
}

#[test]
fn health_readiness_and_metrics() {
    let dir = TempDir::new("http-ops");
    let state = dir.path().join("state");
    let (token, line) = new_agent(&state, "treasury-agent");
    let agents = write_agents(dir.path(), &[&line], 0o600);
    let server = serve(&state, POLICY, &agents).unwrap();
    let addr = server.addr.as_str();
    assert_eq!(http(addr, "GET", "/healthz", None, "").status, 200);
    assert_eq!(http(addr, "GET", "/readyz", None, "").status, 200);
    let pay = |amount: u32| {
        format!(
            "{{\"capability\":\"payments.transfer\",\"environment\":\"production\",\"payload\":{{\"amount\":{amount},\"destination\":\"vendor-corp-123\"}}}}"
        )
    };
    for amount in [100, 200, 2500] {
        assert_eq!(
            http(addr, "POST", "/v1/decide", Some(&token), &pay(amount)).status,
            200
        );
    }
    http(addr, "POST", "/v1/decide", None, &pay(1));
    let metrics = http(addr, "GET", "/metrics", None, "");
    assert_eq!(metrics.status, 200);
    assert!(
        metrics
            .header("content-type")
            .unwrap()
            .starts_with("application/openmetrics-text"),
        "{:?}",
        metrics.headers
    );
    let text = metrics.body;
    for line in [
        "capfence_decisions_total{capability=\"payments.transfer\",decision=\"allow\"} 2",
        "capfence_decisions_total{capability=\"payments.transfer\",decision=\"require_approval\"} 1",
        "capfence_unauthenticated_requests_total 1",
        "capfence_pending_tickets 1",
        "capfence_decision_seconds_count 3",
        "capfence_ledger_commit_seconds_count ",
    ] {
        assert!(text.contains(line), "missing `{line}` in\n{text}");
    }
    drop(server);
    // A server whose policy is not the ledger's active one is not ready.
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, "allow:\n  - capability: payments.read\n").unwrap();
    let server = serve(&state, other.to_str().unwrap(), &agents).unwrap();
    let ready = http(&server.addr, "GET", "/readyz", None, "");
    assert_eq!(ready.status, 503);
    assert!(
        ready.body.contains("is not the ledger's active policy"),
        "{}",
        ready.body
    );
}

/// The OpenAPI document served is the decision API's: its Verdict schema
/// is the one docs/cli.md gives (which tests/mcp/test_verdict_schema.py
/// holds real verdicts to).
#[test]
fn the_openapi_document_carries_the_verdict_schema() {
    let dir = TempDir::new("http-openapi");
    let state = dir.path().join("state");
    let (_, line) = new_agent(&state, "a");
    let agents = write_agents(dir.path(), &[&line], 0o600);
    let server = serve(&state, POLICY, &agents).unwrap();
    let doc = http(&server.addr, "GET", "/v1/openapi.json", None, "").json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["paths"]["/v1/decide"]["post"].is_object());
    let cli =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/cli.md")).unwrap();
    let block = cli
        .split("```json verdict-schema\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let mut documented: serde_json::Value = serde_json::from_str(block).unwrap();
    documented.as_object_mut().unwrap().remove("$schema");
    let mut served = doc["components"]["schemas"]["Verdict"].clone();
    served.as_object_mut().unwrap().remove("$id");
    assert_eq!(served, documented);
}

/// SIGTERM: the request already in flight is finished (decided, recorded,
/// answered), no new connection is taken, and the server exits 0.
#[test]
fn sigterm_finishes_the_request_in_flight_and_takes_no_new_one() {
    let dir = TempDir::new("http-sigterm");
    let state = dir.path().join("state");
    let (token, line) = new_agent(&state, "treasury-agent");
    let agents = write_agents(dir.path(), &[&line], 0o600);
    let mut server = serve(&state, POLICY, &agents).unwrap();
    let addr = server.addr.clone();
    let body = "{\"capability\":\"payments.transfer\",\"environment\":\"production\",\"payload\":{\"amount\":120,\"destination\":\"vendor-corp-123\"}}";
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let (first, rest) = body.split_at(20);
    write!(
        stream,
        "POST /v1/decide HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{first}",
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let pid = server.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    std::thread::sleep(Duration::from_millis(300));
    // No new connection is taken.
    assert!(
        TcpStream::connect(&addr).is_err(),
        "a connection accepted after SIGTERM"
    );
    // The request in flight is finished and answered.
    stream.write_all(rest.as_bytes()).unwrap();
    let mut raw = String::new();
    let _ = stream.read_to_string(&mut raw);
    assert!(raw.starts_with("HTTP/1.1 200"), "{raw}");
    assert!(raw.contains("\"authorized\":true"), "{raw}");
    let status = server.child.wait().unwrap();
    assert_eq!(status.code(), Some(0));
    let log = capfence(&state, &["audit", "log", "--json"]);
    assert!(String::from_utf8_lossy(&log.stdout).contains("\"decision\":\"allow\""));
}

/// `POST /v1/outcome`: an agent reports what became of its own calls, once;
/// another agent's call is not its to report.
#[test]
fn an_agent_reports_the_outcome_of_its_own_calls_only() {
    let dir = TempDir::new("http-outcome");
    let state = dir.path().join("state");
    let (token, line) = new_agent(&state, "treasury-agent");
    let (other, other_line) = new_agent(&state, "reporting-agent");
    let agents = write_agents(dir.path(), &[&line, &other_line], 0o600);
    let server = serve(&state, POLICY, &agents).unwrap();
    let addr = server.addr.as_str();
    let pay = "{\"capability\":\"payments.transfer\",\"environment\":\"production\",\"payload\":{\"amount\":120,\"destination\":\"vendor-corp-123\"}}";
    let seq = http(addr, "POST", "/v1/decide", Some(&token), pay).json()["seq"]
        .as_u64()
        .unwrap();
    let report =
        |token: Option<&str>, body: String| http(addr, "POST", "/v1/outcome", token, &body);
    let executed = format!(
        "{{\"seq\":{seq},\"outcome\":\"executed\",\"reference\":\"BANK-1\",\"amount\":\"119.5\"}}"
    );
    assert_eq!(report(None, executed.clone()).status, 401);
    let theirs = report(Some(&other), executed.clone());
    assert_eq!(theirs.status, 403, "{}", theirs.body);
    let bad = report(
        Some(&token),
        format!("{{\"seq\":{seq},\"outcome\":\"maybe\"}}"),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let inexact = report(
        Some(&token),
        format!("{{\"seq\":{seq},\"outcome\":\"executed\",\"amount\":\"1e9999\"}}"),
    );
    assert_eq!(inexact.status, 400);
    let ok = report(Some(&token), executed.clone());
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(ok.json()["reason"].as_str().unwrap().contains("BANK-1"));
    let again = report(Some(&token), executed);
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(again.body.contains("already has its outcome"));
    let missing = report(
        Some(&token),
        "{\"seq\":9999,\"outcome\":\"failed\",\"error\":\"x\"}".to_owned(),
    );
    assert_eq!(missing.status, 404);
}

/// HTTP requests (waiting on the commit queue as futures) and library
/// callers (waiting on threads) share one ledger's group commit: every call
/// gets its verdict, every verdict its record, the chain verifies.
#[test]
fn http_and_library_callers_share_the_group_commit() {
    let dir = TempDir::new("http-mixed");
    let runtime = capfence::ActionRuntime::builder(POLICY)
        .state_dir(dir.path().join("state"))
        .build()
        .unwrap();
    let (token, line) = capfence::serve::agents::new_agent("treasury-agent").unwrap();
    let addr = super::serve_in_process(&runtime, &line, None);
    let seqs = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for c in 0..8 {
            let (addr, token, seqs) = (&addr, &token, &seqs);
            s.spawn(move || {
                for i in 0..25 {
                    let body = format!(
                        "{{\"capability\":\"payments.transfer\",\"environment\":\"production\",\"payload\":{{\"amount\":{},\"destination\":\"vendor-corp-123\"}}}}",
                        100 + c * 100 + i
                    );
                    let v = http(addr, "POST", "/v1/decide", Some(token), &body).json();
                    seqs.lock().unwrap().push(v["seq"].as_u64().unwrap());
                }
            });
        }
        for _ in 0..4 {
            let (runtime, seqs) = (&runtime, &seqs);
            s.spawn(move || {
                for _ in 0..25 {
                    let v = runtime.execute(&super::transfer("120", "vendor-corp-123"));
                    seqs.lock().unwrap().push(v.seq.unwrap());
                }
            });
        }
    });
    let mut seqs = seqs.into_inner().unwrap();
    seqs.sort_unstable();
    // The policy's activation is record 1; then every call, once each.
    assert_eq!(seqs, (2..=301).collect::<Vec<u64>>());
    assert_eq!(runtime.verify().unwrap().0, 301);
}
