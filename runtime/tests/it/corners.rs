//! Fail-open corners of grants and tickets, each one a payment the policy
//! forbids that used to get through.

use std::time::Duration;

use capfence::{ActionRuntime, DecisionKind, Event, GrantLimits, OperatorError};

use super::TempDir;

fn runtime_for(dir: &TempDir, policy: &str) -> ActionRuntime {
    let path = dir.path().join("policy.yaml");
    std::fs::write(&path, policy).unwrap();
    ActionRuntime::builder(&path)
        .state_dir(dir.path().join("state"))
        .build()
        .unwrap()
}

fn event(json: &str) -> Event {
    Event::from_json(json).unwrap()
}

const TOTALS: &str = "
require_approval:
  - id: big-total
    capability: payments.transfer
    total_gt: 500
allow:
  - capability: payments.transfer
";

#[test]
fn a_grant_cap_holds_only_on_a_field_the_deciding_rule_compares() {
    let dir = TempDir::new("grant-field");
    let rt = runtime_for(&dir, TOTALS);
    let limits = GrantLimits::default().cap("amount", "1000".parse().unwrap());
    // A cap on a field no require_approval rule compares is refused outright.
    let refused = rt.grant(
        "bot",
        "payments.transfer",
        "production",
        "ops",
        Duration::from_secs(60),
        limits,
    );
    match refused {
        Err(OperatorError::Caps(why)) => {
            let text = why.to_string();
            assert!(
                text.contains("compares `amount`") && text.contains("total"),
                "{text}"
            );
            assert!(matches!(
                why,
                capfence::approvals::CapError::NotCompared { ref field, ref cappable, .. }
                    if field == "amount" && cappable == &["total".to_owned()]
            ));
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    // A cap on `total` holds for totals up to it, and a smuggled `amount`
    // never stands in for the field the rule reads.
    let limits = GrantLimits::default().cap("total", "1000".parse().unwrap());
    rt.grant(
        "bot",
        "payments.transfer",
        "production",
        "ops",
        Duration::from_secs(60),
        limits,
    )
    .unwrap();
    let send = |payload: &str| {
        rt.execute_event(&event(&format!(
            r#"{{"actor":"bot","capability":"payments.transfer","environment":"production","payload":{payload}}}"#
        )))
    };
    let over = send(r#"{"total":9999,"amount":1}"#);
    assert_eq!(over.decision, DecisionKind::RequireApproval, "{over:?}");
    assert!(!over.authorized);
    let within = send(r#"{"total":800}"#);
    assert!(within.authorized, "{within:?}");
    assert!(within.reason.contains("grant G-1"), "{}", within.reason);
}

const TIERS: &str = "
require_approval:
  - id: cfo-signoff
    capability: payments.transfer
    risk: critical
    reason: critical-risk transfers need the CFO
  - id: ops-signoff
    capability: payments.transfer
    amount_gt: 500
allow:
  - capability: payments.transfer
";

#[test]
fn a_ticket_is_bound_to_its_rule_risk_and_policy() {
    let dir = TempDir::new("ticket-binding");
    let rt = runtime_for(&dir, TIERS);
    let send = |risk: &str| {
        rt.execute_event(&event(&format!(
            r#"{{"actor":"bot","capability":"payments.transfer","environment":"production","risk":"{risk}","payload":{{"amount":2500,"destination":"v-1"}}}}"#
        )))
    };
    let low = send("low");
    assert_eq!(low.rule.as_deref(), Some("ops-signoff"));
    assert_eq!(low.approval_id.as_deref(), Some("T-1"));
    rt.approve("T-1", "junior-ops").unwrap();
    // The same payload at critical risk is another question for another
    // approver: the ops ticket does not answer it.
    let critical = send("critical");
    assert_eq!(
        critical.decision,
        DecisionKind::RequireApproval,
        "{critical:?}"
    );
    assert_eq!(critical.rule.as_deref(), Some("cfo-signoff"));
    assert_eq!(critical.approval_id.as_deref(), Some("T-2"));
    // The approved ticket still serves the event it was approved for, once.
    let again = send("low");
    assert!(again.authorized, "{again:?}");
    assert_eq!(again.approval_id.as_deref(), Some("T-1"));

    // A runtime on an edited policy does not honor tickets approved under
    // the old one.
    let low2 = send("medium");
    assert_eq!(low2.approval_id.as_deref(), Some("T-3"));
    rt.approve("T-3", "junior-ops").unwrap();
    let edited = format!("{TIERS}# edited\n");
    std::fs::write(dir.path().join("policy.yaml"), edited).unwrap();
    let rt2 = ActionRuntime::builder(dir.path().join("policy.yaml"))
        .state_dir(dir.path().join("state"))
        .build()
        .unwrap();
    let medium = || {
        event(
            r#"{"actor":"bot","capability":"payments.transfer","environment":"production","risk":"medium","payload":{"amount":2500,"destination":"v-1"}}"#,
        )
    };
    // Not active yet: the edited file decides nothing.
    let v = rt2.execute_event(&medium());
    assert_eq!(v.decision, DecisionKind::Deny, "{v:?}");
    // Activated by an operator (this policy lists no approvers).
    let edited_policy = capfence::Policy::load(dir.path().join("policy.yaml")).unwrap();
    rt2.ledger()
        .activate_unsigned(&edited_policy, "ops")
        .unwrap();
    let v = rt2.execute_event(&medium());
    assert_eq!(v.decision, DecisionKind::RequireApproval, "{v:?}");
    assert_eq!(v.approval_id.as_deref(), Some("T-4"));

    let tickets = rt.ledger().tickets().unwrap();
    let t2 = tickets.iter().find(|t| t.id == 2).unwrap();
    assert_eq!(
        (t2.rule.as_deref(), t2.risk.as_deref()),
        (Some("cfo-signoff"), Some("critical"))
    );
}
