//! The chain is the source of truth for approvals: ticket and grant rows
//! written with SQL never authorize, and `verify` names them.

use std::process::{Command, Output};

use capfence::DecisionKind;

use super::{TempDir, runtime, sql, transfer};

fn capfence(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// A grant row for the agent written with SQL, never by an operator.
fn forge_grant(dir: &std::path::Path) {
    sql(dir)
        .execute(
            "INSERT INTO grants (actor, capability, environment, granted_by, created_at, \
             expires_at, caps, uses_left, revoked_by) VALUES ('treasury-agent', \
             'payments.transfer', 'production', 'cfo@corp', 0, 9999999999999999, '', NULL, NULL)",
            [],
        )
        .unwrap();
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn a_ticket_row_set_to_approved_with_sql_never_authorizes() {
    let dir = TempDir::new("forged-ticket");
    let rt = runtime(dir.path());
    let held = rt.execute(&transfer("9000", "attacker-1"));
    assert_eq!(held.approval_id.as_deref(), Some("T-1"));
    sql(dir.path())
        .execute(
            "UPDATE tickets SET status = 'approved', decided_by = 'cfo@corp' WHERE id = 1",
            [],
        )
        .unwrap();
    let again = rt.execute(&transfer("9000", "attacker-1"));
    assert!(!again.authorized, "{again:?}");
    assert_eq!(again.decision, DecisionKind::RequireApproval);
    let out = capfence(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(
        stdout(&out).contains("ticket T-1: its row says approved, but the chain"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_grant_row_inserted_with_sql_never_authorizes() {
    let dir = TempDir::new("forged-grant");
    let rt = runtime(dir.path());
    assert!(!rt.execute(&transfer("9500", "attacker-1")).authorized);
    forge_grant(dir.path());
    let v = rt.execute(&transfer("9500", "attacker-1"));
    assert!(!v.authorized, "{v:?}");
    let out = capfence(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).contains("grant G-1: the chain never granted it"),
        "{}",
        stdout(&out)
    );
    // Revoking the forged row is refused too: the chain does not know it.
    assert!(rt.revoke("G-1", "ops").is_err());
}

#[test]
fn a_consumed_ticket_set_back_to_approved_stays_spent() {
    let dir = TempDir::new("replayed-ticket");
    let rt = runtime(dir.path());
    rt.execute(&transfer("2500", "vendor-7"));
    rt.approve("T-1", "ops").unwrap();
    assert!(rt.execute(&transfer("2500", "vendor-7")).authorized);
    sql(dir.path())
        .execute("UPDATE tickets SET status = 'approved' WHERE id = 1", [])
        .unwrap();
    let v = rt.execute(&transfer("2500", "vendor-7"));
    assert!(!v.authorized, "a used ticket authorizes once: {v:?}");
    let out = capfence(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("ticket T-1"), "{}", stdout(&out));
}

#[test]
fn a_grant_row_with_more_uses_is_held_to_the_chain() {
    let dir = TempDir::new("grant-uses");
    let rt = runtime(dir.path());
    let limits = capfence::GrantLimits {
        uses: Some(1),
        ..capfence::GrantLimits::default()
    };
    rt.grant(
        "treasury-agent",
        "payments.transfer",
        "production",
        "ops",
        std::time::Duration::from_secs(60),
        limits,
    )
    .unwrap();
    assert!(rt.execute(&transfer("700", "v-1")).authorized);
    sql(dir.path())
        .execute(
            "UPDATE grants SET uses_left = 100, expires_at = 9999999999999999",
            [],
        )
        .unwrap();
    assert!(!rt.execute(&transfer("700", "v-1")).authorized);
}

#[test]
fn restoring_the_whole_ledger_is_a_rollback_only_a_kept_head_reveals() {
    let dir = TempDir::new("restored");
    let rt = runtime(dir.path());
    rt.execute(&transfer("2500", "vendor-7"));
    rt.approve("T-1", "ops").unwrap();
    drop(rt);
    let copy = dir.path().join("ledger.copy");
    std::fs::copy(dir.path().join("ledger.db"), &copy).unwrap();
    let rt = runtime(dir.path());
    assert!(rt.execute(&transfer("2500", "vendor-7")).authorized);
    let head = rt.ledger().head().unwrap().1;
    drop(rt);
    std::fs::copy(&copy, dir.path().join("ledger.db")).unwrap();
    // The older file is a consistent older ledger: it verifies on its own...
    assert_eq!(capfence(dir.path(), &["verify"]).status.code(), Some(0));
    // ...and only the head kept elsewhere shows the rollback.
    let out = capfence(dir.path(), &["verify", "--head", &head]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
}

/// An operator acting on a row the chain does not vouch for is told so as a
/// type a console can branch on (a sign of tampering, not a typo).
#[test]
fn acting_on_a_forged_row_is_a_typed_unvouched_error() {
    use capfence::OperatorError;
    use capfence::ledger::{Approval, Invalid};
    let dir = TempDir::new("forged-typed");
    let rt = runtime(dir.path());
    assert!(!rt.execute(&transfer("9500", "attacker-1")).authorized);
    forge_grant(dir.path());
    let revoked = rt.revoke("G-1", "ops@corp");
    assert!(
        matches!(
            &revoked,
            Err(OperatorError::Invalid(Invalid::Unvouched { kind: Approval::Grant, id, .. }))
                if id == "G-1"
        ),
        "{revoked:?}"
    );
    assert!(matches!(
        rt.approve("T-1", " "),
        Err(OperatorError::Invalid(Invalid::NoOperatorName))
    ));
}
