//! Approvals through the public API: tickets, grants, and their limits.

use std::sync::Arc;
use std::time::Duration;

use capfence::store::memory::MemoryStore;
use capfence::{ActionRuntime, DecisionKind, GrantLimits, OperatorError};

use super::{ManualClock, POLICY, TempDir, runtime, runtime_with_clock, transfer};

#[test]
fn asking_again_returns_the_same_pending_ticket() {
    let dir = TempDir::new("same-ticket");
    let rt = runtime(dir.path());
    let event = transfer("2500.00", "strategic-partner-456");
    let first = rt.execute(&event);
    assert_eq!(first.decision, DecisionKind::RequireApproval);
    assert!(!first.authorized);
    let again = rt.execute(&transfer("2500", "strategic-partner-456"));
    assert_eq!(
        again.approval_id, first.approval_id,
        "2500 and 2500.00 are the same event"
    );
    let other = rt.execute(&transfer("2500.01", "strategic-partner-456"));
    assert_ne!(
        other.approval_id, first.approval_id,
        "a different amount is a different event"
    );
    assert_eq!(rt.ledger().tickets().unwrap().len(), 2);
}

#[test]
fn an_approved_ticket_authorizes_its_event_once() {
    let dir = TempDir::new("ticket-once");
    let rt = runtime(dir.path());
    let event = transfer("2500", "vendor-7");
    let ticket = rt.execute(&event).approval_id.unwrap();
    // The approval covers this exact event only.
    rt.approve(&ticket, "ops@corp").unwrap();
    let other = rt.execute(&transfer("2500", "vendor-8"));
    assert_eq!(other.decision, DecisionKind::RequireApproval);
    let used = rt.execute(&event);
    assert!(used.authorized);
    assert_eq!(used.decision, DecisionKind::Allow);
    assert_eq!(used.approval_id.as_deref(), Some(ticket.as_str()));
    assert_eq!(used.rule.as_deref(), Some("require_approval[0]"));
    let next = rt.execute(&event);
    assert_eq!(next.decision, DecisionKind::RequireApproval, "single use");
    assert_ne!(next.approval_id.as_deref(), Some(ticket.as_str()));
    assert!(matches!(
        rt.approve(&ticket, "ops"),
        Err(OperatorError::NotPending {
            status: capfence::TicketStatus::Used,
            ..
        })
    ));
}

#[test]
fn a_rejected_ticket_denies_its_event() {
    let dir = TempDir::new("reject");
    let rt = runtime(dir.path());
    let event = transfer("700", "vendor-7");
    let ticket = rt.execute(&event).approval_id.unwrap();
    rt.reject(&ticket, "ops@corp").unwrap();
    let v = rt.execute(&event);
    assert_eq!(v.decision, DecisionKind::Deny);
    assert!(v.reason.contains("rejected by ops@corp"), "{}", v.reason);
}

#[test]
fn tickets_and_grants_expire() {
    let dir = TempDir::new("expiry");
    let clock = Arc::new(ManualClock::default());
    let rt = runtime_with_clock(dir.path(), clock.clone());
    let event = transfer("700", "vendor-7");
    let ticket = rt.execute(&event).approval_id.unwrap();
    clock.advance(Duration::from_secs(3601));
    assert!(matches!(
        rt.approve(&ticket, "ops"),
        Err(OperatorError::Expired(_))
    ));
    let fresh = rt.execute(&event).approval_id.unwrap();
    assert_ne!(fresh, ticket, "an expired ticket is replaced");

    rt.grant_capability(
        "treasury-agent",
        "payments.transfer.production",
        "ops",
        Duration::from_secs(30),
    )
    .unwrap();
    assert!(rt.execute(&event).authorized);
    clock.advance(Duration::from_secs(31));
    assert_eq!(rt.execute(&event).decision, DecisionKind::RequireApproval);
}

#[test]
fn grants_are_bounded_in_amount_and_uses_and_scoped() {
    let dir = TempDir::new("grant-bounds");
    let rt = runtime(dir.path());
    let limits = GrantLimits {
        uses: Some(2),
        ..GrantLimits::default()
    }
    .cap("amount", "1000".parse().unwrap());
    let grant = rt
        .grant(
            "treasury-agent",
            "payments.transfer",
            "production",
            "ops",
            Duration::from_secs(60),
            limits,
        )
        .unwrap();
    assert_eq!(
        rt.execute(&transfer("2500", "v")).decision,
        DecisionKind::RequireApproval,
        "over the cap"
    );
    assert!(rt.execute(&transfer("1000", "v")).authorized);
    assert!(rt.execute(&transfer("999.99", "v")).authorized);
    assert_eq!(
        rt.execute(&transfer("600", "v")).decision,
        DecisionKind::RequireApproval,
        "uses spent"
    );
    // Another actor or environment is not covered.
    let rt2 = runtime(dir.path());
    rt2.grant(
        "treasury-agent",
        "payments.transfer",
        "staging",
        "ops",
        Duration::from_secs(60),
        GrantLimits::default(),
    )
    .unwrap();
    assert_eq!(
        rt2.execute(&transfer("600", "v")).decision,
        DecisionKind::RequireApproval
    );
    rt.revoke(&format!("G-{}", grant.id), "ops").unwrap();
    assert!(matches!(
        rt.revoke(&format!("G-{}", grant.id), "ops"),
        Err(OperatorError::AlreadyRevoked { .. })
    ));
}

#[test]
fn a_grant_never_overrides_a_deny() {
    let dir = TempDir::new("no-override");
    let rt = runtime(dir.path());
    rt.grant_capability(
        "treasury-agent",
        "payments.transfer.production",
        "ops",
        Duration::from_secs(60),
    )
    .unwrap();
    let v = rt.execute(&transfer("15000", "malicious-attacker-789"));
    assert_eq!(v.decision, DecisionKind::Deny);
    assert!(!v.authorized);
    assert_eq!(v.rule.as_deref(), Some("deny[0]"));
    assert_eq!(v.approval_id, None);
}

#[test]
fn every_decision_and_operator_action_is_recorded() {
    let dir = TempDir::new("recorded");
    let rt = runtime(dir.path());
    let event = transfer("700", "vendor-7");
    let ticket = rt.execute(&event).approval_id.unwrap();
    rt.approve(&ticket, "ops").unwrap();
    rt.execute(&event);
    let grant = rt
        .grant_capability(
            "treasury-agent",
            "payments.transfer.production",
            "ops",
            Duration::from_secs(5),
        )
        .unwrap();
    rt.revoke(&format!("G-{}", grant.id), "ops").unwrap();
    let decisions: Vec<String> = rt
        .ledger()
        .records()
        .unwrap()
        .into_iter()
        .map(|r| r.decision.to_string())
        .collect();
    // The ledger's first record activates the policy that first decided.
    assert_eq!(
        decisions,
        [
            "activate",
            "require_approval",
            "approve",
            "allow",
            "grant",
            "revoke"
        ]
    );
    assert_eq!(rt.verify().unwrap().0, 6);
}

#[test]
fn operator_mistakes_are_refused_without_records() {
    let dir = TempDir::new("refused");
    let rt = runtime(dir.path());
    assert!(matches!(
        rt.approve("T-99", "ops"),
        Err(OperatorError::NotFound { .. })
    ));
    assert!(matches!(
        rt.approve("T-1", " "),
        Err(OperatorError::Invalid(_))
    ));
    assert!(matches!(
        rt.grant_capability("a", "payments", "ops", Duration::from_secs(1)),
        Err(OperatorError::Invalid(_))
    ));
    assert!(matches!(
        rt.grant_capability("a", "payments.transfer.production", "ops", Duration::ZERO),
        Err(OperatorError::Invalid(_))
    ));
    assert!(rt.ledger().records().unwrap().is_empty());
}

#[test]
fn the_memory_store_behaves_like_sqlite() {
    let rt = ActionRuntime::builder(POLICY)
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let event = transfer("2500", "vendor-7");
    let ticket = rt.execute(&event).approval_id.unwrap();
    assert_eq!(
        rt.execute(&event).approval_id.as_deref(),
        Some(ticket.as_str())
    );
    rt.approve(&ticket, "ops").unwrap();
    assert!(rt.execute(&event).authorized);
    assert!(!rt.execute(&event).authorized);
    // Four decisions after the policy's activation.
    assert_eq!(rt.verify().unwrap().0, 5 + 1);

    // Outcomes find their call by seq and their earlier outcome by label
    // (the store's indexes, checked against what the chain holds).
    let paid = rt.execute(&transfer("40", "vendor-7")).seq.unwrap();
    let done = capfence::Outcome::Executed {
        reference: Some("BANK-1".to_owned()),
        amount: None,
    };
    let first = rt.record_outcome(paid, &done).unwrap();
    for _ in 0..3 {
        rt.execute(&transfer("41", "vendor-7"));
    }
    match rt.record_outcome(paid, &done) {
        Err(capfence::OutcomeError::AlreadyRecorded { seq, at, .. }) => {
            assert_eq!((seq, at), (paid, first.seq));
        }
        other => panic!("{other:?}"),
    }
    let latest = rt.execute(&transfer("42", "vendor-7")).seq.unwrap();
    assert_eq!(
        rt.record_outcome(latest, &done).unwrap().approval_id,
        Some(format!("D-{latest}"))
    );
    assert!(matches!(
        rt.record_outcome(latest + 10, &done),
        Err(capfence::OutcomeError::NoSuchRecord(_))
    ));
    assert!(matches!(
        rt.record_outcome(first.seq, &done),
        Err(capfence::OutcomeError::NotAuthorized { .. })
    ));
}
