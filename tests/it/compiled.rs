//! The compiled table (`capfence::policy!`) against the reference evaluator.

use capfence::{Decide, Event, Policy};

#[test]
fn the_case_study_table_agrees_on_the_shared_events() {
    let table = capfence::policy!("policies/fintech_policy.yaml");
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/");
    let policy = Policy::load(format!("{root}policies/fintech_policy.yaml")).unwrap();
    assert_eq!(Decide::digest(&table), policy.digest);
    let events =
        std::fs::read_to_string(format!("{root}tests/data/seed_policy_events.jsonl")).unwrap();
    let expected =
        std::fs::read_to_string(format!("{root}tests/data/seed_policy_expected.txt")).unwrap();
    for (line, want) in events.lines().zip(expected.lines()) {
        let event = Event::from_json(line).unwrap();
        let compiled = table.decide_view(&table.view(&event)).to_decision();
        assert_eq!(compiled, policy.decide(&event), "{line}");
        assert_eq!(compiled.kind.as_str(), want.trim());
    }
}

#[test]
fn a_runtime_runs_on_a_compiled_table() {
    static POLICY: &dyn Decide = &capfence::policy!("policies/fintech_policy.yaml");
    let state = std::env::temp_dir().join(format!("capfence-compiled-rt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let runtime = capfence::ActionRuntime::compiled_builder(POLICY)
        .state_dir(&state)
        .build()
        .unwrap();
    let transfer = |amount: &str| {
        Event::from_json(&format!(
            r#"{{"actor":"treasury-agent","capability":"payments.transfer","environment":"production","risk":"high","payload":{{"amount":{amount},"destination":"v"}}}}"#
        ))
        .unwrap()
    };
    assert!(runtime.execute_event(&transfer("120")).authorized);
    assert_eq!(
        runtime.execute_event(&transfer("15000")).rule.as_deref(),
        Some("deny[0]")
    );
    let pending = runtime.execute_event(&transfer("2500"));
    assert_eq!(pending.approval_id.as_deref(), Some("T-1"));
    let records = runtime.ledger().records().unwrap();
    assert_eq!(records.len(), 3);
    assert!(
        records
            .iter()
            .all(|r| r.policy_digest.as_deref() == Some(POLICY.digest()))
    );
    std::fs::remove_dir_all(&state).unwrap();
}
