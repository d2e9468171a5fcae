//! The reference evaluator on the case-study policy: the shared 1,024-event set,
//! the shipped regression suite, and the exact-decimal rules of DESIGN §2.

use std::fs;

use capfence_compiler::DecisionKind;
use capfence_compiler::event::Event;
use capfence_compiler::suite::Suite;

use super::{fintech, root};

#[test]
fn agrees_with_cedar_regorus_and_a_hand_written_evaluator_on_the_shared_events() {
    let shared = root().join("tests/data");
    let events = fs::read_to_string(shared.join("seed_policy_events.jsonl")).unwrap();
    let expected = fs::read_to_string(shared.join("seed_policy_expected.txt")).unwrap();
    let policy = fintech();
    let mut count = 0;
    for (i, (line, want)) in events.lines().zip(expected.lines()).enumerate() {
        let event = Event::from_json(line).unwrap();
        let got = policy.decide(&event);
        assert_eq!(got.kind.as_str(), want.trim(), "event {i}: {line}");
        count += 1;
    }
    assert_eq!(count, 1024);
}

#[test]
fn the_shipped_regression_suite_passes() {
    let suite = Suite::load(root().join("policies/fintech_policy.tests.yaml")).unwrap();
    let report = suite.run(&fintech());
    assert!(report.results.len() >= 20);
    assert_eq!(report.failed(), 0, "{}", report.render_human());
}

#[test]
fn a_failing_case_is_reported_with_its_location() {
    let suite = Suite::parse(
        "cases:\n  - name: wrong\n    event: { capability: payments.read }\n    expect: deny\n",
        "s.yaml",
    )
    .unwrap();
    let report = suite.run(&fintech());
    assert_eq!(report.failed(), 1);
    assert_eq!(
        report.render_human(),
        "FAIL s.yaml:2:5: wrong: expected deny, got allow by allow[1] (allowed by allow[1]: payments.read)\n\
         FAILED: 0 passed, 1 failed\n"
    );
    let json = report.to_json();
    assert_eq!(json["failed"], 1);
    assert_eq!(json["cases"][0]["actual"]["rule"], "allow[1]");
}

#[test]
fn suite_errors_name_file_and_line() {
    let err = Suite::parse("cases:\n  - name: x\n    expct: deny\n", "s.yaml").unwrap_err();
    assert_eq!(
        err.to_string(),
        "s.yaml:3:5: unknown key `expct` in test case; did you mean `expect`?"
    );
    let err = Suite::parse(
        "cases:\n  - name: x\n    event: {}\n    expect: maybe\n",
        "s.yaml",
    )
    .unwrap_err();
    assert!(err.to_string().starts_with("s.yaml:4:13: `expect` must be"));
}

#[test]
fn suite_duplicate_keys_are_errors_however_spelled() {
    for text in [
        "cases:\n  - name: x\n    event: {}\n    expect: deny\n\"cases\": []\n",
        "cases:\n  - name: x\n    event: {capability: a.b, 'capability': c.d}\n    expect: deny\n",
        "cases:\n  - name: x\n    event:\n      payload: {to: a, \"to\": b}\n    expect: deny\n",
    ] {
        let err = Suite::parse(text, "s.yaml").unwrap_err().to_string();
        assert!(err.contains("duplicate key"), "{text}: {err}");
    }
}

fn decide(json: &str) -> (DecisionKind, Option<String>) {
    let d = fintech().decide(&Event::from_json(json).unwrap());
    (d.kind, d.rule)
}

#[test]
fn the_issue_example_needs_approval() {
    let got = decide(
        r#"{"actor":"a","resource":"payments","action":"transfer","environment":"production","risk":"low","payload":{"amount":500.0000000000000001}}"#,
    );
    assert_eq!(
        got,
        (
            DecisionKind::RequireApproval,
            Some("require_approval[0]".to_owned())
        )
    );
}

#[test]
fn decimal_spellings_decide_alike_and_nothing_is_rounded() {
    let transfer = |amount: &str| {
        decide(&format!(
            r#"{{"capability":"payments.transfer","environment":"production","payload":{{"amount":{amount}}}}}"#
        ))
    };
    let allow = (DecisionKind::Allow, Some("allow[0]".to_owned()));
    for spelling in [
        "500",
        "500.0",
        "500.00",
        "5E2",
        "5e2",
        "0.5e3",
        "\"500.00\"",
        "\"5E2\"",
    ] {
        assert_eq!(transfer(spelling), allow, "{spelling}");
    }
    assert_eq!(
        transfer("500.0000000000000001").0,
        DecisionKind::RequireApproval
    );
    assert_eq!(transfer("10000.01").0, DecisionKind::Deny);
    // 29 significant digits cannot be held: not a number, denied, never rounded to 10000.
    let too_precise = transfer("10000.0000000000000000000000001");
    assert_eq!(too_precise, (DecisionKind::Deny, None));
    for not_a_number in [
        "\"NaN\"",
        "true",
        "{}",
        "[]",
        "null",
        "\"\"",
        "1e400",
        "\"1,000\"",
    ] {
        assert_eq!(
            transfer(not_a_number),
            (DecisionKind::Deny, None),
            "{not_a_number}"
        );
    }
}

#[test]
fn malformed_reasons_name_the_field() {
    let policy = fintech();
    let d = policy.decide(
        &Event::from_json(
            r#"{"capability":"payments.transfer","environment":"production","payload":{}}"#,
        )
        .unwrap(),
    );
    assert_eq!(d.reason, "malformed event: missing field `amount`");
    let d = policy.decide(&Event::from_json(r#"{"capability":"payments.transfer","environment":"production","payload":{"amount":"x"}}"#).unwrap());
    assert_eq!(d.reason, "malformed event: field `amount` must be a number");
    let d = policy.decide(
        &Event::from_json(r#"{"capability":"payments.transfer","payload":{"amount":1}}"#).unwrap(),
    );
    assert_eq!(d.reason, "malformed event: missing field `environment`");
}

#[test]
fn every_rule_key_works() {
    let policy = capfence_compiler::Policy::parse(
        r#"
deny:
  - id: no-exfil
    capability: "*"
    destination_not_in: [vendor-1, vendor-2]
    reason: unknown destination
require_approval:
  - capability: payments.*
    risk_gte: high
    actor: [bot-a, bot-b]
  - capability: "*.transfer"
    when: amount >= 100 and not (environment in ["staging"]) or currency == "EUR"
allow:
  - capability: payments.transfer
    environment: production
    risk_lte: medium
    amount_gte: 0
    amount_lt: 100
    fee_eq: 0
    fee_ne: 1
    currency_in: [USD, EUR]
"#,
        "keys.yaml",
    )
    .unwrap();
    let base = r#""capability":"payments.transfer","environment":"production","actor":"bot-c""#;
    let ev = |risk: &str, payload: &str| {
        Event::from_json(&format!(
            r#"{{{base},"risk":"{risk}","payload":{payload}}}"#
        ))
        .unwrap()
    };
    let ok = r#"{"destination":"vendor-1","amount":50,"fee":0,"currency":"USD"}"#;
    let d = policy.decide(&ev("low", ok));
    assert_eq!(
        (d.kind, d.rule.as_deref()),
        (DecisionKind::Allow, Some("allow[0]"))
    );
    let d = policy.decide(&ev(
        "low",
        r#"{"destination":"evil","amount":50,"fee":0,"currency":"USD"}"#,
    ));
    assert_eq!(
        (d.kind, d.rule.as_deref(), d.reason.as_str()),
        (DecisionKind::Deny, Some("no-exfil"), "unknown destination")
    );
    let d = policy.decide(&ev(
        "medium",
        r#"{"destination":"vendor-1","amount":150,"fee":0,"currency":"USD"}"#,
    ));
    assert_eq!(d.rule.as_deref(), Some("require_approval[1]"));
    let d = policy.decide(&ev(
        "low",
        r#"{"destination":"vendor-1","amount":50,"fee":0,"currency":"EUR"}"#,
    ));
    assert_eq!(
        d.rule.as_deref(),
        Some("require_approval[1]"),
        "`or currency == EUR`"
    );
    let d = policy.decide(&ev("critical", ok));
    assert_eq!(
        (d.kind, d.rule),
        (DecisionKind::Deny, None),
        "bot-c is not in the risk rule's list; allow[0] stops at medium"
    );
    assert_eq!(d.reason, capfence_compiler::eval::DEFAULT_DENY_REASON);
    let e = Event::from_json(&format!(r#"{{"capability":"payments.transfer","environment":"production","actor":"bot-a","risk":"critical","payload":{ok}}}"#)).unwrap();
    assert_eq!(
        policy.decide(&e).rule.as_deref(),
        Some("require_approval[0]")
    );
    let d = policy.decide(&ev("extreme", ok));
    assert_eq!(
        d.reason,
        "malformed event: field `risk` must be a risk level (low, medium, high, critical)"
    );
    let d = policy.decide(&ev(
        "low",
        r#"{"destination":"vendor-1","amount":50,"fee":1,"currency":"USD"}"#,
    ));
    assert_eq!((d.kind, d.rule), (DecisionKind::Deny, None), "fee_ne: 1");
}

/// Every decision says why as a type: code branches on the cause, never on
/// the reason's words.
#[test]
fn each_decision_carries_its_cause() {
    use capfence_compiler::eval::{Cause, Fault};
    use capfence_compiler::policy::FieldType;
    let policy = fintech();
    let decide = |json: &str| policy.decide(&Event::from_json(json).unwrap());
    let transfer = |payload: &str| {
        format!(
            r#"{{"actor":"treasury-agent","capability":"payments.transfer","environment":"production","risk":"low","payload":{payload}}}"#
        )
    };
    let allowed = decide(&transfer(
        r#"{"amount":120,"destination":"vendor-corp-123"}"#,
    ));
    assert_eq!(allowed.cause, Cause::Rule);
    assert!(allowed.rule.is_some());
    let unmatched = decide(
        r#"{"actor":"treasury-agent","capability":"ledger.wipe","environment":"production","risk":"low","payload":{}}"#,
    );
    assert_eq!(
        (unmatched.kind, unmatched.cause.clone()),
        (DecisionKind::Deny, Cause::DefaultDeny)
    );
    let missing = decide(&transfer(r#"{"destination":"vendor-corp-123"}"#));
    assert_eq!(
        (missing.kind, missing.cause.clone()),
        (
            DecisionKind::Deny,
            Cause::malformed("amount", Fault::Missing)
        )
    );
    let wrong = decide(&transfer(
        r#"{"amount":"lots","destination":"vendor-corp-123"}"#,
    ));
    assert_eq!(
        wrong.cause,
        Cause::malformed("amount", Fault::WrongType(FieldType::Number))
    );
    let spaced = decide(
        r#"{"actor":"treasury-agent","capability":"payments.transfer","environment":"prod uction","risk":"low","payload":{"amount":1}}"#,
    );
    assert_eq!(
        spaced.cause,
        Cause::malformed("environment", Fault::NotToken(FieldType::Token))
    );
    let bad_name = decide(
        r#"{"actor":"treasury agent","capability":"payments.transfer","environment":"production","risk":"low","payload":{"amount":1}}"#,
    );
    assert_eq!(
        bad_name.cause,
        Cause::malformed("actor", Fault::NotToken(FieldType::Token))
    );
    let bad_resource = decide(
        r#"{"actor":"treasury-agent","resource":"pay.ments","action":"transfer","environment":"production","risk":"low","payload":{"amount":1}}"#,
    );
    assert_eq!(
        bad_resource.cause,
        Cause::malformed("resource", Fault::NotName)
    );
    // The reason is rendered from the cause, for every kind of fault.
    for decision in [&missing, &wrong, &spaced, &bad_name, &bad_resource] {
        let Cause::Malformed { field, fault } = &decision.cause else {
            panic!("not malformed: {decision:?}");
        };
        assert_eq!(decision.reason, fault.reason(field));
    }
}

/// A built-in name's fault renders the same reason as the static one a
/// generated table returns.
#[test]
fn name_fault_reasons_are_rendered_from_their_cause() {
    use capfence_compiler::eval::{Cause, NameFault};
    for fault in [
        NameFault::Resource,
        NameFault::Action,
        NameFault::Environment,
        NameFault::Actor,
        NameFault::Risk,
    ] {
        let Cause::Malformed { field, fault: kind } = fault.cause() else {
            panic!("{fault:?} is not malformed");
        };
        assert_eq!(fault.reason(), kind.reason(&field), "{fault:?}");
    }
}
