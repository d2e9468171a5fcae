//! Signed approvals and the two-person rule, end to end: two operators make
//! keys, the policy lists them, a $2,500 transfer needs one signature and a
//! $7,500 transfer needs both; an unsigned approval and one approver signing
//! twice are refused; the audit chain, signatures included, verifies.
//!
//! Run from the repository root: `cargo run --example two_person`. Keys,
//! policy and ledger live in a fresh directory under the system temp dir,
//! removed at the end.

use std::path::Path;
use std::process::ExitCode;

use capfence::ledger::TicketOutcome;
use capfence::{
    ActionEvent, ActionRuntime, Decimal, DecisionKind, OperatorKey, Risk, Verdict, payload,
};

/// The case study's thresholds, with operators listed and a second,
/// higher threshold that takes two of them.
const POLICY: &str = "policy_name: Treasury with the two-person rule
approvers:
  ops1: OPS1_KEY
  ops2: OPS2_KEY
deny:
  - capability: payments.transfer
    amount_gt: 10000.0
require_approval:
  - id: two-person
    capability: payments.transfer
    amount_gt: 5000.0
    approvals: 2
  - id: one-person
    capability: payments.transfer
    amount_gt: 500.0
allow:
  - capability: payments.transfer
    amount_gte: 0.01
    amount_lte: 500.0
";

fn transfer(amount: Decimal) -> ActionEvent {
    ActionEvent::create(
        "treasury-agent",
        "transfer",
        "payments",
        "production",
        Risk::High,
        payload! {"amount" => amount, "destination" => "vendor-7"},
    )
}

fn show(label: &str, v: &Verdict) {
    println!(
        "{label}: Authorized={} | Decision={} | Rule={} | Ticket={} | {}",
        v.authorized,
        v.decision.as_str(),
        v.rule.as_deref().unwrap_or("-"),
        v.approval_id.as_deref().unwrap_or("-"),
        v.reason
    );
}

fn signed(who: &str, outcome: &TicketOutcome) {
    println!(
        "{who} signed: {} of {} approvals",
        outcome.approvals.len(),
        outcome.needed
    );
}

fn run(dir: &Path) -> Result<bool, Box<dyn std::error::Error>> {
    // Each operator makes a key on their own machine; the policy gets the
    // public halves (what `capfence keys new` prints).
    let ops1 = OperatorKey::generate("ops1")?;
    let ops2 = OperatorKey::generate("ops2")?;
    ops1.write_new(&dir.join("ops1.key"))?;
    ops2.write_new(&dir.join("ops2.key"))?;
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        POLICY
            .replace("OPS1_KEY", &ops1.public_key())
            .replace("OPS2_KEY", &ops2.public_key()),
    )?;
    let runtime = ActionRuntime::builder(&policy)
        .state_dir(dir.join("state"))
        .build()?;
    println!("Operators ops1 and ops2 made keys; the policy lists both.");

    println!("\n--- A $2,500 transfer: one signed approval ---");
    let small = transfer(Decimal::new(2500, 0));
    let v = runtime.execute(&small);
    show("Verdict", &v);
    let ticket = v.approval_id.clone().unwrap_or_default();
    match runtime.approve(&ticket, "someone") {
        Err(e) => println!("Unsigned approval refused: {e}"),
        Ok(_) => return Ok(false),
    }
    signed("ops1", &runtime.approve(&ticket, &ops1)?);
    let retry = runtime.execute(&small);
    show("Retry", &retry);
    if !retry.authorized {
        return Ok(false);
    }

    println!("\n--- A $7,500 transfer: two operators must sign ---");
    let large = transfer(Decimal::new(7500, 0));
    let v = runtime.execute(&large);
    show("Verdict", &v);
    let ticket = v.approval_id.clone().unwrap_or_default();
    signed("ops1", &runtime.approve(&ticket, &ops1)?);
    let early = runtime.execute(&large);
    show("Retry after one", &early);
    match runtime.approve(&ticket, &ops1) {
        Err(e) => println!("ops1 signing again refused: {e}"),
        Ok(_) => return Ok(false),
    }
    signed("ops2", &runtime.approve(&ticket, &ops2)?);
    let retry = runtime.execute(&large);
    show("Retry after two", &retry);
    if early.authorized || !retry.authorized || retry.decision != DecisionKind::Allow {
        return Ok(false);
    }

    let (seq, hash) = runtime.verify()?;
    println!("\nAudit chain and signatures verified: {seq} records, head {seq} {hash}");
    Ok(true)
}

fn main() -> ExitCode {
    let dir = std::env::temp_dir().join(format!("capfence-two-person-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: cannot create {}: {e}", dir.display());
        return ExitCode::from(2);
    }
    let result = run(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("error: the story did not go as the policy says");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}
