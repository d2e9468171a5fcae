//! The case study's demo in Rust: a $120 transfer goes through, a $15,000
//! transfer is blocked, a $2,500 transfer waits for a human, an operator grants
//! a 30-second capability, the retry goes through, and the audit chain verifies.
//!
//! Run from the repository root: `cargo run --example fintech_demo`.
//! State lives in `.capfence/` (or `$CAPFENCE_STATE`); running it again
//! continues the same chain.

use std::process::ExitCode;
use std::time::Duration;

use capfence::{ActionEvent, ActionRuntime, Decimal, DecisionKind, Risk, payload};

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/fintech_policy.yaml");

/// The mock gateway that would move real money.
fn simulate_payment_gateway(account: &str, amount: Decimal) -> String {
    println!("[BANK GATEWAY] Successfully transferred ${amount:.2} to {account}.");
    format!("tx_bank_{}", account.len())
}

fn amount_of(event: &ActionEvent) -> Decimal {
    event
        .payload("amount")
        .and_then(|v| v.as_number())
        .unwrap_or_default()
}

fn destination_of(event: &ActionEvent) -> String {
    event
        .payload("destination")
        .and_then(|v| v.as_str())
        .unwrap_or("?")
        .to_owned()
}

fn transfer(risk: Risk, amount: Decimal, destination: &str) -> ActionEvent {
    ActionEvent::create(
        "treasury-agent",
        "transfer",
        "payments",
        "production",
        risk,
        payload! {"amount" => amount, "destination" => destination},
    )
}

fn main() -> ExitCode {
    let runtime = match ActionRuntime::from_policy(POLICY) {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "CapFence ActionRuntime initialized (policy digest {}).",
        &runtime.policy_digest()[..12]
    );

    println!("\n--- Scenario 1: Safe Automated Transfer ---");
    let safe = transfer(Risk::Low, Decimal::new(12000, 2), "vendor-corp-123");
    let verdict = runtime.execute(&safe);
    println!(
        "Verdict: Authorized={} | Decision={}",
        verdict.authorized, verdict.decision
    );
    if verdict.authorized {
        simulate_payment_gateway(&destination_of(&safe), amount_of(&safe));
    } else {
        println!("Blocked: {}", verdict.reason);
    }

    println!("\n--- Scenario 2: Dangerous Over-Limit Block ---");
    let dangerous = transfer(
        Risk::Critical,
        Decimal::new(1_500_000, 2),
        "malicious-attacker-789",
    );
    let verdict = runtime.execute(&dangerous);
    println!(
        "Verdict: Authorized={} | Decision={} | Reason={}",
        verdict.authorized, verdict.decision, verdict.reason
    );
    if verdict.authorized {
        simulate_payment_gateway(&destination_of(&dangerous), amount_of(&dangerous));
    } else {
        println!(
            "[SECURITY ACTION] Blocked exfiltration attempt of ${:.2}!",
            amount_of(&dangerous)
        );
    }

    println!("\n--- Scenario 3: Human Approval Escalation ---");
    let escalated = transfer(
        Risk::High,
        Decimal::new(250_000, 2),
        "strategic-partner-456",
    );
    let verdict = runtime.execute(&escalated);
    let ticket = verdict.approval_id.clone().unwrap_or_default();
    println!(
        "Verdict: Authorized={} | Decision={} | ApprovalID={ticket}",
        verdict.authorized, verdict.decision
    );
    if verdict.decision == DecisionKind::RequireApproval {
        println!("Transaction escalated to human queue. Ticket ID: {ticket}");
        println!("[OPERATOR OFFICE] Reviewing invoice matching ticket...");
        let grant = match runtime.grant_capability(
            "treasury-agent",
            "payments.transfer.production",
            "admin-user-01",
            Duration::from_secs(30),
        ) {
            Ok(grant) => grant,
            Err(e) => {
                eprintln!("error: the grant failed: {e}");
                return ExitCode::from(1);
            }
        };
        println!(
            "[OPERATOR OFFICE] Approved! Temporary capability granted (G-{}, 30 s).",
            grant.id
        );

        let retry = runtime.execute(&escalated);
        println!(
            "Retry Verdict: Authorized={} | Decision={}",
            retry.authorized, retry.decision
        );
        if retry.authorized {
            simulate_payment_gateway(&destination_of(&escalated), amount_of(&escalated));
        } else {
            println!("Still Blocked.");
        }
        // Close the window now that the transfer is done.
        if let Err(e) = runtime.revoke(&format!("G-{}", grant.id), "admin-user-01") {
            eprintln!("warning: could not revoke G-{}: {e}", grant.id);
        }
        println!("[OPERATOR OFFICE] Grant G-{} revoked after use.", grant.id);
    }

    println!("\n--- Audit chain ---");
    match runtime.verify() {
        Ok((seq, hash)) => {
            println!("Audit chain verified: {seq} records, head {seq} {hash}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            println!("Audit chain BROKEN: {e}");
            ExitCode::from(1)
        }
    }
}
