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

use capfence::{Compiled, Policy};
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
            let seen = &by_kind[reference.kind as usize];
            seen.set(seen.get() + 1);
            prop_assert_eq!(&compiled, &reference, "{}: {}", path, event);
            Ok(())
        })
        .unwrap();
    // The generator must reach every kind of decision the policy can make.
    let tiers = [
        capfence_compiler::policy::DecisionKind::Allow,
        capfence_compiler::policy::DecisionKind::RequireApproval,
        capfence_compiler::policy::DecisionKind::Deny,
    ];
    for (i, tier) in tiers.iter().enumerate() {
        if policy.tier(*tier).next().is_some() {
            assert!(by_kind[i].get() > 0, "{path}: no event got {tier:?}");
        }
    }
}

#[test]
fn case_study_policy() {
    check(
        &capfence::policy!("policies/fintech_policy.yaml"),
        "policies/fintech_policy.yaml",
    );
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
