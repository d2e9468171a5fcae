//! `capfence serve` over HTTP, as a page and an attacker use it: no session,
//! no payment data; only a listed key's signature over a fresh challenge for
//! this origin signs in; a cross-origin request changes nothing; an approval
//! counts only as a signature over the ledger's own statement, and the
//! agent's retry then goes through once.

use std::collections::HashMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use capfence::signing::{OperatorKey, statement};
use capfence::{ActionEvent, ActionRuntime, Decimal, Risk, payload};

use super::TempDir;

fn key(name: &str, seed: u8) -> OperatorKey {
    OperatorKey::from_seed(name, [seed; 32]).unwrap()
}

fn policy(dir: &Path) -> std::path::PathBuf {
    let text = format!(
        "approvers:
  ops1: {}
  ops2: {}
require_approval:
  - id: two-person
    capability: payments.transfer
    amount_gt: 10000
    approvals: 2
  - capability: payments.transfer
    amount_gt: 500
allow:
  - capability: payments.transfer
    amount_lte: 500
",
        key("ops1", 1).public_key(),
        key("ops2", 2).public_key()
    );
    let path = dir.join("policy.yaml");
    std::fs::write(&path, text).unwrap();
    path
}

fn transfer(amount: &str) -> ActionEvent {
    ActionEvent::create(
        "treasury-agent",
        "transfer",
        "payments",
        "production",
        Risk::High,
        payload! {"amount" => amount.parse::<Decimal>().unwrap(), "destination" => "strategic-partner-456"},
    )
}

pub(super) struct Server {
    pub(super) child: Child,
    pub(super) addr: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `capfence serve` as a child process with `extra` arguments: the server
/// (killed on drop) once it listens, or what it wrote on stderr.
pub(super) fn serve(state: &Path, policy: &Path, extra: &[&str]) -> Result<Server, String> {
    let mut child = Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(state)
        .arg("serve")
        .arg("--policy")
        .arg(policy)
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line.trim().strip_prefix("listening on http://") {
        Some(addr) => Ok(Server {
            addr: addr.to_owned(),
            child,
        }),
        None => {
            let _ = child.wait();
            let mut err = String::new();
            child
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut err)
                .unwrap();
            Err(err)
        }
    }
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: HashMap<String, String>,
    body: String,
}

impl Reply {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// One HTTP/1.1 request on its own connection.
fn http(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    let (head, body) = raw.split_once("\r\n\r\n").unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap()[9..12].parse().unwrap();
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

/// Signs in with `key`; the session cookie, or the refusal.
fn sign_in(addr: &str, key: &OperatorKey) -> Result<String, Reply> {
    let origin = format!("http://{addr}");
    let challenge = http(addr, "POST", "/api/challenge", &[("Origin", &origin)], "");
    assert_eq!(challenge.status, 200, "{}", challenge.body);
    let challenge = challenge.json()["challenge"].as_str().unwrap().to_owned();
    let signature = key.sign(&capfence::serve::login_statement(&challenge, &origin));
    let body = serde_json::json!({
        "challenge": challenge, "public_key": key.public_key(), "signature": signature,
    });
    let reply = http(
        addr,
        "POST",
        "/api/login",
        &[("Origin", &origin), ("Content-Type", "application/json")],
        &body.to_string(),
    );
    if reply.status != 200 {
        return Err(reply);
    }
    let cookie = reply.headers["set-cookie"].clone();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    Ok(cookie.split(';').next().unwrap().to_owned())
}

/// Approves (or rejects) `ticket` in `cookie`'s session, signing the
/// statement's parts with `key` after `tamper` had its way with them.
fn act(
    addr: &str,
    cookie: &str,
    key: &OperatorKey,
    ticket: &str,
    action: &str,
    tamper: impl Fn(&mut Vec<(String, String)>),
) -> Reply {
    let origin = format!("http://{addr}");
    let reply = http(
        addr,
        "GET",
        &format!("/api/tickets/{ticket}/statement?action={action}"),
        &[("Cookie", cookie)],
        "",
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let made = reply.json();
    let mut parts: Vec<(String, String)> = serde_json::from_value(made["parts"].clone()).unwrap();
    tamper(&mut parts);
    let borrowed: Vec<(&str, &str)> = parts
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let signature = key.sign(&statement(made["kind"].as_str().unwrap(), &borrowed));
    http(
        addr,
        "POST",
        &format!("/api/tickets/{ticket}/{action}"),
        &[
            ("Cookie", cookie),
            ("Origin", &origin),
            ("Content-Type", "application/json"),
        ],
        &serde_json::json!({ "signature": signature }).to_string(),
    )
}

#[test]
fn the_console_signs_in_only_listed_keys_and_approves_only_what_the_ledger_states() {
    let dir = TempDir::new("serve");
    let policy = policy(dir.path());
    let state = dir.path().join("state");
    let agent = ActionRuntime::builder(&policy)
        .state_dir(&state)
        .build()
        .unwrap();
    assert!(!agent.execute(&transfer("2500")).authorized);
    let server = serve(&state, &policy, &["--listen", "127.0.0.1:0"]).unwrap();
    let addr = server.addr.as_str();
    let origin = format!("http://{addr}");

    // No session: 401 and nothing of the payment; the page itself holds no data.
    for path in [
        "/api/tickets",
        "/api/me",
        "/api/tickets/T-1/statement?action=approve",
    ] {
        let reply = http(addr, "GET", path, &[], "");
        assert_eq!(reply.status, 401, "{path}");
        assert!(!reply.body.contains("2500") && !reply.body.contains("strategic"));
    }
    let page = http(addr, "GET", "/", &[], "");
    assert_eq!(page.status, 200);
    assert!(page.body.contains("data-testid=\"login-key\"") && !page.body.contains("2500"));
    assert!(page.headers["content-security-policy"].contains("script-src 'self'"));

    // A key the policy does not list cannot sign in; neither can a
    // cross-origin page, nor a replayed challenge.
    let mallory = key("mallory", 66);
    assert_eq!(sign_in(addr, &mallory).unwrap_err().status, 401);
    let cross = http(
        addr,
        "POST",
        "/api/challenge",
        &[("Origin", "http://evil.example")],
        "",
    );
    assert_eq!(cross.status, 403);

    let ops1 = key("ops1", 1);
    let cookie = sign_in(addr, &ops1).unwrap();
    let me = http(addr, "GET", "/api/me", &[("Cookie", &cookie)], "");
    assert_eq!(me.json()["name"], "ops1");
    let forged = http(
        addr,
        "GET",
        "/api/me",
        &[("Cookie", &format!("{}x", cookie))],
        "",
    );
    assert_eq!(forged.status, 401, "a changed session token is no session");

    let list = http(addr, "GET", "/api/tickets", &[("Cookie", &cookie)], "").json();
    let ticket = &list["tickets"][0];
    assert_eq!(ticket["id"], "T-1");
    assert_eq!(ticket["status"], "pending");
    assert_eq!(ticket["payload"]["amount"].to_string(), "2500", "exact");
    assert_eq!(ticket["needed"], 1);
    assert!(ticket["reason"].as_str().unwrap().contains("amount > 500"));

    // A statement changed between the page and the ledger is refused, and
    // so is an approval from another origin.
    let tampered = act(addr, &cookie, &ops1, "T-1", "approve", |parts| {
        for (name, value) in parts.iter_mut() {
            if name == "quorum" {
                *value = "0".to_owned();
            }
        }
    });
    assert_eq!(tampered.status, 409, "{}", tampered.body);
    assert!(
        tampered.body.contains("does not verify"),
        "{}",
        tampered.body
    );
    let cross = http(
        addr,
        "POST",
        "/api/tickets/T-1/approve",
        &[("Cookie", &cookie), ("Origin", "http://evil.example")],
        "{\"signature\":\"AAAA\"}",
    );
    assert_eq!(cross.status, 403);
    assert!(!agent.execute(&transfer("2500")).authorized, "still held");

    let approved = act(addr, &cookie, &ops1, "T-1", "approve", |_| {});
    assert_eq!(approved.status, 200, "{}", approved.body);
    assert_eq!(approved.json()["status"], "approved");
    assert!(agent.execute(&transfer("2500")).authorized);
    assert!(!agent.execute(&transfer("2500")).authorized, "once");

    // Signing out ends the session.
    let out = http(
        addr,
        "POST",
        "/api/logout",
        &[("Cookie", &cookie), ("Origin", &origin)],
        "",
    );
    assert_eq!(out.status, 200);
    assert_eq!(
        http(addr, "GET", "/api/tickets", &[("Cookie", &cookie)], "").status,
        401
    );
    agent.verify().unwrap();
}

#[test]
fn the_console_refuses_plain_http_off_loopback() {
    let dir = TempDir::new("serve-plain");
    let policy = policy(dir.path());
    let refused = serve(
        &dir.path().join("state"),
        &policy,
        &["--listen", "0.0.0.0:0"],
    )
    .err()
    .unwrap();
    assert!(refused.contains("refusing plain HTTP"), "{refused}");
}

/// The page builds the bytes it signs with `statement.js`; they must be the
/// bytes the ledger checks, `capfence::signing::statement`, for any text
/// (multi-byte characters count in UTF-8 bytes, as Rust's `len`). Run with
/// Node.js, which every CI machine has.
#[test]
fn the_pages_statement_bytes_are_the_ledgers() {
    let vectors: Vec<(&str, Vec<(&str, &str)>)> = vec![
        (
            "login",
            vec![
                ("challenge", "abc-_123"),
                ("origin", "https://console.example:8443"),
            ],
        ),
        (
            "ticket",
            vec![
                ("action", "approve"),
                ("ticket", "T-12"),
                ("quorum", "2"),
                ("expires_at", "2026-12-06T09:00:00.000000Z"),
                ("signer", "zoë ✓ 出納"),
            ],
        ),
        ("grant", vec![("caps", ""), ("note", "line\nbreak:7:x")]),
    ];
    // The ticket keys the page computes from what it shows: a held record
    // with a non-ASCII payload, and one with no risk.
    let dir = TempDir::new("statement-js-keys");
    let policy = policy(dir.path());
    let rt = ActionRuntime::builder(&policy)
        .state_dir(dir.path().join("state"))
        .build()
        .unwrap();
    let unicode = ActionEvent::create(
        "treasury-agent",
        "transfer",
        "payments",
        "production",
        Risk::High,
        payload! {"amount" => "2500.000000000000000001".parse::<Decimal>().unwrap(),
        "memo" => "zoë ✓ 出納\n\"x\""},
    );
    assert!(!rt.execute(&unicode).authorized);
    let mut held = Vec::new();
    rt.ledger()
        .records_after(0, &mut |r| {
            if r.decision.as_str() == "require_approval" {
                held.push(r);
            }
            true
        })
        .unwrap();
    assert_eq!(held.len(), 1);
    // Absent parts hash as "~": the same record without risk and rule.
    let mut partial = held[0].clone();
    partial.risk = None;
    partial.rule = None;
    held.push(partial);
    let key_parts: Vec<serde_json::Value> = held
        .iter()
        .map(|r| {
            serde_json::json!([
                r.actor,
                r.capability,
                r.environment,
                r.risk,
                r.payload,
                r.rule,
                r.policy_digest
            ])
        })
        .collect();
    let caps_inputs = [
        "amount=3000.00",
        "amount=0100.50, fee=0.0",
        "b=1;a=2",
        "",
        "amount=-0.000",
    ];
    let module = concat!(env!("CARGO_MANIFEST_DIR"), "/src/serve/statement.js");
    let script = format!(
        "import {{ statement, pkcs8, parseKeyFile, ticketKey, capsText }} from {module:?};\n\
         const vectors = {};\n\
         for (const [kind, parts] of vectors) console.log(Buffer.from(statement(kind, parts)).toString('hex'));\n\
         const key = parseKeyFile(process.argv[1]);\n\
         console.log(key.name, key.publicKey, Buffer.from(pkcs8(key.seed)).toString('hex'));\n\
         for (const parts of {}) console.log(await ticketKey(parts));\n\
         for (const input of {}) console.log(JSON.stringify(capsText(input)));\n\
         for (const bad of ['amount=1e3', 'amount', '1x=2', 'amount=1,5x']) {{\n\
           try {{ capsText(bad); console.log('accepted', bad); }} catch {{ console.log('refused'); }}\n\
         }}\n",
        serde_json::to_string(&vectors).unwrap(),
        serde_json::Value::Array(key_parts),
        serde_json::to_string(&caps_inputs).unwrap(),
    );
    let key = key("ops1", 1);
    let dir = TempDir::new("statement-js");
    let key_file = dir.path().join("ops1.key");
    key.write_new(&key_file).unwrap();
    let out = match Command::new("node")
        .args(["--input-type=module", "-e", &script])
        .arg(std::fs::read_to_string(&key_file).unwrap())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            assert!(
                std::env::var_os("CI").is_none(),
                "CI must run this: node: {e}"
            );
            eprintln!("skipped: no node ({e})");
            return;
        }
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let mut lines = stdout.lines();
    for (kind, parts) in &vectors {
        let rust: String = statement(kind, parts)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(lines.next(), Some(rust.as_str()), "{kind} {parts:?}");
    }
    let parsed = lines.next().unwrap();
    let (name_public, der) = parsed.rsplit_once(' ').unwrap();
    assert_eq!(name_public, format!("ops1 {}", key.public_key()));
    // The PKCS #8 the page imports holds the same seed the file does.
    assert!(der.starts_with("302e020100300506032b657004220420"), "{der}");
    assert!(
        der.ends_with(&"01".repeat(32)),
        "ops1's seed is 32 bytes of 1: {der}"
    );
    assert_eq!(der.len(), (16 + 32) * 2);
    for r in &held {
        assert_eq!(
            lines.next(),
            Some(capfence::approvals::record_key(r).as_str()),
            "the page's ticket key of record {}",
            r.seq
        );
    }
    for input in caps_inputs {
        let parsed: Vec<(String, Decimal)> = input
            .split([';', ','])
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| capfence::approvals::parse_cap(p).unwrap())
            .collect();
        let rust = capfence::approvals::caps_text(&parsed);
        assert_eq!(
            lines.next(),
            Some(serde_json::to_string(&rust).unwrap().as_str()),
            "caps {input:?}"
        );
    }
    for _ in 0..4 {
        assert_eq!(lines.next(), Some("refused"));
    }
}

/// A webhook receiver: records each POST (headers, body); answers 500 to the
/// first `fail_first` requests, 200 after.
/// The POSTs a receiver got: headers and body of each.
type Received = std::sync::Arc<std::sync::Mutex<Vec<(HashMap<String, String>, String)>>>;

struct Receiver {
    addr: String,
    got: Received,
}

fn receiver(fail_first: usize) -> Receiver {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let got = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = got.clone();
    std::thread::spawn(move || {
        let mut answered = 0;
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let mut reader = BufReader::new(stream);
            let mut headers = HashMap::new();
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            loop {
                line.clear();
                reader.read_line(&mut line).unwrap();
                let Some((k, v)) = line.trim_end().split_once(": ") else {
                    break;
                };
                headers.insert(k.to_ascii_lowercase(), v.to_owned());
            }
            let len: usize = headers["content-length"].parse().unwrap();
            let mut body = vec![0; len];
            reader.read_exact(&mut body).unwrap();
            let status = if answered < fail_first {
                "500 Oops"
            } else {
                "200 OK"
            };
            answered += 1;
            if answered > fail_first {
                seen.lock()
                    .unwrap()
                    .push((headers, String::from_utf8(body).unwrap()));
            }
            let _ = reader.get_mut().write_all(
                format!("HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                    .as_bytes(),
            );
        }
    });
    Receiver { addr, got }
}

impl Receiver {
    /// The events received (event, id), waiting until `until` holds.
    fn events(&self, until: impl Fn(&[(String, String)]) -> bool) -> Vec<(String, String)> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let events: Vec<(String, String)> = self
                .got
                .lock()
                .unwrap()
                .iter()
                .map(|(_, body)| {
                    let v: serde_json::Value = serde_json::from_str(body).unwrap();
                    (
                        v["event"].as_str().unwrap().to_owned(),
                        v["id"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect();
            if until(&events) || std::time::Instant::now() > deadline {
                return events;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Notifications: a held payment reaches the webhook, signed, after the
/// receiver's 500 (retried); one made while the console was down arrives
/// after its restart; an approval sends signed and approved; nothing twice.
#[test]
fn notifications_are_signed_retried_and_survive_a_restart() {
    let dir = TempDir::new("serve-notify");
    let policy = policy(dir.path());
    let state = dir.path().join("state");
    let secret_file = dir.path().join("notify.secret");
    std::fs::write(&secret_file, "0123456789abcdef-webhook-secret\n").unwrap();
    let agent = ActionRuntime::builder(&policy)
        .state_dir(&state)
        .build()
        .unwrap();
    let hook = receiver(1);
    let url = format!("http://{}/hook", hook.addr);
    let args = [
        "--listen",
        "127.0.0.1:0",
        "--notify",
        &url,
        "--notify-secret-file",
        secret_file.to_str().unwrap(),
    ];
    let server = serve(&state, &policy, &args).unwrap();
    assert!(!agent.execute(&transfer("2500")).authorized);
    let events = hook.events(|e| !e.is_empty());
    assert_eq!(events, [("ticket.opened".to_owned(), "T-1".to_owned())]);
    let (headers, body) = hook.got.lock().unwrap()[0].clone();
    let header = &headers["capfence-signature"];
    let (t, v1) = header
        .strip_prefix("t=")
        .and_then(|h| h.split_once(",v1="))
        .unwrap();
    let expected = capfence::serve::notify::signature(
        b"0123456789abcdef-webhook-secret",
        t.parse().unwrap(),
        &body,
    );
    assert_eq!(header, &expected, "HMAC-SHA256(secret, t.body)");
    assert!(v1.len() == 64);
    let json: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(json["url"].as_str().unwrap().ends_with("/#ticket/T-1"));
    assert!(json["reason"].as_str().unwrap().contains("amount > 500"));

    // Down: a hold made now is sent once the console is back. (Delivery is
    // at least once: T-1's notice may come again if the console was
    // stopped between the receiver's 200 and moving its cursor.)
    drop(server);
    assert!(!agent.execute(&transfer("700")).authorized);
    let _server = serve(&state, &policy, &args).unwrap();
    let distinct = |events: &[(String, String)]| {
        let mut out: Vec<(String, String)> = Vec::new();
        for e in events {
            if !out.contains(e) {
                out.push(e.clone());
            }
        }
        out
    };
    let events = hook.events(|e| distinct(e).len() >= 2);
    assert_eq!(
        distinct(&events)[1],
        ("ticket.opened".to_owned(), "T-2".to_owned())
    );

    agent.approve("T-2", &key("ops1", 1)).unwrap();
    let events = hook.events(|e| distinct(e).len() >= 4);
    assert_eq!(
        distinct(&events),
        [
            ("ticket.opened".to_owned(), "T-1".to_owned()),
            ("ticket.opened".to_owned(), "T-2".to_owned()),
            ("ticket.signed".to_owned(), "T-2".to_owned()),
            ("ticket.approved".to_owned(), "T-2".to_owned()),
        ],
        "in order"
    );
    let repeated = events.len() - 4;
    assert!(
        repeated <= 1 && events.iter().filter(|e| e.1 == "T-2").count() == 3,
        "only the notice in flight at the restart may come twice: {events:?}"
    );
    // The agent's retry of a held call is not a new ticket.
    assert!(!agent.execute(&transfer("2500")).authorized);
    std::thread::sleep(Duration::from_millis(700));
    assert_eq!(
        hook.events(|_| true).len(),
        events.len(),
        "a retry opens nothing"
    );
}

/// The receiver-side check in docs/console.md, run as written (Python's
/// hmac), accepts the console's signature and refuses a changed body, a
/// wrong secret and an old timestamp.
#[test]
fn the_documented_receiver_check_verifies_the_consoles_signature() {
    let Some(python) = std::env::var_os("CAPFENCE_MCP_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this: set CAPFENCE_MCP_PYTHON"
        );
        eprintln!("skipped: needs CAPFENCE_MCP_PYTHON");
        return;
    };
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/console.md"))
        .unwrap();
    let section = &doc[doc.find("**Checking the signature.**").unwrap()..];
    let start = section.find("```python\n").unwrap() + "```python\n".len();
    let snippet = &section[start..start + section[start..].find("```").unwrap()];
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let body = r#"{"event":"ticket.opened","id":"T-1"}"#;
    let secret = b"0123456789abcdef-webhook-secret";
    let header = capfence::serve::notify::signature(secret, now, body);
    let old = capfence::serve::notify::signature(secret, now - 3600, body);
    let script = format!(
        "{snippet}\n\
         import sys\n\
         s, h, old, b = sys.argv[1].encode(), sys.argv[2], sys.argv[3], sys.argv[4].encode()\n\
         print(verified(s, h, b), verified(s, h, b + b' '), verified(b'other-secret-0000', h, b), verified(s, old, b))\n"
    );
    let out = Command::new(python)
        .args([
            "-c",
            &script,
            std::str::from_utf8(secret).unwrap(),
            &header,
            &old,
            body,
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "True False False False"
    );
}

/// A viewer signs in and reads the queue, but gets no statement to sign and
/// cannot approve; the page's session says why it is read-only.
#[test]
fn a_viewer_reads_and_cannot_sign() {
    let dir = TempDir::new("serve-viewer");
    let policy = policy(dir.path());
    let viewer = key("auditor", 9);
    let text = std::fs::read_to_string(&policy).unwrap();
    std::fs::write(
        &policy,
        format!("viewers:\n  auditor: {}\n{text}", viewer.public_key()),
    )
    .unwrap();
    let state = dir.path().join("state");
    let agent = ActionRuntime::builder(&policy)
        .state_dir(&state)
        .build()
        .unwrap();
    assert!(!agent.execute(&transfer("2500")).authorized);
    let server = serve(&state, &policy, &["--listen", "127.0.0.1:0"]).unwrap();
    let addr = server.addr.as_str();
    let cookie = sign_in(addr, &viewer).unwrap();
    let me = http(addr, "GET", "/api/me", &[("Cookie", &cookie)], "").json();
    assert_eq!(
        (me["name"].as_str(), me["can_sign"].as_bool()),
        (Some("auditor"), Some(false))
    );
    assert!(me["read_only_because"].as_str().unwrap().contains("viewer"));
    let list = http(addr, "GET", "/api/tickets", &[("Cookie", &cookie)], "").json();
    assert_eq!(list["tickets"][0]["id"], "T-1");
    let statement = http(
        addr,
        "GET",
        "/api/tickets/T-1/statement?action=approve",
        &[("Cookie", &cookie)],
        "",
    );
    assert_eq!(statement.status, 403);
    let origin = format!("http://{addr}");
    let approve = http(
        addr,
        "POST",
        "/api/tickets/T-1/approve",
        &[("Cookie", &cookie), ("Origin", &origin)],
        &serde_json::json!({"signature": viewer.sign(b"anything")}).to_string(),
    );
    assert_eq!(approve.status, 403);
    assert!(!agent.execute(&transfer("2500")).authorized, "still held");
}

/// Grants, decisions and the chain through the API: a signed grant is
/// revoked by a signature over the ledger's statement (a tampered one is
/// refused); decisions filter; the chain reports verified.
#[test]
fn grants_decisions_and_the_chain_through_the_api() {
    let dir = TempDir::new("serve-grants");
    let policy = policy(dir.path());
    let state = dir.path().join("state");
    let agent = ActionRuntime::builder(&policy)
        .state_dir(&state)
        .build()
        .unwrap();
    let ops1 = key("ops1", 1);
    agent
        .grant(
            "treasury-agent",
            "payments.transfer",
            "production",
            &ops1,
            Duration::from_secs(600),
            capfence::GrantLimits::default(),
        )
        .unwrap();
    assert!(
        agent.execute(&transfer("2500")).authorized,
        "the grant covers it"
    );
    assert!(agent.execute(&transfer("100")).authorized);
    let server = serve(&state, &policy, &["--listen", "127.0.0.1:0"]).unwrap();
    let addr = server.addr.as_str();
    let origin = format!("http://{addr}");
    let cookie = sign_in(addr, &ops1).unwrap();

    let grants = http(addr, "GET", "/api/grants", &[("Cookie", &cookie)], "").json();
    assert_eq!(grants["grants"][0]["id"], "G-1");
    assert_eq!(grants["grants"][0]["state"], "active");
    let made = http(
        addr,
        "GET",
        "/api/grants/G-1/statement",
        &[("Cookie", &cookie)],
        "",
    )
    .json();
    let parts: Vec<(String, String)> = serde_json::from_value(made["parts"].clone()).unwrap();
    let sign = |parts: &[(String, String)]| {
        let borrowed: Vec<(&str, &str)> = parts
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        ops1.sign(&statement("grant", &borrowed))
    };
    let post = |signature: String| {
        http(
            addr,
            "POST",
            "/api/grants/G-1/revoke",
            &[("Cookie", &cookie), ("Origin", &origin)],
            &serde_json::json!({ "signature": signature }).to_string(),
        )
    };
    let mut tampered = parts.clone();
    tampered[1].1 = "G-2".to_owned();
    assert_eq!(post(sign(&tampered)).status, 409);
    let revoked = post(sign(&parts));
    assert_eq!(revoked.status, 200, "{}", revoked.body);
    assert_eq!(revoked.json()["revoked_by"], "ops1");
    assert!(
        !agent.execute(&transfer("2500")).authorized,
        "revoked: held again"
    );

    let denied = http(
        addr,
        "GET",
        "/api/decisions?decision=require_approval",
        &[("Cookie", &cookie)],
        "",
    )
    .json();
    let list = denied["decisions"].as_array().unwrap();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["decision"], "require_approval");
    let all = http(addr, "GET", "/api/decisions", &[("Cookie", &cookie)], "").json();
    assert_eq!(
        all["decisions"].as_array().unwrap().len(),
        3,
        "newest first"
    );
    assert_eq!(all["decisions"][0]["decision"], "require_approval");
    let chain = http(addr, "GET", "/api/chain", &[("Cookie", &cookie)], "").json();
    assert_eq!(chain["verified"], true);
    assert_eq!(chain["records"], agent.verify().unwrap().0);
    assert_eq!(
        http(addr, "GET", "/api/chain", &[], "").status,
        401,
        "no session, no chain"
    );
}

/// Behind TLS: the console speaks HTTPS with the given certificate (checked
/// by curl against the test CA), says so, marks its cookie Secure, and a
/// plain-HTTP request to its port gets no answer. Certificates are made by
/// the `openssl` command (present wherever PostgreSQL's packages are).
#[test]
fn the_console_serves_https_with_the_given_certificate() {
    let dir = TempDir::new("serve-tls");
    let ok = |c: &mut Command| {
        c.current_dir(dir.path())
            .output()
            .is_ok_and(|o| o.status.success())
    };
    let made = ok(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=capfence test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
    ])) && ok(Command::new("openssl").args([
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "console.key",
        "-out",
        "console.csr",
    ])) && {
        std::fs::write(
            dir.path().join("ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
        )
        .unwrap();
        ok(Command::new("openssl").args([
            "x509",
            "-req",
            "-in",
            "console.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext",
            "-out",
            "console.pem",
        ]))
    };
    if !made {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run this: no openssl command"
        );
        eprintln!("skipped: needs the openssl command");
        return;
    }
    let policy = policy(dir.path());
    let cert = dir.path().join("console.pem");
    let key_file = dir.path().join("console.key");
    let mut child = Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(dir.path().join("state"))
        .args([
            "serve",
            "--policy",
            policy.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ])
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key_file)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let server = Server {
        addr: line
            .trim()
            .strip_prefix("listening on https://")
            .unwrap_or_else(|| panic!("{line}"))
            .to_owned(),
        child,
    };
    let port = server.addr.rsplit_once(':').unwrap().1.to_owned();
    let curl = |args: &[&str]| {
        Command::new("curl")
            .args(["-s", "--max-time", "10", "--cacert"])
            .arg(dir.path().join("ca.pem"))
            .args(args)
            .output()
            .unwrap()
    };
    let me = curl(&["-i", &format!("https://localhost:{port}/api/me")]);
    let text = String::from_utf8_lossy(&me.stdout);
    assert!(text.starts_with("HTTP/1.1 401"), "{text}");
    let origin = format!("https://localhost:{port}");
    let challenge = curl(&[
        "-X",
        "POST",
        "-H",
        &format!("Origin: {origin}"),
        &format!("https://localhost:{port}/api/challenge"),
    ]);
    let challenge: serde_json::Value = serde_json::from_slice(&challenge.stdout).unwrap();
    let challenge = challenge["challenge"].as_str().unwrap();
    let ops1 = key("ops1", 1);
    let body = serde_json::json!({
        "challenge": challenge,
        "public_key": ops1.public_key(),
        "signature": ops1.sign(&capfence::serve::login_statement(challenge, &origin)),
    });
    let login = curl(&[
        "-i",
        "-X",
        "POST",
        "-H",
        &format!("Origin: {origin}"),
        "--data",
        &body.to_string(),
        &format!("https://localhost:{port}/api/login"),
    ]);
    let text = String::from_utf8_lossy(&login.stdout).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200"), "{text}");
    assert!(
        text.contains("httponly; samesite=strict; path=/; secure"),
        "{text}"
    );
    // Plain HTTP to the TLS port: no HTTP answer.
    let plain = Command::new("curl")
        .args([
            "-s",
            "--max-time",
            "5",
            &format!("http://127.0.0.1:{port}/api/me"),
        ])
        .output()
        .unwrap();
    assert!(!plain.status.success() || plain.stdout.is_empty());
}

/// `--notify-format slack`: an incoming-webhook message, its text naming
/// the event and ticket, a button linking to the ticket in the console.
#[test]
fn slack_notifications_carry_text_and_a_button_to_the_ticket() {
    let dir = TempDir::new("serve-slack");
    let policy = policy(dir.path());
    let state = dir.path().join("state");
    let agent = ActionRuntime::builder(&policy)
        .state_dir(&state)
        .build()
        .unwrap();
    let hook = receiver(0);
    let url = format!("http://{}/slack", hook.addr);
    let _server = serve(
        &state,
        &policy,
        &[
            "--listen",
            "127.0.0.1:0",
            "--notify",
            &url,
            "--notify-format",
            "slack",
            "--public-url",
            "https://console.example",
        ],
    )
    .unwrap();
    assert!(!agent.execute(&transfer("2500")).authorized);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while hook.got.lock().unwrap().is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
    }
    let (headers, body) = hook.got.lock().unwrap()[0].clone();
    assert!(
        !headers.contains_key("capfence-signature"),
        "no secret, no signature"
    );
    let message: serde_json::Value = serde_json::from_str(&body).unwrap();
    let text = message["text"].as_str().unwrap();
    assert!(
        text.contains("ticket.opened") && text.contains("T-1"),
        "{text}"
    );
    assert_eq!(
        message["blocks"][1]["elements"][0]["url"],
        "https://console.example/#ticket/T-1"
    );
}

/// A chain edited behind the ledger's back: the console's notifier checks
/// the chain when it starts and sends `verify.failed` naming the record.
#[test]
fn an_edited_chain_sends_verify_failed() {
    let dir = TempDir::new("serve-verify-failed");
    let policy = policy(dir.path());
    let state = dir.path().join("state");
    let agent = ActionRuntime::builder(&policy)
        .state_dir(&state)
        .build()
        .unwrap();
    assert!(agent.execute(&transfer("100")).authorized);
    assert!(!agent.execute(&transfer("2500")).authorized);
    super::sql(&state)
        .execute(
            "UPDATE audit SET reason = 'nothing to see' WHERE seq = 2",
            [],
        )
        .unwrap();
    let hook = receiver(0);
    let url = format!("http://{}/hook", hook.addr);
    let _server = serve(
        &state,
        &policy,
        &["--listen", "127.0.0.1:0", "--notify", &url],
    )
    .unwrap();
    let events = hook.events(|e| !e.is_empty());
    assert_eq!(events, [("verify.failed".to_owned(), String::new())]);
    let body = hook.got.lock().unwrap()[0].1.clone();
    let notice: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(
        notice["reason"].as_str().unwrap().contains("record 2"),
        "{notice}"
    );
}

/// `ticket.expired`: a ticket left unapproved past its lifetime is sent once
/// (the notifier driven through the library, on a runtime whose tickets
/// live 300 ms).
#[test]
fn an_expired_ticket_is_notified_once() {
    use capfence::serve::notify::{NotifyFormat, NotifyOptions, start};
    let dir = TempDir::new("serve-expired");
    let policy = policy(dir.path());
    let rt = ActionRuntime::builder(&policy)
        .state_dir(dir.path().join("state"))
        .ticket_ttl(Duration::from_millis(300))
        .build()
        .unwrap();
    let hook = receiver(0);
    start(
        rt.clone(),
        NotifyOptions {
            urls: vec![format!("http://{}/hook", hook.addr)],
            secret: None,
            format: NotifyFormat::Json,
            console_url: "https://console.example".to_owned(),
        },
    )
    .unwrap();
    assert!(!rt.execute(&transfer("2500")).authorized);
    let events = hook.events(|e| e.len() >= 2);
    assert_eq!(
        events,
        [
            ("ticket.opened".to_owned(), "T-1".to_owned()),
            ("ticket.expired".to_owned(), "T-1".to_owned()),
        ]
    );
    // The notifier looks again every few seconds: still once.
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(hook.events(|_| true).len(), 2);
}

/// A POST from the console's own page, in `cookie`'s session.
fn post(addr: &str, cookie: &str, path: &str, body: &serde_json::Value) -> Reply {
    let origin = format!("http://{addr}");
    http(
        addr,
        "POST",
        path,
        &[
            ("Cookie", cookie),
            ("Origin", &origin),
            ("Content-Type", "application/json"),
        ],
        &body.to_string(),
    )
}

/// The statement's parts as the page reads them, signed by `key`.
fn signed_parts(key: &OperatorKey, made: &serde_json::Value) -> (Vec<(String, String)>, String) {
    let parts: Vec<(String, String)> = serde_json::from_value(made["parts"].clone()).unwrap();
    let borrowed: Vec<(&str, &str)> = parts
        .iter()
        .map(|(n, v)| (n.as_str(), v.as_str()))
        .collect();
    let signature = key.sign(&statement(made["kind"].as_str().unwrap(), &borrowed));
    (parts, signature)
}

fn part<'a>(parts: &'a [(String, String)], name: &str) -> &'a str {
    parts
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no {name} in {parts:?}"))
}

/// A grant made in the page: the server names the next grant id and the
/// expiry; the approver's signature over exactly that statement makes it,
/// and the agent's held transfer then passes within its cap and uses. A
/// grant that took the id meanwhile, a changed cap, a past expiry, a viewer
/// and a cross-origin request are each refused, and none records anything.
#[test]
fn a_grant_signed_in_the_page() {
    let dir = TempDir::new("serve-grant");
    let policy = policy(dir.path());
    let state = dir.path().join("state");
    let agent = ActionRuntime::builder(&policy)
        .state_dir(&state)
        .build()
        .unwrap();
    assert!(!agent.execute(&transfer("2500")).authorized, "held");
    let server = serve(&state, &policy, &["--listen", "127.0.0.1:0"]).unwrap();
    let addr = server.addr.as_str();
    let ops1 = key("ops1", 1);
    let cookie = sign_in(addr, &ops1).unwrap();
    let ask = serde_json::json!({
        "actor": "treasury-agent", "capability": "payments.transfer",
        "environment": "production", "duration_seconds": 3600,
        "caps": "amount=3000.00", "uses": 1,
    });
    let made = post(addr, &cookie, "/api/grants/statement", &ask);
    assert_eq!(made.status, 200, "{}", made.body);
    let made = made.json();
    let (parts, signature) = signed_parts(&ops1, &made);
    assert_eq!(made["kind"], "grant");
    assert_eq!(part(&parts, "grant"), "G-1");
    assert_eq!(part(&parts, "caps"), "amount=3000", "exact, normalized");
    assert_eq!(part(&parts, "uses"), "1");
    assert_eq!(part(&parts, "signer"), "ops1");
    let expires = part(&parts, "expires_at").to_owned();
    assert!(expires.ends_with(".000000Z"), "whole seconds: {expires}");
    let records = agent.verify().unwrap().0;

    let with = |changes: serde_json::Value| {
        let mut body = ask.clone();
        body["expires_at"] = serde_json::json!(expires);
        body["signature"] = serde_json::json!(signature);
        for (k, v) in changes.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    // A changed cap: the ledger's statement is not the one signed.
    let tampered = post(
        addr,
        &cookie,
        "/api/grants",
        &with(serde_json::json!({"caps": "amount=30000"})),
    );
    assert_eq!(tampered.status, 409, "{}", tampered.body);
    assert!(tampered.body.contains("statement"), "{}", tampered.body);
    // Cross-origin: refused before anything is read.
    let foreign = http(
        addr,
        "POST",
        "/api/grants",
        &[("Cookie", &cookie), ("Origin", "http://evil.example")],
        &with(serde_json::json!({})).to_string(),
    );
    assert_eq!(foreign.status, 403);
    // A past expiry is no grant, whoever signed it.
    let past = post(
        addr,
        &cookie,
        "/api/grants",
        &with(serde_json::json!({"expires_at": "2020-01-01T00:00:00.000000Z"})),
    );
    assert_eq!(past.status, 409, "{}", past.body);
    assert_eq!(agent.verify().unwrap().0, records, "nothing recorded");
    assert!(agent.ledger().grants().unwrap().is_empty());

    // The statement as signed: G-1, and the held transfer passes once.
    let granted = post(addr, &cookie, "/api/grants", &with(serde_json::json!({})));
    assert_eq!(granted.status, 200, "{}", granted.body);
    assert_eq!(granted.json()["id"], "G-1");
    assert_eq!(granted.json()["expires_at"], expires.as_str());
    assert!(
        agent.execute(&transfer("2500")).authorized,
        "within the cap"
    );
    assert!(!agent.execute(&transfer("2500")).authorized, "one use");
    let g = &agent.ledger().grant_views().unwrap()[0];
    assert_eq!(g.granted_by, "ops1");
    assert_eq!(g.uses_left, Some(0));
    assert!(g.signed.is_some(), "a signed grant");
    let listed = http(addr, "GET", "/api/grants", &[("Cookie", &cookie)], "").json();
    assert_eq!(
        listed["grants"][0]["signed"], true,
        "so the page offers Revoke"
    );
    assert_eq!(listed["grants"][0]["state"], "used up");

    // Another grant takes the id between statement and signature: the
    // signature names G-2, the grant would be G-3: refused.
    let made = post(addr, &cookie, "/api/grants/statement", &ask).json();
    let (parts, signature) = signed_parts(&ops1, &made);
    assert_eq!(part(&parts, "grant"), "G-2");
    agent
        .grant(
            "other-agent",
            "payments.transfer",
            "production",
            &ops1,
            Duration::from_secs(60),
            capfence::GrantLimits::default(),
        )
        .unwrap();
    let mut body = ask.clone();
    body["expires_at"] = serde_json::json!(part(&parts, "expires_at"));
    body["signature"] = serde_json::json!(signature);
    let raced = post(addr, &cookie, "/api/grants", &body);
    assert_eq!(raced.status, 409, "{}", raced.body);
    assert_eq!(agent.ledger().grants().unwrap().len(), 2);

    // Bad input is a 400 naming what is wrong, not a panic.
    let bad = post(
        addr,
        &cookie,
        "/api/grants/statement",
        &serde_json::json!({"actor": "a", "capability": "payments.transfer",
            "environment": "production", "duration_seconds": 60, "caps": "amount=1e999999"}),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    let bad = post(
        addr,
        &cookie,
        "/api/grants/statement",
        &serde_json::json!({"actor": "a", "capability": "payments.transfer",
            "environment": "production", "duration_seconds": 0}),
    );
    assert_eq!(bad.status, 400, "{}", bad.body);
    assert!(agent.verify().is_ok());
}

/// A ticket's own page: the ticket, and the whole record that opened it,
/// numbers exact as recorded; no session, no ticket; an unknown one is 404.
#[test]
fn a_tickets_page_shows_the_record_that_opened_it() {
    let dir = TempDir::new("serve-ticket");
    let policy = policy(dir.path());
    let state = dir.path().join("state");
    let agent = ActionRuntime::builder(&policy)
        .state_dir(&state)
        .build()
        .unwrap();
    let held = agent.execute(&transfer("2500.000000000000000001"));
    let ticket = held.approval_id.clone().unwrap();
    let server = serve(&state, &policy, &["--listen", "127.0.0.1:0"]).unwrap();
    let addr = server.addr.as_str();
    let path = format!("/api/tickets/{ticket}");
    assert_eq!(http(addr, "GET", &path, &[], "").status, 401);
    let cookie = sign_in(addr, &key("ops2", 2)).unwrap();
    let page = http(addr, "GET", &path, &[("Cookie", &cookie)], "");
    assert_eq!(page.status, 200, "{}", page.body);
    let t = &page.json()["ticket"];
    assert_eq!(t["id"], ticket.as_str());
    assert_eq!(t["status"], "pending");
    assert!(
        t["payload_text"]
            .as_str()
            .unwrap()
            .contains("2500.000000000000000001"),
        "{t}"
    );
    let mut opened = None;
    agent
        .ledger()
        .records_after(0, &mut |r| {
            if r.approval_id.as_deref() == Some(ticket.as_str()) && opened.is_none() {
                opened = Some(r);
            }
            true
        })
        .unwrap();
    let opened = opened.unwrap();
    assert_eq!(t["opened_hash"], opened.hash.as_str());
    assert_eq!(t["opened_record"]["hash"], opened.hash.as_str());
    assert_eq!(t["opened_record"]["seq"], opened.seq);
    assert_eq!(t["policy"], opened.policy_digest.as_deref().unwrap());
    assert!(
        t["opened_record_text"]
            .as_str()
            .unwrap()
            .contains("2500.000000000000000001")
    );
    assert_eq!(
        http(addr, "GET", "/api/tickets/T-99", &[("Cookie", &cookie)], "").status,
        404
    );
    assert_eq!(
        http(
            addr,
            "GET",
            "/api/tickets/nonsense",
            &[("Cookie", &cookie)],
            ""
        )
        .status,
        404
    );
}

/// The chain page's checkpoint: the newest in `--checkpoint-dir`, held to
/// the ledger. A ledger restored from an older backup is reported as rolled
/// back, naming the checkpoint's size and root.
#[test]
fn the_chain_page_holds_the_ledger_to_the_newest_checkpoint() {
    let dir = TempDir::new("serve-checkpoint");
    let policy = policy(dir.path());
    let state = dir.path().join("state");
    let backup = dir.path().join("backup");
    let checkpoints = dir.path().join("checkpoints");
    std::fs::create_dir_all(&checkpoints).unwrap();
    let ops1 = key("ops1", 1);
    let key_file = dir.path().join("ops1.key");
    ops1.write_new(&key_file).unwrap();
    {
        let agent = ActionRuntime::builder(&policy)
            .state_dir(&state)
            .build()
            .unwrap();
        for _ in 0..3 {
            assert!(agent.execute(&transfer("100")).authorized);
        }
    }
    super::copy_dir(&state, &backup);
    {
        let agent = ActionRuntime::builder(&policy)
            .state_dir(&state)
            .build()
            .unwrap();
        for _ in 0..4 {
            assert!(agent.execute(&transfer("100")).authorized);
        }
    }
    let chain = |state: &Path, extra: &[&str]| {
        let mut args = vec!["--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let server = serve(state, &policy, &args).unwrap();
        let cookie = sign_in(&server.addr, &ops1).unwrap();
        http(
            &server.addr,
            "GET",
            "/api/chain",
            &[("Cookie", &cookie)],
            "",
        )
        .json()
    };
    let dir_arg = checkpoints.to_string_lossy().into_owned();
    assert_eq!(chain(&state, &[])["checkpoint"], serde_json::Value::Null);
    let none = chain(&state, &["--checkpoint-dir", &dir_arg]);
    assert_eq!(none["checkpoint"]["fault"], "no checkpoint written yet");

    // Two checkpoints: the newer (8 records) is the one shown.
    let write = |name: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_capfence"))
            .arg("--state")
            .arg(&state)
            .args(["audit", "checkpoint", "--key"])
            .arg(&key_file)
            .arg("--out")
            .arg(checkpoints.join(name))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
    };
    write("checkpoint-000000000008");
    std::fs::write(checkpoints.join("notes.txt"), "not a checkpoint").unwrap();
    let good = chain(&state, &["--checkpoint-dir", &dir_arg]);
    let c = &good["checkpoint"];
    assert_eq!(c["consistent"], true, "{good}");
    assert_eq!(c["size"], 8);
    assert_eq!(c["signed_by"], serde_json::json!(["ops1"]));
    assert_eq!(c["root"], good["tree_root"], "the tree is the checkpoint's");
    assert!(
        c["file"]
            .as_str()
            .unwrap()
            .ends_with("checkpoint-000000000008")
    );

    // The restored backup (4 records) verifies on its own, and is caught.
    let restored = chain(&backup, &["--checkpoint-dir", &dir_arg]);
    assert_eq!(restored["verified"], true);
    let c = &restored["checkpoint"];
    assert_eq!(c["consistent"], false, "{restored}");
    let fault = c["fault"].as_str().unwrap();
    assert!(
        fault.contains("holds 4 records, fewer than the checkpoint's size 8")
            && fault.contains("rolled back"),
        "{fault}"
    );
}
