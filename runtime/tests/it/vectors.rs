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
        decision: "allow".into(),
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
        payload: r#"{"actor":"treasury-agent","capability":"payments.transfer","environment":"production","expires_at":"2026-11-26T09:30:31.250000Z","max_amount":null,"uses":null}"#.into(),
        decision: "grant".into(),
        rule: None,
        reason: "grant G-1 of payments.transfer.production to treasury-agent by admin-user-01 until 2026-11-26T09:30:31.250000Z".into(),
        approval_id: Some("G-1".into()),
        policy_digest: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}
