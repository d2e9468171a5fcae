//! The `capfence` command line as an operator and a sidecar use it.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use super::{POLICY, TempDir};

fn capfence(dir: &Path, args: &[&str], stdin: &str) -> Output {
    capfence_bytes(dir, args, stdin.as_bytes())
}

fn capfence_bytes(dir: &Path, args: &[&str], stdin: &[u8]) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let written = child.stdin.take().unwrap().write_all(stdin);
    // A command that exits before reading its input closes the pipe.
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

const ESCALATED: &str = r#"{"actor":"treasury-agent","resource":"payments","action":"transfer","environment":"production","risk":"high","payload":{"amount":2500.0,"destination":"strategic-partner-456"}}"#;

fn decide(dir: &Path, lines: &str) -> Vec<serde_json::Value> {
    let o = capfence(dir, &["decide", "--policy", POLICY], lines);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    out(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

#[test]
fn decide_prints_a_verdict_per_line_and_records_unreadable_input() {
    let dir = TempDir::new("cli-decide");
    let events = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/case_study_events.jsonl"
    ))
    .unwrap();
    let verdicts = decide(dir.path(), &format!("{events}garbage\n"));
    let summary: Vec<(bool, &str)> = verdicts
        .iter()
        .map(|v| {
            (
                v["authorized"].as_bool().unwrap(),
                v["decision"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (true, "allow"),
            (false, "deny"),
            (false, "require_approval"),
            (false, "deny")
        ]
    );
    assert_eq!(verdicts[2]["approval_id"], "T-1");
    assert!(
        verdicts[3]["reason"]
            .as_str()
            .unwrap()
            .starts_with("invalid event JSON")
    );
    let first = out(&capfence(dir.path(), &["audit", "log", "--json"], ""));
    assert_eq!(
        first.lines().count(),
        4 + 1,
        "every line, unreadable or not, is on the record (after the policy's activation)"
    );
}

#[test]
fn an_operator_approves_a_ticket_from_the_command_line() {
    let dir = TempDir::new("cli-approve");
    let pending = decide(dir.path(), &format!("{ESCALATED}\n"));
    assert_eq!(pending[0]["approval_id"], "T-1");
    let list = out(&capfence(dir.path(), &["approvals", "list"], ""));
    assert!(
        list.contains("T-1")
            && list.contains("pending")
            && list.contains(r#"{"amount":2500,"destination":"strategic-partner-456"}"#),
        "{list}"
    );

    let o = capfence(
        dir.path(),
        &["approvals", "approve", "T-1", "--by", "ops@corp"],
        "",
    );
    assert_eq!(o.status.code(), Some(0));
    let o = capfence(
        dir.path(),
        &["approvals", "approve", "T-1", "--by", "ops@corp"],
        "",
    );
    assert_eq!(o.status.code(), Some(1), "a ticket is approved once");
    assert!(String::from_utf8_lossy(&o.stderr).contains("is approved, not pending"));

    let after = decide(dir.path(), &format!("{ESCALATED}\n{ESCALATED}\n"));
    assert_eq!(
        (
            after[0]["authorized"].as_bool(),
            after[0]["approval_id"].as_str()
        ),
        (Some(true), Some("T-1"))
    );
    assert_eq!(
        (
            after[1]["decision"].as_str(),
            after[1]["approval_id"].as_str()
        ),
        (Some("require_approval"), Some("T-2"))
    );

    let log = out(&capfence(dir.path(), &["audit", "log"], ""));
    assert!(log.contains("approve") && log.contains("ops@corp"), "{log}");
    let o = capfence(dir.path(), &["verify"], "");
    assert_eq!(o.status.code(), Some(0));
    // After the policy's activation: the held call, the approval, the
    // allowed call and the call held again.
    assert!(out(&o).starts_with("ok: 5 records verified"), "{}", out(&o));
}

#[test]
fn grants_from_the_command_line_are_bounded() {
    let dir = TempDir::new("cli-grant");
    let grant = |extra: &[&str]| {
        let mut args = vec![
            "approvals",
            "grant",
            "--actor",
            "treasury-agent",
            "--capability",
            "payments.transfer.production",
            "--granted-by",
            "ops",
            "--duration",
            "30s",
        ];
        args.extend_from_slice(extra);
        capfence(dir.path(), &args, "")
    };
    // A cap needs the policy, and must name a field a require_approval rule compares.
    let o = grant(&["--max", "amount=1000"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("need --policy"));
    let o = grant(&["--max", "total=1000", "--policy", POLICY]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("no require_approval rule for payments.transfer compares `total`")
    );
    let o = grant(&["--max", "amount=1000", "--policy", POLICY]);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out(&o)
            .starts_with("granted G-1 to treasury-agent for payments.transfer.production until ")
    );
    assert_eq!(
        decide(dir.path(), &format!("{ESCALATED}\n"))[0]["decision"],
        "require_approval",
        "2500 is over the cap"
    );
    let o = grant(&["--uses", "1"]);
    assert_eq!(o.status.code(), Some(0));
    let v = decide(dir.path(), &format!("{ESCALATED}\n{ESCALATED}\n"));
    assert_eq!(
        (v[0]["authorized"].as_bool(), v[0]["approval_id"].as_str()),
        (Some(true), Some("G-2"))
    );
    assert_eq!(v[1]["decision"], "require_approval", "one use only");
    assert_eq!(
        capfence(
            dir.path(),
            &["approvals", "revoke", "G-2", "--by", "ops"],
            ""
        )
        .status
        .code(),
        Some(0)
    );
    assert_eq!(
        capfence(
            dir.path(),
            &["approvals", "revoke", "G-9", "--by", "ops"],
            ""
        )
        .status
        .code(),
        Some(1)
    );
}

#[test]
fn usage_errors_exit_2() {
    let dir = TempDir::new("cli-usage");
    assert_eq!(
        capfence(dir.path(), &["approvals", "approve", "T-1"], "")
            .status
            .code(),
        Some(2),
        "--by is required"
    );
    assert_eq!(
        capfence(dir.path(), &["verify"], "").status.code(),
        Some(2),
        "no state yet"
    );
    assert_eq!(
        capfence(dir.path(), &["decide", "--policy", "missing.yaml"], "")
            .status
            .code(),
        Some(2)
    );
    let o = capfence(
        dir.path(),
        &[
            "approvals",
            "grant",
            "--actor",
            "a",
            "--capability",
            "payments.transfer",
            "--granted-by",
            "ops",
            "--duration",
            "30x",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(2));
    let o = capfence(
        dir.path(),
        &[
            "approvals",
            "grant",
            "--actor",
            "a",
            "--capability",
            "payments.transfer",
            "--granted-by",
            "ops",
            "--duration",
            "30s",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(2), "no environment");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("names no environment"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = capfence(
        dir.path(),
        &[
            "mcp-proxy",
            "--policy",
            POLICY,
            "--risk",
            "extreme",
            "--",
            "true",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(2), "a risk that is no level");
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("expected low, medium, high or critical"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn decide_gives_every_line_a_recorded_verdict_and_goes_on() {
    let dir = TempDir::new("cli-bad-lines");
    let safe = r#"{"actor":"treasury-agent","capability":"payments.transfer","environment":"production","risk":"low","payload":{"amount":120,"destination":"v-1"}}"#;
    let mut input = Vec::new();
    input.extend(safe.as_bytes());
    input.extend(b"\n\xff\xfe{\"actor\":\"x\"}\n");
    input.extend(vec![b' '; capfence_compiler::lines::MAX_LINE_BYTES]);
    input.extend(b"{}\nnot json\n");
    input.extend(br#"{"actor":"a","capability":"payments.transfer","payload":{"meta":{"to":"attacker","to":"vendor"}}}"#);
    input.push(b'\n');
    input.extend(safe.as_bytes());
    input.push(b'\n');
    let o = capfence_bytes(dir.path(), &["decide", "--policy", POLICY], &input);
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let verdicts: Vec<serde_json::Value> = out(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reasons: Vec<&str> = verdicts
        .iter()
        .map(|v| v["reason"].as_str().unwrap())
        .collect();
    assert_eq!(verdicts.len(), 6, "{reasons:#?}");
    assert!(verdicts[0]["authorized"].as_bool().unwrap());
    assert!(reasons[1].contains("line 2 is not UTF-8"), "{}", reasons[1]);
    assert!(
        reasons[2].contains("line 3 is longer than 1048576 bytes"),
        "{}",
        reasons[2]
    );
    assert!(
        reasons[3].starts_with("invalid event JSON"),
        "{}",
        reasons[3]
    );
    assert!(reasons[4].contains("duplicate key `to`"), "{}", reasons[4]);
    assert!(
        verdicts[5]["authorized"].as_bool().unwrap(),
        "the stream went on"
    );
    for v in &verdicts[1..5] {
        assert_eq!(v["decision"], "deny");
    }
    let log = out(&capfence(dir.path(), &["audit", "log", "--json"], ""));
    assert_eq!(
        log.lines().count(),
        6 + 1,
        "every line is on the record (after the policy's activation)"
    );
    assert_eq!(capfence(dir.path(), &["verify"], "").status.code(), Some(0));
}

#[test]
fn agent_text_never_reaches_the_terminal_raw() {
    let dir = TempDir::new("cli-escape");
    // A forged actor is malformed (denied) but still on the record; an
    // untested payload field rides along with a real ticket.
    let forged = r#"{"actor":"ops\u001b[2K\rT-9 approved by cfo","capability":"payments.read","environment":"production","risk":"low"}"#;
    let held = r#"{"actor":"treasury-agent","capability":"payments.transfer","environment":"production","risk":"low","payload":{"amount":2500,"destination":"v-1","memo":"\u202e\u001b]0;pwned\u0007"}}"#;
    let verdicts = decide(dir.path(), &format!("{forged}\n{held}\n"));
    assert_eq!(verdicts[0]["decision"], "deny");
    assert!(
        verdicts[0]["reason"]
            .as_str()
            .unwrap()
            .contains("field `actor`")
    );
    assert_eq!(verdicts[1]["approval_id"], "T-1");
    for args in [&["audit", "log"][..], &["approvals", "list"][..]] {
        let o = capfence(dir.path(), args, "");
        assert_eq!(o.status.code(), Some(0));
        let text = out(&o);
        for bad in ['\u{1b}', '\r', '\u{7}', '\u{202e}'] {
            assert!(!text.contains(bad), "{args:?} sent {bad:?}: {text:?}");
        }
        assert!(
            text.contains("\\u{202e}") || text.contains("\\u{1b}"),
            "{text}"
        );
    }
}

#[test]
fn completions_are_printed() {
    let dir = TempDir::new("cli-completions");
    let o = capfence(dir.path(), &["completions", "bash"], "");
    assert_eq!(o.status.code(), Some(0));
    let text = out(&o);
    for sub in ["decide", "approvals", "verify", "audit", "grant", "revoke"] {
        assert!(text.contains(sub), "bash completions lack `{sub}`");
    }
    assert!(
        !dir.path().join("ledger.db").exists(),
        "no state is touched"
    );
}
