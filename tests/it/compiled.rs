//! The compiled table (`capfence::policy!`) against the reference evaluator.

use capfence::{Decide, Event, Policy};

#[test]
fn the_case_study_table_agrees_on_the_shared_events() {
    let table = capfence::policy!("policies/fintech_policy.yaml");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
    let policy = Policy::load(format!("{root}policies/fintech_policy.yaml")).unwrap();
    assert_eq!(Decide::digest(&table), policy.digest);
    let events =
        std::fs::read_to_string(format!("{root}../shared/bench/seed_policy_events.jsonl")).unwrap();
    let expected =
        std::fs::read_to_string(format!("{root}../shared/bench/seed_policy_expected.txt")).unwrap();
    for (line, want) in events.lines().zip(expected.lines()) {
        let event = Event::from_json(line).unwrap();
        let compiled = table.decide_view(&table.view(&event)).to_decision();
        assert_eq!(compiled, policy.decide(&event), "{line}");
        assert_eq!(compiled.kind.as_str(), want.trim());
    }
}
