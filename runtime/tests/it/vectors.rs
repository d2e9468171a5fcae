//! Test vectors of docs/audit-format.md: fixed records and their hashes.

use capfence::audit::{AuditRecord, GENESIS};

pub fn first() -> AuditRecord {
    AuditRecord {
        seq: 1,
        time: "2026-11-26T09:30:00.000000Z".into(),
        actor: Some("treasury-agent".into()),
        capability: Some("payments.transfer".into()),
        environment: Some("production".into()),
        risk: Some("low".into()),
        payload: r#"{"amount":120,"destination":"vendor-corp-123"}"#.into(),
        decision: capfence::audit::RecordKind::ALLOW,
        rule: Some("allow[0]".into()),
        reason: "allowed by allow[0]: payments.transfer, amount <= 500.0".into(),
        approval_id: None,
        policy_digest: Some(
            "d829c42e8d29a9b1c1f8c5e5d8f7b7c9a4f0e3d2c1b0a9f8e7d6c5b4a3f2e1d0".into(),
        ),
        prev_hash: GENESIS.into(),
        hash: String::new(),
    }
}

pub fn second() -> AuditRecord {
    AuditRecord {
        seq: 2,
        time: "2026-11-26T09:30:01.250000Z".into(),
        actor: Some("admin-user-01".into()),
        capability: Some("capfence.approvals.grant".into()),
        environment: Some("production".into()),
        risk: None,
        payload: r#"{"actor":"treasury-agent","capability":"payments.transfer","caps":"amount=5000","environment":"production","expires_at":"2026-11-26T09:30:31.250000Z","uses":3}"#.into(),
        decision: capfence::audit::RecordKind::Grant,
        rule: None,
        reason: "grant G-1 of payments.transfer.production to treasury-agent by admin-user-01 until 2026-11-26T09:30:31.250000Z".into(),
        approval_id: Some("G-1".into()),
        policy_digest: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

const DIGEST: &str = "d829c42e8d29a9b1c1f8c5e5d8f7b7c9a4f0e3d2c1b0a9f8e7d6c5b4a3f2e1d0";

/// Record 3: a transfer held for approval, opening ticket T-1.
pub fn third() -> AuditRecord {
    AuditRecord {
        seq: 3,
        time: "2026-11-26T09:31:00.000000Z".into(),
        actor: Some("treasury-agent".into()),
        capability: Some("payments.transfer".into()),
        environment: Some("production".into()),
        risk: Some("high".into()),
        payload: r#"{"amount":2500,"destination":"strategic-partner-456"}"#.into(),
        decision: capfence::audit::RecordKind::REQUIRE_APPROVAL,
        rule: Some("require_approval[0]".into()),
        reason: "approval required by require_approval[0]: payments.transfer, amount > 500.0 (waiting for approval, ticket T-1)".into(),
        approval_id: Some("T-1".into()),
        policy_digest: Some(DIGEST.into()),
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// Record 4: an operator approves T-1.
pub fn fourth() -> AuditRecord {
    AuditRecord {
        seq: 4,
        time: "2026-11-26T09:32:00.000000Z".into(),
        actor: Some("ops@corp".into()),
        capability: Some("capfence.approvals.approve".into()),
        environment: Some("production".into()),
        risk: None,
        payload: r#"{"amount":2500,"destination":"strategic-partner-456"}"#.into(),
        decision: capfence::audit::RecordKind::Approve,
        rule: Some("require_approval[0]".into()),
        reason: "ticket T-1 for payments.transfer by treasury-agent approved by ops@corp".into(),
        approval_id: Some("T-1".into()),
        policy_digest: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// Record 5: the same transfer again, authorized by T-1 (consumed).
pub fn fifth() -> AuditRecord {
    AuditRecord {
        seq: 5,
        time: "2026-11-26T09:32:05.000000Z".into(),
        decision: capfence::audit::RecordKind::ALLOW,
        reason: "approval required by require_approval[0]: payments.transfer, amount > 500.0 (approved by ops@corp, ticket T-1)".into(),
        ..third()
    }
}

/// The five documented records, sealed into a chain.
pub fn chain() -> Vec<AuditRecord> {
    let mut prev = capfence::audit::GENESIS.to_owned();
    [first(), second(), third(), fourth(), fifth()]
        .into_iter()
        .map(|mut r| {
            r.prev_hash = prev.clone();
            r.hash = r.compute_hash();
            prev = r.hash.clone();
            r
        })
        .collect()
}
