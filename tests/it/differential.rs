//! Differential proof: for the case-study policy and the fixture policies,
//! the compiled table (`capfence::policy!`) and the reference evaluator give
//! the same decision, rule and reason on every generated event.
//!
//! Events come from `capfence::testing::events`: they aim at each threshold
//! and the smallest decimal steps around it, at every literal of every string
//! set and at values outside them, at every risk level, at missing fields,
//! wrong types and unknown capabilities.
//! `PROPTEST_CASES` sets the number of cases per policy (default 10,000):
//! `PROPTEST_CASES=1000000 cargo test --release --test it differential`.

use capfence::{Compiled, DecisionKind, Policy};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn check<C: Compiled>(table: &C, path: &str) {
    let policy = Policy::load(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + path).unwrap();
    assert_eq!(table.digest(), policy.digest, "{path}: the table is stale");
    let strategy = capfence::testing::events(&policy);
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let by_kind: [std::cell::Cell<u32>; 3] = Default::default();
    runner
        .run(&strategy, |event| {
            let reference = policy.decide(&event);
            let compiled = table.decide_view(&table.view(&event)).to_decision();
            let seen = &by_kind[slot(reference.kind)];
            seen.set(seen.get() + 1);
            prop_assert_eq!(&compiled, &reference, "{}: {}", path, event);
            Ok(())
        })
        .unwrap();
    let counts = by_kind.map(std::cell::Cell::into_inner);
    if let Err(e) = every_tier_reached(&policy, &counts) {
        panic!("{path}: {e}");
    }
}

/// Where a decision kind is counted.
fn slot(kind: DecisionKind) -> usize {
    match kind {
        DecisionKind::Allow => 0,
        DecisionKind::RequireApproval => 1,
        DecisionKind::Deny => 2,
    }
}

/// The generator must reach every kind of decision the policy has rules
/// for: `counts[slot(kind)]` events got `kind`.
fn every_tier_reached(policy: &Policy, counts: &[u32; 3]) -> Result<(), String> {
    for tier in [
        DecisionKind::Allow,
        DecisionKind::RequireApproval,
        DecisionKind::Deny,
    ] {
        if policy.tier(tier).next().is_some() && counts[slot(tier)] == 0 {
            return Err(format!("no event got {tier:?}"));
        }
    }
    Ok(())
}

/// The tier check can fail: counts that miss a tier the policy has rules
/// for are refused, whichever tier it is.
#[test]
fn the_tier_check_fails_when_a_tier_is_missed() {
    let policy = Policy::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/fintech_policy.yaml"
    ))
    .unwrap();
    assert_eq!(every_tier_reached(&policy, &[1, 1, 1]), Ok(()));
    for missing in [
        DecisionKind::Allow,
        DecisionKind::RequireApproval,
        DecisionKind::Deny,
    ] {
        let mut counts = [1, 1, 1];
        counts[slot(missing)] = 0;
        assert_eq!(
            every_tier_reached(&policy, &counts),
            Err(format!("no event got {missing:?}"))
        );
    }
}

#[test]
fn case_study_policy() {
    check(
        &capfence::policy!("policies/fintech_policy.yaml"),
        "policies/fintech_policy.yaml",
    );
}

/// Beyond one mask per class and beyond the merged form: the table
/// dispatches on the class and picks from two masks in a row.
#[test]
fn many_rules_policy() {
    let table = capfence::policy!("tests/fixtures/policies/many_rules.yaml");
    check(&table, "tests/fixtures/policies/many_rules.yaml");
    // Rules of the second mask decide: the 65th and the 69th of the class.
    let transfer = |amount: &str, destination: &str| {
        let json = format!(
            r#"{{"actor":"a","resource":"payments","action":"transfer","environment":"production","payload":{{"amount":{amount},"destination":"{destination}"}}}}"#
        );
        let event = capfence::Event::from_json(&json).unwrap();
        table.decide_view(&table.view(&event)).rule
    };
    assert_eq!(transfer("665", "vendor-66"), Some("require_approval[65]"));
    assert_eq!(transfer("640", "vendor-66"), Some("allow[0]"));
    assert_eq!(transfer("655", "vendor-66"), None);
    assert_eq!(transfer("15", "vendor-1"), Some("require_approval[0]"));
}

#[test]
fn lists_policy() {
    check(
        &capfence::policy!("tests/fixtures/policies/lists.yaml"),
        "tests/fixtures/policies/lists.yaml",
    );
}

#[test]
fn wildcards_policy() {
    check(
        &capfence::policy!("tests/fixtures/policies/wildcards.yaml"),
        "tests/fixtures/policies/wildcards.yaml",
    );
}

#[test]
fn risk_policy() {
    check(
        &capfence::policy!("tests/fixtures/policies/risk.yaml"),
        "tests/fixtures/policies/risk.yaml",
    );
}

#[test]
fn when_policy() {
    check(
        &capfence::policy!("tests/fixtures/policies/when.yaml"),
        "tests/fixtures/policies/when.yaml",
    );
}

#[test]
fn lookalike_policy() {
    check(
        &capfence::policy!("tests/fixtures/policies/lookalike.yaml"),
        "tests/fixtures/policies/lookalike.yaml",
    );
}

#[test]
fn unicode_policy() {
    check(
        &capfence::policy!("tests/fixtures/policies/unicode.yaml"),
        "tests/fixtures/policies/unicode.yaml",
    );
}

/// Velocity windows: the aggregates reach both evaluators as the same input
/// (drawn around each window's threshold like any other number).
#[test]
fn velocity_policy() {
    check(
        &capfence::policy!("policies/treasury_velocity.yaml"),
        "policies/treasury_velocity.yaml",
    );
}

/// `new:` aggregates reach both evaluators as a number too (0: new).
#[test]
fn new_payee_policy() {
    check(
        &capfence::policy!("policies/new_payee.yaml"),
        "policies/new_payee.yaml",
    );
}
