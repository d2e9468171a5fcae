//! New beneficiaries: the first payment to an account the agent has never
//! paid waits for a human; after an operator approves it and the payment
//! goes through, the account is known, and the next payment to it within
//! the usual limits needs nobody. A prompt-injected payment to an attacker's
//! fresh account is held like any first payment, however small.
//!
//! Run from the repository root: `cargo run --example new_payee`. The ledger
//! lives in a fresh directory under the system temp dir, removed at the end.

use std::process::ExitCode;

use capfence::{ActionEvent, ActionRuntime, Decimal, Outcome, Risk, Verdict, payload};

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/new_payee.yaml");

fn pay(runtime: &ActionRuntime, cents: i64, destination: &str) -> Verdict {
    let event = ActionEvent::create(
        "treasury-agent",
        "transfer",
        "payments",
        "production",
        Risk::Low,
        payload! {"amount" => Decimal::new(cents, 2), "destination" => destination},
    );
    runtime.execute(&event)
}

fn show(step: &str, verdict: &Verdict) {
    let ticket = verdict
        .approval_id
        .as_deref()
        .map(|t| format!(" ({t})"))
        .unwrap_or_default();
    println!(
        "{step}: {}{ticket} — {}",
        verdict.decision.as_str(),
        verdict.reason
    );
}

fn main() -> ExitCode {
    let state = std::env::temp_dir().join(format!("capfence-new-payee-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let runtime = match ActionRuntime::builder(POLICY).state_dir(&state).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let first = pay(&runtime, 42_000, "vendor-981");
    show("1. first payment to vendor-981 ($420.00)", &first);
    let Some(ticket) = first.approval_id.clone() else {
        println!("the first payment to a new account was not held");
        return ExitCode::from(1);
    };
    println!("[OPERATOR] $ capfence approvals approve {ticket} --by ops@corp");
    if let Err(e) = runtime.approve(&ticket, "ops@corp") {
        println!("approval failed: {e}");
        return ExitCode::from(1);
    }
    let retry = pay(&runtime, 42_000, "vendor-981");
    show("2. the approved payment", &retry);
    // The bank confirms the movement: the outcome names its reference.
    if let Some(seq) = retry.seq.filter(|_| retry.authorized) {
        let outcome = Outcome::Executed {
            reference: Some("BANK-5501".to_owned()),
            amount: None,
        };
        if let Err(e) = runtime.record_outcome(seq, &outcome) {
            println!("outcome not recorded: {e}");
            return ExitCode::from(1);
        }
        println!("   outcome: executed, reference BANK-5501");
    }
    show(
        "3. next invoice to vendor-981 ($310.00)",
        &pay(&runtime, 31_000, "vendor-981"),
    );
    show(
        "4. injected payment to attacker-acct-1 ($9.99)",
        &pay(&runtime, 999, "attacker-acct-1"),
    );
    match runtime.verify() {
        Ok((n, _)) => {
            println!("Audit chain verified: {n} records.");
            let _ = std::fs::remove_dir_all(&state);
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("Audit chain BROKEN: {e}");
            ExitCode::from(1)
        }
    }
}
