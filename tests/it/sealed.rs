//! Only the runtime records decisions, and only its own.
//!
//! Code outside the crate tries to put an `allow` on the chain that the
//! policy never made: through the hidden entry point generated gates call
//! (with a decision of its own), and (tests/ui/seal_*.rs) by implementing
//! `Decide`, writing a store, or sealing a record itself.

use std::collections::BTreeMap;
use std::sync::Arc;

use capfence::store::memory::MemoryStore;
use capfence::{ActionRuntime, CompiledDecision, Context, Decimal, DecisionKind, Value};

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/policies/treasury_agent.yaml");

fn runtime() -> ActionRuntime {
    ActionRuntime::builder(POLICY)
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap()
}

fn payload(amount: &str, destination: &str) -> BTreeMap<String, Value> {
    BTreeMap::from([
        (
            "amount".to_owned(),
            Value::Number(amount.parse::<Decimal>().unwrap()),
        ),
        (
            "destination".to_owned(),
            Value::String(destination.to_owned()),
        ),
    ])
}

/// A transfer of `amount` to `destination` through the gate's entry point,
/// with the gate claiming `allow[0]` decided it.
fn gated_allow(
    runtime: &ActionRuntime,
    amount: &str,
    destination: &str,
) -> Result<capfence::Verdict, capfence::Blocked> {
    let ctx = Context::new(runtime.clone(), "treasury-agent", "production");
    static CLAIMED: CompiledDecision = CompiledDecision {
        kind: DecisionKind::Allow,
        rule: Some("allow[0]"),
        reason: "allowed by allow[0]",
        cause: capfence::Cause::Rule,
    };
    capfence::__private::gate(
        Some(&ctx),
        "payments",
        "transfer",
        runtime.policy_digest(),
        |_| Some(&CLAIMED),
        || payload(amount, destination),
    )
    .map(|passage| passage.verdict)
}

#[test]
fn a_gate_that_brings_its_own_allow_is_denied_and_the_record_says_so() {
    let runtime = runtime();
    let blocked = gated_allow(&runtime, "50000", "attacker-1").unwrap_err();
    assert_eq!(blocked.verdict().decision, DecisionKind::Deny);
    assert!(
        blocked
            .verdict()
            .reason
            .contains("the gate decided allow (allow[0])"),
        "{}",
        blocked.verdict().reason
    );
    // On the chain: one record, a deny, with the payload that was sent.
    let records = super::calls(&runtime);
    assert_eq!(records.len(), 1);
    assert_eq!(
        records[0].decision,
        capfence::RecordKind::Decision(DecisionKind::Deny)
    );
    assert!(
        records[0].payload.contains("50000"),
        "{}",
        records[0].payload
    );
    runtime.verify().unwrap();
}

#[test]
fn a_gate_that_agrees_with_the_policy_goes_through() {
    let runtime = runtime();
    let verdict = gated_allow(&runtime, "120", "vendor-corp-123").unwrap();
    assert!(verdict.authorized);
}
