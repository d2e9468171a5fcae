//! `capfence-compile diff` and `explain`.

use capfence_compiler::analysis::diff;
use capfence_compiler::event::Event;
use capfence_compiler::{DecisionKind, Policy};
use proptest::prelude::*;

use super::{arb, compile_with as compile, fintech};

const RAISED: &str = "deny:\n  - capability: payments.transfer\n    amount_gt: 10000.0\n  - capability: payments.transfer\n    environment: staging\n    amount_gt: 50.0\nrequire_approval:\n  - capability: payments.transfer\n    amount_gt: 1000\n  - capability: payments.refund\n    amount_gt: 100.0\nallow:\n  - capability: payments.transfer\n    amount_lte: 1000\n  - capability: payments.read\n";

#[test]
fn a_raised_threshold_is_one_region() {
    let new = Policy::parse(RAISED, "new.yaml").unwrap();
    let changes = diff(&fintech(), &new).unwrap();
    assert_eq!(changes.len(), 1);
    let c = &changes[0];
    assert_eq!(
        c.region,
        "payments.transfer, environment != staging, 500 < amount <= 1000"
    );
    assert_eq!(
        (c.old.decision, c.new.decision),
        (DecisionKind::RequireApproval, DecisionKind::Allow)
    );
    let witness = Event::from_json(c.witness.as_deref().unwrap()).unwrap();
    assert_eq!(
        fintech().decide(&witness).kind,
        DecisionKind::RequireApproval
    );
    assert_eq!(new.decide(&witness).kind, DecisionKind::Allow);
}

#[test]
fn reordering_and_reformatting_is_no_change() {
    let reordered = "# same rules, other order and layout\nallow:\n  - {capability: payments.read}\n  - {capability: payments.transfer, amount_lte: 500.00}\nrequire_approval:\n  - {capability: payments.refund, amount_gt: 100}\n  - {capability: payments.transfer, amount_gt: 5E2}\ndeny:\n  - {capability: payments.transfer, environment: STAGING, amount_gt: 50}\n  - {capability: payments.transfer, amount_gt: 10000}\n";
    let other = Policy::parse(reordered, "reordered.yaml").unwrap();
    assert_eq!(diff(&fintech(), &other).unwrap(), []);
}

#[test]
fn the_diff_command_reports_and_exits() {
    let dir = std::env::temp_dir().join(format!("capfence-diff-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let new = dir.join("new.yaml");
    std::fs::write(&new, RAISED).unwrap();
    let new = new.to_string_lossy().into_owned();
    let out = compile(&["diff", "policies/fintech_policy.yaml", &new], "");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("payments.transfer, environment != staging, 500 < amount <= 1000: require_approval -> allow"), "{text}");
    let out = compile(
        &[
            "diff",
            "policies/fintech_policy.yaml",
            &new,
            "--format",
            "json",
        ],
        "",
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["equivalent"], false);
    assert_eq!(json["changes"][0]["new"]["decision"], "allow");
    let same = compile(
        &[
            "diff",
            "policies/fintech_policy.yaml",
            "policies/fintech_policy.yaml",
        ],
        "",
    );
    assert_eq!(same.status.code(), Some(0));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn explain_names_the_decider_and_why_the_others_did_not_decide() {
    let event = r#"{"actor":"a","capability":"payments.transfer","environment":"staging","risk":"low","payload":{"amount":2500}}"#;
    let out = compile(&["explain", "policies/fintech_policy.yaml"], event);
    assert_eq!(out.status.code(), Some(0));
    insta::assert_snapshot!("explain_staging_2500", String::from_utf8_lossy(&out.stdout));
    let missing = compile(
        &["explain", "policies/fintech_policy.yaml"],
        r#"{"capability":"payments.transfer","environment":"production"}"#,
    );
    let text = String::from_utf8_lossy(&missing.stdout);
    assert!(
        text.starts_with("decision: deny by no rule: malformed event: missing field `amount`"),
        "{text}"
    );
    assert_eq!(
        compile(&["explain", "policies/fintech_policy.yaml"], "nope")
            .status
            .code(),
        Some(2)
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// `diff` reports no change exactly when no event decides differently, and
    /// every reported witness decides as reported.
    #[test]
    fn diff_agrees_with_the_reference(a in arb::rules(), b in arb::rules(), events in prop::collection::vec(arb::event(), 64)) {
        let (old, new) = (arb::load(&a), arb::load(&b));
        let changes = diff(&old, &new).unwrap();
        for c in &changes {
            let w = Event::from_json(c.witness.as_deref().unwrap()).unwrap();
            prop_assert_eq!(old.decide(&w).kind, c.old.decision, "{}", c.region);
            prop_assert_eq!(new.decide(&w).kind, c.new.decision, "{}", c.region);
        }
        if changes.is_empty() {
            for e in &events {
                let (x, y) = (old.decide(e), new.decide(e));
                let malformed = |d: &capfence_compiler::Decision| d.reason.starts_with("malformed");
                if !malformed(&x) && !malformed(&y) {
                    prop_assert_eq!(x.kind, y.kind, "{}", e);
                }
            }
        }
        prop_assert_eq!(diff(&old, &old).unwrap(), []);
    }
}
