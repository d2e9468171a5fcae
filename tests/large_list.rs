//! A string list longer than 16-bit ids can count, compiled into a table.
//! Its own test binary: the 70,000-literal table takes a while to compile,
//! and the main suite should not wait for it on every change.
#![allow(clippy::unwrap_used, missing_docs)]

use capfence::{Compiled, DecisionKind, Event, Policy};

#[test]
fn a_list_of_70000_values_keeps_every_id_distinct() {
    // With 16-bit ids, 65,536 values or more made an unlisted value look
    // like the last listed one: the deny below let `attacker-1` through.
    let policy = Policy::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/policies/large_list.yaml"
    ))
    .unwrap();
    let table = capfence::policy!("tests/fixtures/policies/large_list.yaml");
    let event = |destination: &str| {
        format!(
            r#"{{"actor":"bot","capability":"payments.transfer","payload":{{"destination":"{destination}"}}}}"#
        )
    };
    for listed in [
        "vendor-00000",
        "vendor-65535",
        "vendor-65536",
        "vendor-69999",
    ] {
        let d = decide(&policy, &table, &event(listed));
        assert_eq!(d.rule.as_deref(), Some("approved"), "{listed}");
    }
    for unlisted in ["attacker-1", "vendor-70000", "vendor-0", "zzz"] {
        let d = decide(&policy, &table, &event(unlisted));
        assert_eq!(
            d.rule.as_deref(),
            Some("unapproved-destination"),
            "{unlisted}"
        );
    }
}

fn decide<C: Compiled>(policy: &Policy, table: &C, json: &str) -> capfence::Decision {
    let event = Event::from_json(json).unwrap();
    let reference = policy.decide(&event);
    let compiled = table.decide_view(&table.view(&event)).to_decision();
    assert_eq!(compiled, reference, "{json}");
    assert_ne!(reference.kind, DecisionKind::RequireApproval);
    reference
}
