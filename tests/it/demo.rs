//! The case-study demo, run as the README's first command runs it, twice.

use std::path::PathBuf;
use std::process::Command;

fn demo_binary() -> PathBuf {
    // target/<profile>/deps/it-… → target/<profile>/examples/fintech_demo
    let exe = std::env::current_exe().unwrap();
    exe.parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join("fintech_demo")
}

#[test]
fn the_demo_tells_the_case_study_story_and_runs_twice() {
    let state = std::env::temp_dir().join(format!("capfence-demo-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    for run in 1..=2 {
        let out = Command::new(demo_binary())
            .env("CAPFENCE_STATE", &state)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(0), "run {run}: {text}");
        let story = [
            "Verdict: Authorized=true | Decision=allow",
            "[BANK GATEWAY] Successfully transferred $120.00 to vendor-corp-123.",
            "Verdict: Authorized=false | Decision=deny | Reason=denied by deny[0]: payments.transfer, amount > 10000.0",
            "[SECURITY ACTION] Blocked exfiltration attempt of $15000.00!",
            "Verdict: Authorized=false | Decision=require_approval | ApprovalID=T-1",
            "Transaction escalated to human queue. Ticket ID: T-1",
            "Retry Verdict: Authorized=true | Decision=allow",
            "[BANK GATEWAY] Successfully transferred $2500.00 to strategic-partner-456.",
            // The policy's activation, then six records a run.
            &format!(
                "Audit chain verified: {n} records, head {n} ",
                n = 6 * run + 1
            ),
        ];
        assert_story(&text, &story);
        assert!(!text.contains("Still Blocked"), "{text}");
    }
    std::fs::remove_dir_all(&state).unwrap();
}

#[test]
fn the_two_person_example_needs_both_signatures() {
    let exe = demo_binary().with_file_name("two_person");
    let out = Command::new(exe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let story = [
        "Verdict: Authorized=false | Decision=require_approval | Rule=one-person | Ticket=T-1",
        "Unsigned approval refused: ticket T-1's rule one-person needs 1 signed approval from ops1, ops2: sign it with an operator key (--key)",
        "ops1 signed: 1 of 1 approvals",
        "Retry: Authorized=true | Decision=allow | Rule=one-person | Ticket=T-1",
        "Verdict: Authorized=false | Decision=require_approval | Rule=two-person | Ticket=T-2",
        "ops1 signed: 1 of 2 approvals",
        "Retry after one: Authorized=false | Decision=require_approval | Rule=two-person | Ticket=T-2",
        "ops1 signing again refused: `ops1` has already approved T-2",
        "ops2 signed: 2 of 2 approvals",
        "Retry after two: Authorized=true | Decision=allow | Rule=two-person | Ticket=T-2 | approval required by two-person",
        "Audit chain and signatures verified: 9 records, head 9 ",
    ];
    assert_story(&text, &story);
}

#[test]
fn the_split_transfer_example_holds_the_call_that_crosses_the_cap() {
    let exe = demo_binary().with_file_name("split_transfers");
    let out = Command::new(exe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let story = [
        "call  1: allowed, $499.99 moved so far",
        "call  2: allowed, $999.98 moved so far",
        "call  3: require_approval (T-1) — approval required by daily-sum: payments.transfer, sum of amount over 24h per actor, destination > 1000 (sum of amount over 24h per actor, destination: 1499.97 with this call)",
        "38 of 40 calls wait for a human; $999.98 moved without one.",
        "Audit chain verified: 41 records.",
    ];
    assert_story(&text, &story);
}

#[test]
fn the_new_payee_example_holds_the_first_payment_only() {
    let exe = demo_binary().with_file_name("new_payee");
    let out = Command::new(exe).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    let story = [
        "1. first payment to vendor-981 ($420.00): require_approval (T-1) — the first payment to a new account needs a human (destination new per actor: new)",
        "2. the approved payment: allow (T-1)",
        "outcome: executed, reference BANK-5501",
        "3. next invoice to vendor-981 ($310.00): allow — allowed by allow[0]",
        "4. injected payment to attacker-acct-1 ($9.99): require_approval (T-2)",
        "Audit chain verified: 7 records.",
    ];
    assert_story(&text, &story);
}

/// Every line of `story` appears in `text`, in order.
fn assert_story(text: &str, story: &[&str]) {
    let mut rest = text;
    for line in story {
        let at = rest
            .find(line)
            .unwrap_or_else(|| panic!("missing `{line}` in\n{text}"));
        rest = &rest[at + line.len()..];
    }
}
