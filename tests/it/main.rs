//! Cross-crate integration tests (one binary: link time matters on small machines).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod build;
mod compiled;
mod demo;
mod differential;
mod fuzz_replay;
mod gate;
mod gate_outcome;
mod gate_typed;
mod hardening;
mod sealed;
mod ui;

/// The records of the calls a runtime decided: its ledger's records after
/// the first, which activates the policy that first decided there.
pub fn calls(rt: &capfence::ActionRuntime) -> Vec<capfence::AuditRecord> {
    let mut records = rt.ledger().records().unwrap();
    if !records.is_empty() {
        let first = records.remove(0);
        assert_eq!(first.decision, capfence::RecordKind::Activate, "{first:?}");
    }
    assert!(
        records
            .iter()
            .all(|r| r.decision != capfence::RecordKind::Activate)
    );
    // The calls: an authorized call's outcome is a record of its own.
    records.retain(|r| r.decision != capfence::RecordKind::Outcome);
    records
}
