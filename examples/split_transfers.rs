//! The split-transfer attack, stopped: a prompt-injected agent sends forty
//! transfers of $499.99 to one account, each under the $500 per-call
//! threshold. With the case-study policy all forty would go through
//! ($19,999.60). With a velocity rule (`amount_sum_gt: 1000` over 24h per
//! actor and destination) the first two go through, the call that crosses
//! the cap waits for a human, with the running sum in the reason, and so does
//! every later one.
//!
//! Run from the repository root: `cargo run --example split_transfers`. The
//! ledger lives in a fresh directory under the system temp dir, removed at
//! the end.

use std::process::ExitCode;

use capfence::{ActionEvent, ActionRuntime, Decimal, Risk, payload};

const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/policies/treasury_velocity.yaml"
);

fn main() -> ExitCode {
    let state = std::env::temp_dir().join(format!("capfence-split-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let runtime = match ActionRuntime::builder(POLICY).state_dir(&state).build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let amount = Decimal::new(49_999, 2);
    let mut moved = Decimal::ZERO;
    let mut held = 0;
    for call in 1..=40 {
        let event = ActionEvent::create(
            "treasury-agent",
            "transfer",
            "payments",
            "production",
            Risk::Medium,
            payload! {"amount" => amount, "destination" => "attacker-acct-9"},
        );
        let verdict = runtime.execute(&event);
        if verdict.authorized {
            moved += amount;
            println!("call {call:>2}: allowed, ${moved} moved so far");
        } else {
            held += 1;
            if held == 1 {
                println!(
                    "call {call:>2}: {} ({}) — {}",
                    verdict.decision.as_str(),
                    verdict.approval_id.as_deref().unwrap_or("-"),
                    verdict.reason
                );
            }
        }
    }
    println!("{held} of 40 calls wait for a human; ${moved} moved without one.");
    let verified = runtime.verify();
    let _ = std::fs::remove_dir_all(&state);
    match verified {
        Ok((seq, _)) => {
            println!("Audit chain verified: {seq} records.");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(1)
        }
    }
}
