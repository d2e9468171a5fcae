//! `capfence-compile build`: a checked-in table compiles, stays in step with
//! its policy, and decides like the reference evaluator.

use capfence::{Event, Policy};

mod fintech_table {
    include!("../fixtures/generated/fintech_table.rs");
}

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/");

#[test]
fn the_checked_in_table_is_current() {
    let mut policy = Policy::load(format!("{ROOT}policies/fintech_policy.yaml")).unwrap();
    policy.file = "policies/fintech_policy.yaml".into();
    let fresh = capfence_compiler::codegen::render_file(&policy);
    let checked_in =
        std::fs::read_to_string(format!("{ROOT}tests/fixtures/generated/fintech_table.rs"))
            .unwrap();
    assert!(
        fresh == checked_in,
        "regenerate: capfence-compile build policies/fintech_policy.yaml -o tests/fixtures/generated/fintech_table.rs"
    );
    assert_eq!(fintech_table::CompiledPolicy::DIGEST, policy.digest);
}

#[test]
fn the_checked_in_table_decides_like_the_reference() {
    let policy = Policy::load(format!("{ROOT}policies/fintech_policy.yaml")).unwrap();
    let table = fintech_table::CompiledPolicy;
    let events =
        std::fs::read_to_string(format!("{ROOT}tests/data/seed_policy_events.jsonl")).unwrap();
    for line in events.lines() {
        let event = Event::from_json(line).unwrap();
        assert_eq!(
            table.decide_view(&table.view(&event)).to_decision(),
            policy.decide(&event),
            "{line}"
        );
    }
}
