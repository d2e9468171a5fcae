//! Signed approvals and the two-person rule: only a listed operator's key can
//! let a held payment through, and every attempt to get around the
//! signatures (no key, an unlisted key, a key not eligible for the rule, one
//! approver twice, forged rows, forged or replayed chain records, a flipped
//! signature byte) is refused or never authorizes.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use capfence::{
    ActionEvent, ActionRuntime, AuditRecord, DecisionKind, GrantLimits, OperatorError, OperatorKey,
    TicketStatus, VerifyError,
};

use super::{TempDir, insert_record, sql};

/// Operator keys from fixed seeds: ops1..ops3 are listed, mallory is not.
fn key(name: &str, seed: u8) -> OperatorKey {
    OperatorKey::from_seed(name, [seed; 32]).unwrap()
}

fn ops1() -> OperatorKey {
    key("ops1", 1)
}
fn ops2() -> OperatorKey {
    key("ops2", 2)
}
fn ops3() -> OperatorKey {
    key("ops3", 3)
}
fn mallory() -> OperatorKey {
    key("mallory", 66)
}

/// A treasury policy: transfers above 10,000 need two of ops1..ops3; above
/// 500, one of ops1 and ops2.
fn policy_text() -> String {
    format!(
        "approvers:
  ops1: {}
  ops2: {}
  ops3: {}
deny:
  - capability: payments.transfer
    amount_gt: 100000
require_approval:
  - id: two-person
    capability: payments.transfer
    amount_gt: 10000
    approvals: 2
  - id: one-person
    capability: payments.transfer
    amount_gt: 500
    approvers: [ops1, ops2]
allow:
  - capability: payments.transfer
    amount_gte: 0.01
    amount_lte: 500
",
        ops1().public_key(),
        ops2().public_key(),
        ops3().public_key()
    )
}

struct Setup {
    dir: TempDir,
    policy: PathBuf,
    rt: ActionRuntime,
}

fn setup(name: &str) -> Setup {
    let dir = TempDir::new(name);
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, policy_text()).unwrap();
    let state = dir.path().join("state");
    let rt = ActionRuntime::builder(&policy)
        .state_dir(&state)
        .build()
        .unwrap();
    Setup { dir, policy, rt }
}

impl Setup {
    fn state(&self) -> PathBuf {
        self.dir.path().join("state")
    }
}

fn transfer(amount: &str) -> ActionEvent {
    super::transfer(amount, "vendor-7")
}

fn refused(result: Result<impl std::fmt::Debug, OperatorError>, says: &str) {
    match result {
        Err(OperatorError::Refused(why)) => assert!(why.to_string().contains(says), "{why}"),
        other => panic!("expected a refusal saying {says:?}, got {other:?}"),
    }
}

#[test]
fn approvals_without_a_listed_eligible_key_are_refused_and_record_nothing() {
    let s = setup("signed-refusals");
    let held = s.rt.execute(&transfer("2500"));
    assert_eq!(held.decision, DecisionKind::RequireApproval);
    assert_eq!(held.rule.as_deref(), Some("one-person"));
    let records = s.rt.ledger().records().unwrap().len();

    // By name only: the policy lists approvers, so a name proves nothing.
    refused(s.rt.approve("T-1", "cfo@corp"), "operator key (--key)");
    // A key the policy does not list.
    refused(
        s.rt.approve("T-1", &mallory()),
        "may not sign for rule one-person",
    );
    // A listed key that is not eligible for this rule.
    refused(
        s.rt.approve("T-1", &ops3()),
        "may not sign for rule one-person",
    );
    // A key file that claims a listed name does not make it that approver.
    refused(
        s.rt.approve("T-1", &key("ops1", 66)),
        "may not sign for rule one-person",
    );
    refused(s.rt.reject("T-1", "cfo@corp"), "operator key (--key)");
    // Callers branch on the kind of refusal, not on its words.
    assert!(matches!(
        s.rt.approve("T-1", "cfo@corp"),
        Err(OperatorError::Refused(capfence::Refusal::SignatureNeeded { ref rule, approvals: 1, .. }))
            if rule == "one-person"
    ));
    assert!(matches!(
        s.rt.approve("T-1", &mallory()),
        Err(OperatorError::Refused(capfence::Refusal::NotAnApproverOfRule { ref key, .. }))
            if key == "mallory"
    ));
    assert_eq!(s.rt.ledger().records().unwrap().len(), records);
    assert_eq!(
        s.rt.ledger().tickets().unwrap()[0].status,
        TicketStatus::Pending
    );
    let again = s.rt.execute(&transfer("2500"));
    assert!(!again.authorized);
    assert_eq!(again.approval_id.as_deref(), Some("T-1"));

    // An eligible key lets it through, once.
    let outcome = s.rt.approve("T-1", &ops2()).unwrap();
    assert_eq!(outcome.ticket.status, TicketStatus::Approved);
    assert_eq!(outcome.approvals, ["ops2"]);
    let v = s.rt.execute(&transfer("2500"));
    assert!(v.authorized, "{v:?}");
    assert!(v.reason.contains("approved by ops2"), "{}", v.reason);
    assert!(!s.rt.execute(&transfer("2500")).authorized);
    s.rt.verify().unwrap();
}

#[test]
fn two_person_rule_needs_two_distinct_approvers() {
    let s = setup("signed-quorum");
    let held = s.rt.execute(&transfer("20000"));
    assert_eq!(held.rule.as_deref(), Some("two-person"));
    let first = s.rt.approve("T-1", &ops1()).unwrap();
    assert_eq!(first.ticket.status, TicketStatus::Pending);
    assert_eq!((first.approvals.len(), first.needed), (1, 2));
    // One approval of two: still held.
    let v = s.rt.execute(&transfer("20000"));
    assert!(!v.authorized);
    assert_eq!(v.approval_id.as_deref(), Some("T-1"));
    // The same approver again counts once, and is refused.
    refused(s.rt.approve("T-1", &ops1()), "already approved T-1");
    assert!(!s.rt.execute(&transfer("20000")).authorized);
    // A second, distinct approver completes the quorum.
    let second = s.rt.approve("T-1", &ops3()).unwrap();
    assert_eq!(second.ticket.status, TicketStatus::Approved);
    assert_eq!(second.approvals, ["ops1", "ops3"]);
    let v = s.rt.execute(&transfer("20000"));
    assert!(v.authorized, "{v:?}");
    assert!(v.reason.contains("approved by ops1, ops3"), "{}", v.reason);
    // The ticket is spent; a different amount was never approved.
    assert!(!s.rt.execute(&transfer("20000")).authorized);
    assert!(!s.rt.execute(&transfer("20001")).authorized);
    s.rt.verify().unwrap();
}

#[test]
fn a_rejection_needs_an_eligible_key_and_then_denies() {
    let s = setup("signed-reject");
    s.rt.execute(&transfer("20000"));
    refused(s.rt.reject("T-1", &mallory()), "may not sign");
    s.rt.reject("T-1", &ops2()).unwrap();
    let v = s.rt.execute(&transfer("20000"));
    assert_eq!(v.decision, DecisionKind::Deny);
    assert!(v.reason.contains("rejected by ops2"), "{}", v.reason);
    let late = s.rt.approve("T-1", &ops1());
    assert!(
        matches!(&late, Err(e @ OperatorError::NotPending { .. }) if e.to_string().contains("not pending")),
        "{late:?}"
    );
    s.rt.verify().unwrap();
}

#[test]
fn grants_must_be_signed_by_an_eligible_approver_and_never_stand_in_for_two() {
    let s = setup("signed-grants");
    let hour = Duration::from_secs(3600);
    refused(
        s.rt.grant_capability(
            "treasury-agent",
            "payments.transfer.production",
            "ops",
            hour,
        ),
        "must be signed",
    );
    refused(
        s.rt.grant(
            "treasury-agent",
            "payments.transfer",
            "production",
            &ops3(),
            hour,
            GrantLimits::default(),
        ),
        "may not sign grants",
    );
    let g =
        s.rt.grant(
            "treasury-agent",
            "payments.transfer",
            "production",
            &ops1(),
            hour,
            GrantLimits::default(),
        )
        .unwrap();
    assert_eq!(g.granted_by, "ops1");
    let v = s.rt.execute(&transfer("2500"));
    assert!(v.authorized, "{v:?}");
    assert!(v.reason.contains("grant G-1 from ops1"), "{}", v.reason);
    // A grant is one signature: it never satisfies the two-person rule.
    let big = s.rt.execute(&transfer("20000"));
    assert!(!big.authorized);
    assert_eq!(big.decision, DecisionKind::RequireApproval);
    // A signed grant is revoked with a signature too.
    refused(s.rt.revoke("G-1", "ops1"), "must be signed too");
    refused(s.rt.revoke("G-1", &mallory()), "not among the approvers");
    let revoked = s.rt.revoke("G-1", &ops3()).unwrap();
    assert_eq!(revoked.revoked_by.as_deref(), Some("ops3"));
    assert!(!s.rt.execute(&transfer("2500")).authorized);
    s.rt.verify().unwrap();
}

/// Appends `record` to the chain with SQL, sealed onto the head: what a
/// process running as the same user could do without any key.
fn forge_append(state: &Path, mut record: AuditRecord) {
    let db = sql(state);
    let (seq, prev): (i64, String) = db
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    record.seq = u64::try_from(seq).unwrap() + 1;
    record.prev_hash = prev.clone();
    record.hash = record.compute_hash();
    insert_record(&db, &record);
}

/// The approve record of ticket `label`, as the ledger wrote it.
fn approve_record(rt: &ActionRuntime, label: &str) -> AuditRecord {
    rt.ledger()
        .records()
        .unwrap()
        .into_iter()
        .find(|r| r.decision.as_str() == "approve" && r.approval_id.as_deref() == Some(label))
        .unwrap()
}

#[test]
fn forged_rows_and_forged_chain_records_never_authorize() {
    let s = setup("signed-forgery");
    // A real, signed approval of T-1 to copy from.
    s.rt.execute(&transfer("2500"));
    s.rt.approve("T-1", &ops1()).unwrap();
    let genuine = approve_record(&s.rt, "T-1");
    // The attacker's own transfer, held as T-2.
    let held = s.rt.execute(&transfer("9000"));
    assert_eq!(held.approval_id.as_deref(), Some("T-2"));

    // 1. The ticket row set to approved with SQL.
    sql(&s.state())
        .execute(
            "UPDATE tickets SET status = 'approved', decided_by = 'ops1' WHERE id = 2",
            [],
        )
        .unwrap();
    assert!(!s.rt.execute(&transfer("9000")).authorized);

    // 2. A hash-consistent approve record signed with the attacker's own key,
    //    claiming the name ops1.
    let mut forged = genuine.clone();
    forged.approval_id = Some("T-2".into());
    let evil = key("ops1", 66);
    forged.payload = serde_json::json!({
        "signer": "ops1", "key": evil.public_key(), "signature": evil.sign(b"anything"),
        "quorum": 1, "expires_at": "2099-01-01T00:00:00.000000Z",
    })
    .to_string();
    forge_append(&s.state(), forged);
    assert!(!s.rt.execute(&transfer("9000")).authorized);

    // 3. ops1's genuine signature (over T-1) replayed onto T-2.
    let mut replayed = genuine.clone();
    replayed.approval_id = Some("T-2".into());
    forge_append(&s.state(), replayed);
    let v = s.rt.execute(&transfer("9000"));
    assert!(!v.authorized, "{v:?}");

    // 4. ops1's genuine key and a signature by another key.
    let mut wrong_sig = genuine;
    wrong_sig.approval_id = Some("T-2".into());
    let mut body: serde_json::Value = serde_json::from_str(&wrong_sig.payload).unwrap();
    body["signature"] = serde_json::json!(mallory().sign(b"capfence"));
    wrong_sig.payload = body.to_string();
    forge_append(&s.state(), wrong_sig);
    assert!(!s.rt.execute(&transfer("9000")).authorized);

    // verify names the first forged record.
    let err = s.rt.verify().unwrap_err();
    assert!(matches!(err, VerifyError::Approval(_)), "{err}");
}

#[test]
fn verify_names_the_record_whose_signature_fails() {
    let s = setup("signed-verify");
    s.rt.execute(&transfer("20000"));
    s.rt.approve("T-1", &ops1()).unwrap();
    s.rt.approve("T-1", &ops2()).unwrap();
    assert!(s.rt.execute(&transfer("20000")).authorized);
    s.rt.verify().unwrap();
    let records = s.rt.ledger().records().unwrap();
    let target = records
        .iter()
        .find(|r| r.decision.as_str() == "approve" && r.actor.as_deref() == Some("ops2"))
        .unwrap()
        .clone();

    // One signature byte flipped in place: the record's hash no longer holds.
    let state = s.state();
    let flipped = flip_signature_byte(&target.payload);
    sql(&state)
        .execute(
            "UPDATE audit SET payload = ?1 WHERE seq = ?2",
            rusqlite::params![flipped, i64::try_from(target.seq).unwrap()],
        )
        .unwrap();
    let err = s.rt.verify().unwrap_err();
    assert!(matches!(err, VerifyError::Chain(_)), "{err}");

    // The same flip with the chain re-sealed from there on (no secret is
    // needed for that): the signature itself fails, and verify names it.
    let mut prev = records
        .iter()
        .find(|r| r.seq + 1 == target.seq)
        .unwrap()
        .hash
        .clone();
    let db = sql(&state);
    for mut r in records.into_iter().filter(|r| r.seq >= target.seq) {
        if r.seq == target.seq {
            r.payload = flipped.clone();
        }
        r.prev_hash = prev.clone();
        r.hash = r.compute_hash();
        prev = r.hash.clone();
        insert_record(&db, &r);
    }
    let err = s.rt.verify().unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains(&format!("record {} (approve)", target.seq))
            && text.contains("signature by `ops2` does not verify"),
        "{text}"
    );
    // And the CLI says so, exit 1.
    let out = capfence(&state, &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("does not verify"), "{}", stdout(&out));
}

fn flip_signature_byte(payload: &str) -> String {
    let mut body: serde_json::Value = serde_json::from_str(payload).unwrap();
    let sig = body["signature"].as_str().unwrap().to_owned();
    // Change one base64 character in the middle: one flipped byte.
    let mut chars: Vec<char> = sig.chars().collect();
    let i = chars.len() / 2;
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    body["signature"] = serde_json::json!(chars.into_iter().collect::<String>());
    body.to_string()
}

#[test]
fn an_unchanged_policy_digest_covers_the_approvers() {
    let text = policy_text();
    let a = capfence::Policy::parse(&text, "a.yaml").unwrap();
    let swapped = text.replace(&ops3().public_key(), &mallory().public_key());
    let b = capfence::Policy::parse(&swapped, "b.yaml").unwrap();
    assert_ne!(a.digest, b.digest);
    let quorum = text.replace("approvals: 2", "approvals: 1");
    let c = capfence::Policy::parse(&quorum, "c.yaml").unwrap();
    assert_ne!(a.digest, c.digest);
}

fn capfence(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

fn capfence_in(state: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(state)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    if let Err(e) = child.stdin.take().unwrap().write_all(stdin.as_bytes()) {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe);
    }
    child.wait_with_output().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn operator_keys_from_the_command_line() {
    let dir = TempDir::new("keys-cli");
    let file = dir.path().join("ops1.key");
    let f = file.to_str().unwrap();
    let o = capfence(dir.path(), &["keys", "new", "--name", "ops1", "--out", f]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let line = stdout(&o);
    assert!(line.starts_with("ops1: ed25519:"), "{line}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }
    let before = std::fs::read(&file).unwrap();
    // Never overwritten.
    let o = capfence(dir.path(), &["keys", "new", "--name", "ops9", "--out", f]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&file).unwrap(), before);
    // `show` prints the same public line; the public key is what a policy takes.
    let o = capfence(dir.path(), &["keys", "show", f]);
    assert_eq!(stdout(&o), line);
    let public = line.trim().strip_prefix("ops1: ").unwrap();
    assert_eq!(
        capfence::OperatorKey::load(&file).unwrap().public_key(),
        public
    );
    // A key file others can read is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let o = capfence(dir.path(), &["keys", "show", f]);
        assert_eq!(o.status.code(), Some(2));
        assert!(stderr(&o).contains("chmod 600"), "{}", stderr(&o));
    }
    // Bad names are refused before anything is written.
    let odd = dir.path().join("odd.key");
    let o = capfence(
        dir.path(),
        &[
            "keys",
            "new",
            "--name",
            "ops 1",
            "--out",
            odd.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(2));
    assert!(!odd.exists());
}

#[test]
fn two_operators_approve_from_the_command_line() {
    let s = setup("signed-cli");
    let state = s.state();
    let policy = s.policy.to_str().unwrap();
    let keys: Vec<PathBuf> = [ops1(), ops2(), mallory()]
        .iter()
        .map(|k| {
            let path = s
                .dir
                .path()
                .join(format!("{}-{}.key", k.name(), k.public_key().len()));
            k.write_new(&path).unwrap();
            path
        })
        .collect();
    let k = |i: usize| keys[i].to_str().unwrap().to_owned();
    let event = r#"{"actor":"treasury-agent","resource":"payments","action":"transfer","environment":"production","risk":"high","payload":{"amount":"25000.00","destination":"vendor-7"}}"#;
    let decide = || -> serde_json::Value {
        let o = capfence_in(
            &state,
            &["decide", "--policy", policy],
            &format!("{event}\n"),
        );
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        serde_json::from_str(stdout(&o).trim()).unwrap()
    };
    let v = decide();
    assert_eq!(v["decision"], "require_approval");
    assert_eq!(v["approval_id"], "T-1");
    // No key: refused, exit 1, nothing recorded.
    let o = capfence(&state, &["approvals", "approve", "T-1", "--by", "ops1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("operator key (--key)"),
        "{}",
        stderr(&o)
    );
    // An unlisted key: refused.
    let o = capfence(&state, &["approvals", "approve", "T-1", "--key", &k(2)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("may not sign"), "{}", stderr(&o));
    // The first of two.
    let o = capfence(&state, &["approvals", "approve", "T-1", "--key", &k(0)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("1 of 2 approvals"), "{}", stdout(&o));
    assert_eq!(decide()["authorized"], false);
    // The same key again: refused.
    let o = capfence(&state, &["approvals", "approve", "T-1", "--key", &k(0)]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("already approved"), "{}", stderr(&o));
    // The second, with the policy named: approved.
    let o = capfence(
        &state,
        &[
            "approvals",
            "approve",
            "T-1",
            "--key",
            &k(1),
            "--policy",
            policy,
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("approved T-1"), "{}", stdout(&o));
    let v = decide();
    assert_eq!(v["authorized"], true, "{v}");
    let o = capfence(&state, &["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));

    // Grants: unsigned refused; signed needs --policy; signed with it works.
    let grant = |extra: &[&str]| {
        let mut args = vec![
            "approvals",
            "grant",
            "--actor",
            "treasury-agent",
            "--capability",
            "payments.transfer.production",
            "--duration",
            "1h",
        ];
        args.extend_from_slice(extra);
        capfence(&state, &args)
    };
    let o = grant(&["--granted-by", "ops1"]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("must be signed"), "{}", stderr(&o));
    let o = grant(&["--key", &k(0)]);
    assert_eq!(o.status.code(), Some(2));
    let o = grant(&["--key", &k(0), "--policy", policy]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = capfence(&state, &["approvals", "revoke", "G-1", "--by", "ops1"]);
    assert_eq!(o.status.code(), Some(1));
    let o = capfence(&state, &["approvals", "revoke", "G-1", "--key", &k(1)]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = capfence(&state, &["verify"]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
}

#[test]
fn an_ineligible_key_and_a_signed_rejection_from_the_command_line() {
    let s = setup("signed-cli-reject");
    let state = s.state();
    let policy = s.policy.to_str().unwrap();
    let path = |k: &OperatorKey| {
        let p = s.dir.path().join(format!("{}.key", k.name()));
        k.write_new(&p).unwrap();
        p
    };
    let (k2, k3) = (path(&ops2()), path(&ops3()));
    let event = r#"{"actor":"treasury-agent","resource":"payments","action":"transfer","environment":"production","risk":"high","payload":{"amount":"2500","destination":"vendor-7"}}"#;
    let decide = || -> serde_json::Value {
        let o = capfence_in(
            &state,
            &["decide", "--policy", policy],
            &format!("{event}\n"),
        );
        serde_json::from_str(stdout(&o).trim()).unwrap()
    };
    assert_eq!(decide()["rule"], "one-person");
    // ops3 is listed, but not for this rule.
    let o = capfence(
        &state,
        &["approvals", "approve", "T-1", "--key", k3.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("may not sign for rule one-person"),
        "{}",
        stderr(&o)
    );
    let o = capfence(
        &state,
        &["approvals", "reject", "T-1", "--key", k2.to_str().unwrap()],
    );
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stdout(&o).contains("rejected T-1"), "{}", stdout(&o));
    let v = decide();
    assert_eq!(v["decision"], "deny");
    assert!(
        v["reason"].as_str().unwrap().contains("rejected by ops2"),
        "{v}"
    );
    assert_eq!(capfence(&state, &["verify"]).status.code(), Some(0));
}

/// A signature made where the key is (the console's page) approves only
/// over the statement the ledger builds: the page fetches the statement,
/// signs it, and the ledger checks the signature against its own bytes. A
/// signature over a statement with any field changed, or by a key the rule
/// does not list, is refused and nothing is recorded.
#[test]
fn a_presigned_approval_counts_only_over_the_ledgers_statement() {
    use capfence::ledger::Presigned;
    let s = setup("signed-presigned");
    s.rt.execute(&transfer("20000"));
    let before = s.rt.verify().unwrap().0;
    let ops1 = ops1();
    let statement =
        s.rt.ticket_statement("T-1", true, &ops1.public_key())
            .unwrap();
    let text = String::from_utf8(statement.clone()).unwrap();
    assert!(
        text.starts_with("capfence-ticket-v1\naction:7:approve\nticket:3:T-1\n"),
        "{text}"
    );
    assert!(
        text.contains("quorum:1:2\n") && text.ends_with("signer:4:ops1\n"),
        "{text}"
    );
    assert_eq!(s.rt.verify().unwrap().0, before, "asking records nothing");

    // The page signed other bytes: the quorum changed on the way.
    let tampered = text.replace("quorum:1:2\n", "quorum:1:1\n");
    let forged = Presigned {
        public_key: ops1.public_key(),
        signature: ops1.sign(tampered.as_bytes()),
    };
    refused(
        s.rt.approve("T-1", &forged),
        "does not verify over the statement",
    );
    // Another key's signature over the right bytes, claiming ops1's key.
    let stolen = Presigned {
        public_key: ops1.public_key(),
        signature: mallory().sign(&statement),
    };
    refused(s.rt.approve("T-1", &stolen), "does not verify");
    assert_eq!(s.rt.verify().unwrap().0, before, "refusals record nothing");
    // An approval statement signed as a rejection is refused too.
    let reject = Presigned {
        public_key: ops1.public_key(),
        signature: ops1.sign(&statement),
    };
    refused(s.rt.reject("T-1", &reject), "does not verify");
    // Not an approver of the rule: no statement to sign.
    assert!(
        s.rt.ticket_statement("T-1", true, &mallory().public_key())
            .is_err()
    );

    let signed = Presigned {
        public_key: ops1.public_key(),
        signature: ops1.sign(&statement),
    };
    let first = s.rt.approve("T-1", &signed).unwrap();
    assert_eq!((first.approvals.len(), first.needed), (1, 2));
    let ops3 = ops3();
    let second = Presigned {
        public_key: ops3.public_key(),
        signature: ops3.sign(
            &s.rt
                .ticket_statement("T-1", true, &ops3.public_key())
                .unwrap(),
        ),
    };
    assert_eq!(
        s.rt.approve("T-1", &second).unwrap().ticket.status,
        TicketStatus::Approved
    );
    assert!(s.rt.execute(&transfer("20000")).authorized);
    s.rt.verify().unwrap();
}

/// A refused operator action keeps nothing it wrote before the refusal: a
/// grant whose presigned signature does not verify leaves no grant row (the
/// row is written before the statement that names its id is signed).
#[test]
fn a_refused_grant_leaves_no_row() {
    use capfence::ledger::Presigned;
    let s = setup("signed-refused-grant");
    let before = s.rt.verify().unwrap().0;
    let bogus = Presigned {
        public_key: ops1().public_key(),
        signature: ops1().sign(b"not the grant's statement"),
    };
    let refused_grant = s.rt.grant(
        "treasury-agent",
        "payments.transfer",
        "production",
        &bogus,
        Duration::from_secs(60),
        GrantLimits::default(),
    );
    refused(refused_grant, "does not verify");
    assert!(s.rt.ledger().grants().unwrap().is_empty(), "no row kept");
    assert_eq!(s.rt.verify().unwrap().0, before, "no record");
    // And asking for a revoke statement of an unsigned grant revokes nothing.
    assert!(s.rt.revoke_statement("G-1", &ops1().public_key()).is_err());
}
