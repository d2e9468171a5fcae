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
    let records = super::calls(&runtime);
    assert_eq!(records.len(), 3);
    assert!(
        records
            .iter()
            .all(|r| r.policy_digest.as_deref() == Some(POLICY.digest()))
    );
    std::fs::remove_dir_all(&state).unwrap();
}

#[test]
fn a_compiled_table_carries_its_approvers_and_quorums() {
    use capfence::{ActionEvent, OperatorKey, Risk, payload};
    static SIGNED: &dyn Decide = &capfence::policy!("tests/fixtures/policies/two_person.yaml");
    let reference = capfence::Policy::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/policies/two_person.yaml"
    ))
    .unwrap();
    // The generated facts are the reference evaluator's, quorum and keys included.
    assert_eq!(SIGNED.rule_facts(), reference.rule_facts());
    let two = SIGNED
        .rule_facts()
        .into_iter()
        .find(|f| f.id == "two-person")
        .unwrap();
    assert_eq!(two.approvals, 2);
    assert_eq!(two.approvers.len(), 2);

    let state =
        std::env::temp_dir().join(format!("capfence-compiled-signed-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let rt = capfence::ActionRuntime::compiled_builder(SIGNED)
        .state_dir(&state)
        .build()
        .unwrap();
    let ops1 = OperatorKey::from_seed("ops1", [1; 32]).unwrap();
    let ops2 = OperatorKey::from_seed("ops2", [2; 32]).unwrap();
    let event = ActionEvent::create(
        "treasury-agent",
        "transfer",
        "payments",
        "production",
        Risk::High,
        payload! {"amount" => "7500", "destination" => "vendor-7"},
    );
    assert!(!rt.execute(&event).authorized);
    assert!(rt.approve("T-1", "ops1").is_err());
    rt.approve("T-1", &ops1).unwrap();
    assert!(!rt.execute(&event).authorized);
    rt.approve("T-1", &ops2).unwrap();
    assert!(rt.execute(&event).authorized);
    // ops1 is not eligible for one-person.
    let small = ActionEvent::create(
        "treasury-agent",
        "transfer",
        "payments",
        "production",
        Risk::High,
        payload! {"amount" => "900", "destination" => "vendor-7"},
    );
    assert!(!rt.execute(&small).authorized);
    assert!(rt.approve("T-2", &ops1).is_err());
    rt.approve("T-2", &ops2).unwrap();
    assert!(rt.execute(&small).authorized);
    rt.verify().unwrap();
    std::fs::remove_dir_all(&state).unwrap();
}

#[test]
fn a_compiled_table_enforces_velocity_windows() {
    use capfence::{ActionEvent, Risk, payload};
    static VELOCITY: &dyn Decide = &capfence::policy!("policies/treasury_velocity.yaml");
    let reference = capfence::Policy::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/treasury_velocity.yaml"
    ))
    .unwrap();
    assert_eq!(VELOCITY.windows(), reference.windows());
    assert_eq!(VELOCITY.windows().len(), 2);
    let state =
        std::env::temp_dir().join(format!("capfence-compiled-velocity-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let rt = capfence::ActionRuntime::compiled_builder(VELOCITY)
        .state_dir(&state)
        .build()
        .unwrap();
    let split = ActionEvent::create(
        "treasury-agent",
        "transfer",
        "payments",
        "production",
        Risk::High,
        payload! {"amount" => "499.99", "destination" => "attacker-1"},
    );
    let outcomes: Vec<bool> = (0..5).map(|_| rt.execute(&split).authorized).collect();
    assert_eq!(outcomes, [true, true, false, false, false]);
    std::fs::remove_dir_all(&state).unwrap();
}

/// The generated table of a policy with `new:` carries the same aggregate
/// as the loaded policy, and the runtime holds the first payment to a new
/// account on it.
#[test]
fn a_compiled_table_holds_the_first_payment_to_a_new_account() {
    use capfence::{ActionEvent, Risk, payload};
    static NEW_PAYEE: &dyn Decide = &capfence::policy!("policies/new_payee.yaml");
    let reference = capfence::Policy::load(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/policies/new_payee.yaml"
    ))
    .unwrap();
    assert_eq!(NEW_PAYEE.windows(), reference.windows());
    let state = std::env::temp_dir().join(format!(
        "capfence-compiled-new-payee-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&state);
    let rt = capfence::ActionRuntime::compiled_builder(NEW_PAYEE)
        .state_dir(&state)
        .build()
        .unwrap();
    let pay = ActionEvent::create(
        "treasury-agent",
        "transfer",
        "payments",
        "production",
        Risk::Low,
        payload! {"amount" => "120", "destination" => "vendor-77"},
    );
    let first = rt.execute(&pay);
    assert_eq!(first.rule.as_deref(), Some("new-payee"));
    rt.approve(first.approval_id.as_deref().unwrap(), "ops")
        .unwrap();
    assert!(rt.execute(&pay).authorized, "the approved first payment");
    assert!(rt.execute(&pay).authorized, "known now");
    rt.verify().unwrap();
    std::fs::remove_dir_all(&state).unwrap();
}
