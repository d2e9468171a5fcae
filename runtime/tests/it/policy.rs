//! The ledger's active policy: a runtime whose policy file was edited (or
//! swapped) denies every call, on the record, naming both digests; only an
//! operator activates another policy; `verify` holds the active-policy note
//! to the chain.

use std::path::Path;
use std::process::{Command, Output};

use capfence::{ActionRuntime, DecisionKind, OperatorError, RecordKind};

use super::{POLICY, TempDir, sql, transfer};

fn capfence(state: &Path, args: &[&str], stdin: &str) -> Output {
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(state)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let _ = child.stdin.take().unwrap().write_all(stdin.as_bytes());
    child.wait_with_output().unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

const SMALL: &str = r#"{"actor":"treasury-agent","resource":"payments","action":"transfer","environment":"production","risk":"low","payload":{"amount":120,"destination":"vendor-corp-123"}}"#;

#[test]
fn the_first_policy_is_activated_on_the_record() {
    let dir = TempDir::new("policy-first");
    let rt = ActionRuntime::builder(POLICY)
        .state_dir(dir.path())
        .build()
        .unwrap();
    assert!(rt.execute(&transfer("120", "vendor-corp-123")).authorized);
    let records = rt.ledger().records().unwrap();
    let first = &records[0];
    assert_eq!(first.decision, RecordKind::Activate);
    assert_eq!(first.actor.as_deref(), Some(capfence::ledger::FIRST_USE));
    assert_eq!(first.policy_digest.as_deref(), Some(rt.policy_digest()));
    let payload: serde_json::Value = serde_json::from_str(&first.payload).unwrap();
    assert_eq!(payload["digest"], rt.policy_digest());
    assert_eq!(
        payload["text"].as_str().unwrap(),
        std::fs::read_to_string(POLICY).unwrap(),
        "the full text"
    );
    let active = rt.ledger().active_policy().unwrap().unwrap();
    assert_eq!(
        (active.seq, active.digest.as_str()),
        (1, rt.policy_digest())
    );

    let o = capfence(dir.path(), &["policy", "show", "--text"], "");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let shown = text(&o);
    assert!(
        shown.contains(&format!("active: {}", rt.policy_digest())),
        "{shown}"
    );
    assert!(
        shown.contains("by capfence:first-use (record 1)"),
        "{shown}"
    );
    assert!(shown.contains("policy_name: Corporate Treasury"), "{shown}");
}

#[test]
fn a_runtime_on_an_edited_policy_file_denies_every_call() {
    let dir = TempDir::new("policy-edited");
    let file = dir.path().join("policy.yaml");
    let original = std::fs::read_to_string(POLICY).unwrap();
    std::fs::write(&file, &original).unwrap();
    let state = dir.path().join("state");
    let rt = ActionRuntime::builder(&file)
        .state_dir(&state)
        .build()
        .unwrap();
    assert!(rt.execute(&transfer("120", "vendor-corp-123")).authorized);
    let active = rt.policy_digest().to_owned();

    // The agent widens `allow` in the file and a runtime is restarted on it.
    let widened = original.replace("amount_lte: 500.0", "amount_lte: 50000.0");
    assert_ne!(widened, original);
    std::fs::write(&file, &widened).unwrap();
    let edited = ActionRuntime::builder(&file)
        .state_dir(&state)
        .build()
        .unwrap();
    let v = edited.execute(&transfer("120", "vendor-corp-123"));
    assert!(!v.authorized, "{v:?}");
    assert_eq!(v.decision, DecisionKind::Deny);
    assert!(v.reason.contains(edited.policy_digest()), "{}", v.reason);
    assert!(v.reason.contains(&active), "{}", v.reason);
    // Every call, whatever the file says of it.
    for amount in ["1", "2500", "15000"] {
        let v = edited.execute(&transfer(amount, "vendor-corp-123"));
        assert_eq!(v.decision, DecisionKind::Deny, "{amount}: {v:?}");
    }
    // On the record, under the edited file's digest; the chain verifies.
    let last = edited.ledger().records().unwrap().pop().unwrap();
    assert_eq!(last.decision, RecordKind::Decision(DecisionKind::Deny));
    assert_eq!(last.policy_digest.as_deref(), Some(edited.policy_digest()));
    edited.verify().unwrap();

    // The same through `capfence decide`.
    let o = capfence(
        &state,
        &["decide", "--policy", file.to_str().unwrap()],
        &format!("{SMALL}\n"),
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let verdict: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(verdict["decision"], "deny");
    assert!(
        verdict["reason"].as_str().unwrap().contains(&active),
        "{verdict}"
    );
    // The original runtime still decides.
    assert!(rt.execute(&transfer("120", "vendor-corp-123")).authorized);
}

#[test]
fn a_compiled_table_of_another_policy_denies_too() {
    static TABLE: &dyn capfence::Decide = &capfence::policy!("../policies/fintech_policy.yaml");
    let dir = TempDir::new("policy-table");
    let other = dir.path().join("other.yaml");
    std::fs::write(&other, "allow:\n  - capability: payments.transfer\n").unwrap();
    let first = ActionRuntime::builder(&other)
        .state_dir(dir.path())
        .build()
        .unwrap();
    assert!(first.execute(&transfer("120", "v")).authorized);
    let table = ActionRuntime::compiled_builder(TABLE)
        .state_dir(dir.path())
        .build()
        .unwrap();
    let v = table.execute(&transfer("120", "vendor-corp-123"));
    assert_eq!(v.decision, DecisionKind::Deny, "{v:?}");
    assert!(
        v.reason.contains("is not the ledger's active policy"),
        "{}",
        v.reason
    );
}

#[test]
fn only_an_operator_activates_another_policy() {
    let dir = TempDir::new("policy-activate");
    let file = dir.path().join("policy.yaml");
    std::fs::write(&file, std::fs::read_to_string(POLICY).unwrap()).unwrap();
    let state = dir.path().join("state");
    let rt = ActionRuntime::builder(&file)
        .state_dir(&state)
        .build()
        .unwrap();
    assert!(rt.execute(&transfer("120", "vendor-corp-123")).authorized);
    let next = dir.path().join("next.yaml");
    std::fs::write(
        &next,
        format!("{}# reviewed\n", std::fs::read_to_string(POLICY).unwrap()),
    )
    .unwrap();
    let next_rt = ActionRuntime::builder(&next)
        .state_dir(&state)
        .build()
        .unwrap();
    assert!(
        !next_rt
            .execute(&transfer("120", "vendor-corp-123"))
            .authorized
    );
    // The case-study policy lists no approvers: an operator's name will do.
    let o = capfence(
        &state,
        &[
            "policy",
            "activate",
            next.to_str().unwrap(),
            "--by",
            "ops@corp",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        next_rt
            .execute(&transfer("120", "vendor-corp-123"))
            .authorized
    );
    assert!(
        !rt.execute(&transfer("120", "vendor-corp-123")).authorized,
        "the old file no longer decides"
    );
    // Activating the active policy again is refused (exit 1).
    let o = capfence(
        &state,
        &[
            "policy",
            "activate",
            next.to_str().unwrap(),
            "--by",
            "ops@corp",
        ],
        "",
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let history = next_rt.ledger().policy_history().unwrap();
    assert_eq!(history.len(), 2);
    assert_eq!(history[1].by, "ops@corp");
    assert_eq!(history[1].digest, next_rt.policy_digest());
    assert_eq!(capfence(&state, &["verify"], "").status.code(), Some(0));

    // Under a policy that lists approvers, a name is not enough.
    let signed_state = dir.path().join("signed");
    let key = capfence::signing::OperatorKey::from_seed("ops1", [1; 32]).unwrap();
    let signed = dir.path().join("signed.yaml");
    std::fs::write(
        &signed,
        format!(
            "approvers:\n  ops1: {}\nallow:\n  - capability: payments.transfer\n",
            key.public_key()
        ),
    )
    .unwrap();
    let signed_rt = ActionRuntime::builder(&signed)
        .state_dir(&signed_state)
        .build()
        .unwrap();
    assert!(signed_rt.execute(&transfer("120", "v")).authorized);
    let wider = capfence::Policy::load(&file).unwrap();
    assert!(matches!(
        signed_rt.ledger().activate_unsigned(&wider, "mallory"),
        Err(OperatorError::Invalid(
            capfence::ledger::Invalid::PolicyChangeNeedsSignatures(_)
        ))
    ));
}

#[test]
fn verify_holds_the_active_policy_note_to_the_chain() {
    let dir = TempDir::new("policy-note");
    let rt = ActionRuntime::builder(POLICY)
        .state_dir(dir.path())
        .build()
        .unwrap();
    assert!(rt.execute(&transfer("120", "vendor-corp-123")).authorized);
    // The same-user attacker points the note at its own policy.
    let forged = "f".repeat(64);
    sql(dir.path())
        .execute(
            "UPDATE capfence_meta SET value = ?1 WHERE key LIKE '%policy.active%'",
            [format!("1 {forged}")],
        )
        .unwrap();
    let o = capfence(dir.path(), &["verify"], "");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("active-policy note"), "{}", text(&o));
    // A note naming a record the chain does not have (a seq beyond the
    // head) is no way around the check.
    sql(dir.path())
        .execute(
            "UPDATE capfence_meta SET value = ?1 WHERE key LIKE '%policy.active%'",
            [format!("99999 {forged}")],
        )
        .unwrap();
    let o = capfence(dir.path(), &["verify"], "");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no activation of it"), "{}", text(&o));
    // And the decision path denies every call while the note names no
    // activation of the policy it names.
    let v = rt.execute(&transfer("120", "vendor-corp-123"));
    assert!(!v.authorized, "{v:?}");
    assert!(v.reason.contains("active-policy note"), "{}", v.reason);
}

#[test]
fn the_mcp_proxy_on_an_edited_policy_file_refuses_every_call() {
    let dir = TempDir::new("policy-mcp");
    let file = dir.path().join("policy.yaml");
    let original = "tools:\n  send: payments.transfer\nallow:\n  - capability: payments.transfer\n    amount_lte: 500\n";
    std::fs::write(&file, original).unwrap();
    let state = dir.path().join("state");
    let rt = ActionRuntime::builder(&file)
        .state_dir(&state)
        .build()
        .unwrap();
    assert!(rt.execute(&transfer("120", "v")).authorized);
    std::fs::write(&file, original.replace("500", "50000")).unwrap();
    let call = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"send","arguments":{"amount":120}}}"#;
    // `cat` stands in for the server: nothing reaches it unless allowed.
    let o = capfence(
        &state,
        &["mcp-proxy", "--policy", file.to_str().unwrap(), "--", "cat"],
        &format!("{call}\n"),
    );
    let answer: serde_json::Value =
        serde_json::from_slice(o.stdout.split(|b| *b == b'\n').next().unwrap()).unwrap();
    assert_eq!(answer["id"], 1, "{}", text(&o));
    assert_eq!(answer["result"]["isError"], true, "{answer}");
    assert!(
        answer
            .to_string()
            .contains("is not the ledger's active policy"),
        "{answer}"
    );
    assert_eq!(
        o.stdout
            .split(|b| *b == b'\n')
            .filter(|l| !l.is_empty())
            .count(),
        1,
        "{}",
        text(&o)
    );
}

fn op(name: &str, seed: u8) -> capfence::signing::OperatorKey {
    capfence::signing::OperatorKey::from_seed(name, [seed; 32]).unwrap()
}

/// A signed treasury policy: ops1..ops3 listed; a change needs two of them
/// and a delay of an hour; transfers up to `limit` allowed.
fn signed_policy(limit: &str) -> String {
    format!(
        "approvers:\n  ops1: {}\n  ops2: {}\n  ops3: {}\npolicy_changes:\n  approvals: 2\n  delay: 1h\nallow:\n  - capability: payments.transfer\n    amount_lte: {limit}\n",
        op("ops1", 1).public_key(),
        op("ops2", 2).public_key(),
        op("ops3", 3).public_key()
    )
}

fn build(
    dir: &Path,
    name: &str,
    text: &str,
    clock: &std::sync::Arc<super::ManualClock>,
) -> ActionRuntime {
    let file = dir.join(name);
    std::fs::write(&file, text).unwrap();
    ActionRuntime::builder(&file)
        .state_dir(dir.join("state"))
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[test]
fn a_loosening_change_needs_the_active_policys_quorum_and_delay() {
    use capfence::ledger::Invalid;
    let dir = TempDir::new("policy-signed");
    let clock = std::sync::Arc::new(super::ManualClock::default());
    let active = build(dir.path(), "a.yaml", &signed_policy("500"), &clock);
    assert!(active.execute(&transfer("120", "v")).authorized);
    assert!(!active.execute(&transfer("2500", "v")).authorized);

    // The agent writes a looser policy, with its own key as an approver
    // that needs nobody else.
    let mallory = op("mallory", 66);
    let looser = format!(
        "approvers:\n  mallory: {}\nallow:\n  - capability: payments.transfer\n    amount_lte: 50000\n",
        mallory.public_key()
    );
    let next = build(dir.path(), "b.yaml", &looser, &clock);
    let b = capfence::Policy::load(dir.path().join("b.yaml")).unwrap();
    let ledger = active.ledger();
    let proposed = ledger.propose(&b, "agent").unwrap();
    let p = &proposed.proposal;
    assert_eq!(p.id, 1);
    assert!(
        p.loosens.iter().any(|l| l.contains("toward allow")),
        "{:?}",
        p.loosens
    );
    assert!(
        p.loosens.iter().any(|l| l.contains("approver `mallory`")),
        "{:?}",
        p.loosens
    );
    // Its own key is not the active policy's: refused.
    assert!(matches!(
        ledger.sign_proposal("P-1", &mallory),
        Err(OperatorError::Refused(capfence::Refusal::UnknownKey { .. }))
    ));
    ledger.sign_proposal("P-1", &op("ops1", 1)).unwrap();
    assert!(matches!(
        ledger.sign_proposal("P-1", &op("ops1", 1)),
        Err(OperatorError::Invalid(Invalid::AlreadySigned { .. }))
    ));
    assert!(matches!(
        ledger.activate_proposal("P-1"),
        Err(OperatorError::Invalid(Invalid::ProposalUnsigned {
            have: 1,
            needed: 2,
            ..
        }))
    ));
    ledger.sign_proposal("P-1", &op("ops2", 2)).unwrap();
    // Two signatures, but the delay has not passed.
    assert!(matches!(
        ledger.activate_proposal("P-1"),
        Err(OperatorError::Invalid(Invalid::ProposalDelayed { .. }))
    ));
    assert!(!next.execute(&transfer("2500", "v")).authorized);
    clock.advance(std::time::Duration::from_secs(3600));
    let activation = ledger.activate_proposal("P-1").unwrap();
    assert_eq!(activation.digest, b.digest);
    assert!(
        activation.reason.contains("ops1, ops2"),
        "{}",
        activation.reason
    );
    assert!(next.execute(&transfer("2500", "v")).authorized);
    assert!(
        !active.execute(&transfer("120", "v")).authorized,
        "the old policy decides nothing"
    );
    assert!(matches!(
        ledger.activate_proposal("P-1"),
        Err(OperatorError::Invalid(Invalid::ProposalDone(_)))
    ));
    active.verify().unwrap();
}

#[test]
fn a_change_that_only_tightens_needs_one_signature_and_no_delay() {
    let dir = TempDir::new("policy-tighten");
    let clock = std::sync::Arc::new(super::ManualClock::default());
    let active = build(dir.path(), "a.yaml", &signed_policy("500"), &clock);
    assert!(active.execute(&transfer("120", "v")).authorized);
    let tighter = build(dir.path(), "b.yaml", &signed_policy("100"), &clock);
    let b = capfence::Policy::load(dir.path().join("b.yaml")).unwrap();
    let proposed = active.ledger().propose(&b, "ops3").unwrap();
    assert!(
        proposed.proposal.loosens.is_empty(),
        "{:?}",
        proposed.proposal.loosens
    );
    active
        .ledger()
        .sign_proposal("P-1", &op("ops3", 3))
        .unwrap();
    active.ledger().activate_proposal("P-1").unwrap();
    assert!(!tighter.execute(&transfer("120", "v")).authorized);
    assert!(tighter.execute(&transfer("90", "v")).authorized);
    tighter.verify().unwrap();
    // A proposal of a change to a policy no longer active is stale.
    let a = capfence::Policy::load(dir.path().join("a.yaml")).unwrap();
    active.ledger().propose(&a, "ops3").unwrap();
    let again = active.ledger().propose(&b, "ops3");
    assert!(matches!(
        again,
        Err(OperatorError::Invalid(
            capfence::ledger::Invalid::AlreadyActive(_)
        ))
    ));
}

#[test]
fn verify_refuses_an_activation_that_skipped_its_proposal() {
    let dir = TempDir::new("policy-forged");
    let clock = std::sync::Arc::new(super::ManualClock::default());
    let active = build(dir.path(), "a.yaml", &signed_policy("500"), &clock);
    assert!(active.execute(&transfer("120", "v")).authorized);
    let _tighter = build(dir.path(), "b.yaml", &signed_policy("100"), &clock);
    let b = capfence::Policy::load(dir.path().join("b.yaml")).unwrap();
    active.ledger().propose(&b, "ops3").unwrap();
    active
        .ledger()
        .sign_proposal("P-1", &op("ops3", 3))
        .unwrap();
    active.ledger().activate_proposal("P-1").unwrap();
    active.verify().unwrap();
    // The same-user attacker rewrites the activation (the last record) so
    // it cites no proposal, and re-seals it: the chain links, but an
    // activation by name under a policy with approvers is refused.
    let last = active.ledger().records().unwrap().pop().unwrap();
    assert_eq!(last.decision, RecordKind::Activate);
    let mut view = last.view();
    view.approval_id = None;
    let hash = String::from_utf8(view.hash_hex(&mut Vec::new()).to_vec()).unwrap();
    sql(&dir.path().join("state"))
        .execute(
            "UPDATE audit SET approval_id = NULL, hash = ?1 WHERE seq = ?2",
            rusqlite::params![hash, last.seq as i64],
        )
        .unwrap();
    sql(&dir.path().join("state"))
        .execute(
            "UPDATE capfence_meta SET value = ?1 WHERE key LIKE '%policy.active%'",
            [format!("{} {}", last.seq, b.digest)],
        )
        .unwrap();
    let o = capfence(&dir.path().join("state"), &["verify"], "");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("activated by name while policy"),
        "{}",
        text(&o)
    );
}

#[test]
fn the_cli_proposes_signs_and_activates() {
    let dir = TempDir::new("policy-cli");
    let state = dir.path().join("state");
    let text_a = signed_policy("500").replace("  delay: 1h\n", "");
    std::fs::write(dir.path().join("a.yaml"), &text_a).unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&b, text_a.replace("amount_lte: 500", "amount_lte: 5000")).unwrap();
    let decide = |policy: &Path, amount: u32| {
        let line = format!(
            r#"{{"actor":"bot","capability":"payments.transfer","environment":"production","risk":"low","payload":{{"amount":{amount}}}}}"#
        );
        let o = capfence(
            &state,
            &["decide", "--policy", policy.to_str().unwrap()],
            &format!("{line}\n"),
        );
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["decision"].as_str().unwrap().to_owned()
    };
    assert_eq!(decide(&a, 120), "allow");
    assert_eq!(decide(&a, 2500), "deny");
    let o = capfence(
        &state,
        &["policy", "propose", b.to_str().unwrap(), "--by", "dev"],
        "",
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = text(&o);
    assert!(out.contains("proposed P-1"), "{out}");
    assert!(
        out.contains("deny -> allow (default -> allow[0]; toward allow)"),
        "{out}"
    );
    assert!(out.contains("direction: it loosens"), "{out}");
    assert!(out.contains("replay: of 2 calls"), "{out}");
    assert!(out.contains("deny -> allow: 1"), "{out}");
    for (name, seed) in [("ops1", 1u8), ("ops2", 2)] {
        let key = dir.path().join(format!("{name}.key"));
        op(name, seed).write_new(&key).unwrap();
        if name == "ops2" {
            // One signature is not enough: exit 1, nothing activated.
            let o = capfence(&state, &["policy", "activate", "P-1"], "");
            assert_eq!(o.status.code(), Some(1), "{}", text(&o));
            assert!(text(&o).contains("needs 2"), "{}", text(&o));
        }
        let o = capfence(
            &state,
            &["policy", "approve", "P-1", "--key", key.to_str().unwrap()],
            "",
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    }
    let o = capfence(&state, &["policy", "activate", "P-1"], "");
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(decide(&b, 2500), "allow");
    assert_eq!(decide(&a, 120), "deny");
    let o = capfence(&state, &["policy", "show"], "");
    assert!(text(&o).contains("P-1 by dev"), "{}", text(&o));
    assert!(
        text(&o).contains("signed by ops1, ops2; activated"),
        "{}",
        text(&o)
    );
    assert_eq!(capfence(&state, &["verify"], "").status.code(), Some(0));
}
