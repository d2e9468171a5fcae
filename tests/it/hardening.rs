//! Look-alike names and broken input never slip past a rule: every attack
//! is decided by both the reference evaluator and the generated table, which
//! must agree.

use capfence::{Compiled, Decision, DecisionKind, Event, Policy};

fn policy(path: &str) -> Policy {
    Policy::load(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + path).unwrap()
}

/// Decides `json` with the reference and the table; they must agree.
fn decide<C: Compiled>(policy: &Policy, table: &C, json: &str) -> Decision {
    let event = Event::from_json(json).unwrap();
    let reference = policy.decide(&event);
    let compiled = table.decide_view(&table.view(&event)).to_decision();
    assert_eq!(compiled, reference, "{json}");
    reference
}

fn transfer(environment: &str, actor: &str, destination: &str, amount: &str) -> String {
    format!(
        r#"{{"actor":{},"capability":"payments.transfer","environment":{},"risk":"low","payload":{{"amount":{amount},"destination":{}}}}}"#,
        serde_json::to_string(actor).unwrap(),
        serde_json::to_string(environment).unwrap(),
        serde_json::to_string(destination).unwrap(),
    )
}

#[test]
fn look_alike_environments_are_malformed_not_allowed() {
    let policy = policy("policies/fintech_policy.yaml");
    let table = capfence::policy!("policies/fintech_policy.yaml");
    // The control: staging is denied by deny[1], in any ASCII case.
    for env in ["staging", "Staging", "STAGING"] {
        let d = decide(
            &policy,
            &table,
            &transfer(env, "treasury-agent", "v-1", "100"),
        );
        assert_eq!(d.rule.as_deref(), Some("deny[1]"), "{env}");
    }
    for env in [
        "Staging ",
        " staging",
        "staging\u{200b}",
        "ＳＴＡＧＩＮＧ",
        "ſtaging",
        "st\u{0430}ging",
        "staging\u{1b}[0m",
        "",
    ] {
        let d = decide(
            &policy,
            &table,
            &transfer(env, "treasury-agent", "v-1", "100"),
        );
        assert_eq!(d.kind, DecisionKind::Deny, "{env:?}");
        assert_eq!(d.rule, None, "{env:?}");
        assert!(
            d.reason.contains("field `environment`"),
            "{env:?}: {}",
            d.reason
        );
    }
    // And the allowed path still works.
    let d = decide(
        &policy,
        &table,
        &transfer("production", "treasury-agent", "v-1", "100"),
    );
    assert_eq!(d.kind, DecisionKind::Allow);
}

#[test]
fn look_alike_actions_actors_and_destinations_are_denied() {
    let policy = policy("tests/fixtures/policies/lookalike.yaml");
    let table = capfence::policy!("tests/fixtures/policies/lookalike.yaml");
    let event = |resource: &str, action: &str, actor: &str, destination: &str| {
        format!(
            r#"{{"actor":{},"resource":{},"action":{},"payload":{{"destination":{}}}}}"#,
            serde_json::to_string(actor).unwrap(),
            serde_json::to_string(resource).unwrap(),
            serde_json::to_string(action).unwrap(),
            serde_json::to_string(destination).unwrap(),
        )
    };
    let read = decide(&policy, &table, &event("payments", "read", "bot", "v-1"));
    assert_eq!(read.kind, DecisionKind::Allow);
    let blocked = decide(
        &policy,
        &table,
        &event("payments", "transfer", "bot", "v-1"),
    );
    assert_eq!(blocked.rule.as_deref(), Some("no-transfers"));
    for (resource, action, field) in [
        ("payments", "transfer ", "action"),
        ("payments", "ｔransfer", "action"),
        ("payments", "tran\u{200b}sfer", "action"),
        ("payments ", "read", "resource"),
        // A dot inside a segment would make `payments.read` + `export` and
        // `payments` + `read.export` the same capability.
        ("payments", "read.export", "action"),
        ("payments.read", "export", "resource"),
    ] {
        let d = decide(&policy, &table, &event(resource, action, "bot", "v-1"));
        assert_eq!(d.kind, DecisionKind::Deny, "{resource:?}.{action:?}");
        assert!(
            d.reason.contains(&format!("field `{field}`")),
            "{}",
            d.reason
        );
    }
    for actor in [
        "rogue-agent ",
        "rogue\u{2011}agent",
        "r\u{043e}gue-agent",
        "rogue-agent\r",
    ] {
        let d = decide(&policy, &table, &event("payments", "read", actor, "v-1"));
        assert_eq!(d.kind, DecisionKind::Deny, "{actor:?}");
        assert!(d.reason.contains("field `actor`"), "{}", d.reason);
    }
    for destination in [
        "attacker-1 ",
        "\u{0430}ttacker-1",
        "attacker-1\u{feff}",
        "attacker\u{2010}1",
    ] {
        let d = decide(
            &policy,
            &table,
            &event("payments", "read", "bot", destination),
        );
        assert_eq!(d.kind, DecisionKind::Deny, "{destination:?}");
        assert!(d.reason.contains("field `destination`"), "{}", d.reason);
    }
}

#[test]
fn untested_payload_strings_may_hold_any_text() {
    let policy = policy("tests/fixtures/policies/lookalike.yaml");
    let table = capfence::policy!("tests/fixtures/policies/lookalike.yaml");
    let d = decide(
        &policy,
        &table,
        r#"{"actor":"bot","capability":"payments.read","payload":{"destination":"v-1","memo":"Grüße \u00e9 — ✓"}}"#,
    );
    assert_eq!(d.kind, DecisionKind::Allow);
}

#[test]
fn unicode_fields_compare_after_nfkc() {
    let policy = policy("tests/fixtures/policies/unicode.yaml");
    let table = capfence::policy!("tests/fixtures/policies/unicode.yaml");
    let event = |beneficiary: &str, amount: &str| {
        format!(
            r#"{{"actor":"bot","capability":"payments.transfer","environment":"production","payload":{{"amount":{amount},"destination":"v-1","beneficiary":{}}}}}"#,
            serde_json::to_string(beneficiary).unwrap()
        )
    };
    // Composed, decomposed and fullwidth spellings are one name.
    for name in [
        "Müller GmbH",
        "Mu\u{308}ller GmbH",
        "Ｍüller GmbH",
        "Omega Ltd",
        "Ｏｍｅｇａ Ltd",
    ] {
        let d = decide(&policy, &table, &event(name, "10"));
        assert_eq!(d.rule.as_deref(), Some("sanctioned-name"), "{name:?}");
    }
    let d = decide(&policy, &table, &event("Jose\u{301} García", "10"));
    assert_eq!(d.rule.as_deref(), Some("large-or-named"));
    let d = decide(&policy, &table, &event("Acme Ltd", "10"));
    assert_eq!(d.rule.as_deref(), Some("transfers"));
    // Hidden characters and surrounding spaces are still malformed.
    for name in [
        "Müller\u{200b} GmbH",
        "Müller GmbH ",
        "\u{202e}Müller GmbH",
        "",
    ] {
        let d = decide(&policy, &table, &event(name, "10"));
        assert_eq!(d.kind, DecisionKind::Deny, "{name:?}");
        assert!(d.reason.contains("field `beneficiary`"), "{}", d.reason);
    }
}
