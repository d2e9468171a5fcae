//! Differential proof: for the case-study policy and the fixture policies,
//! the compiled table (`capfence::policy!`) and the reference evaluator give
//! the same decision, rule and reason on every generated event.
//!
//! Events aim at each threshold and the smallest decimal steps around it, at
//! every literal of every string set and at values outside them, at every risk
//! level, at missing fields, wrong types and unknown capabilities.
//! `PROPTEST_CASES` sets the number of cases per policy (default 10,000):
//! `PROPTEST_CASES=1000000 cargo test --release --test it differential`.

use capfence::{Compiled, Decimal, Event, Policy, Value};
use capfence_compiler::policy::{CapabilityPattern, Field, FieldType, Test};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};

/// Interesting values of one field of a policy.
#[derive(Debug, Clone)]
enum Values {
    Numbers(Vec<Decimal>),
    Strings(Vec<String>),
    Risk,
}

fn near(threshold: Decimal) -> Vec<Decimal> {
    let mut out = vec![threshold, -threshold, Decimal::ZERO];
    for scale in [0u32, 2, 8, 16, 20, 24, 28] {
        let step = Decimal::new(1, scale);
        for candidate in [threshold.checked_add(step), threshold.checked_sub(step)]
            .into_iter()
            .flatten()
        {
            if candidate != threshold {
                out.push(candidate);
            }
        }
    }
    out
}

fn plan(policy: &Policy) -> (Vec<String>, Vec<String>, Vec<(Field, Values)>) {
    let mut resources = vec!["other".to_owned()];
    let mut actions = vec!["other".to_owned()];
    for rule in &policy.rules {
        if let CapabilityPattern::Segments { resource, action } = &rule.capability {
            resources.extend(resource.clone());
            actions.extend(action.clone());
        }
    }
    let mut fields: Vec<(Field, Values)> = Vec::new();
    for (field, ty) in &policy.field_types {
        let values = match ty {
            FieldType::Number => Values::Numbers(Vec::new()),
            FieldType::String => Values::Strings(vec!["something-else".to_owned()]),
            FieldType::Risk => Values::Risk,
        };
        fields.push((field.clone(), values));
    }
    for rule in &policy.rules {
        rule.for_each_test(&mut |test| {
            let Some((_, values)) = fields.iter_mut().find(|(f, _)| f == test.field()) else {
                return;
            };
            match (test, values) {
                (Test::Number { value, .. }, Values::Numbers(list)) => list.extend(near(*value)),
                (Test::Strings { values, .. }, Values::Strings(list)) => {
                    list.extend(values.iter().cloned())
                }
                _ => {}
            }
        });
    }
    for name in ["environment", "actor"] {
        let field = Field::from_name(name);
        if !fields.iter().any(|(f, _)| *f == field) {
            fields.push((
                field,
                Values::Strings(vec![
                    "production".into(),
                    "staging".into(),
                    "treasury-agent".into(),
                ]),
            ));
        }
    }
    if !fields.iter().any(|(f, _)| *f == Field::Risk) {
        fields.push((Field::Risk, Values::Risk));
    }
    (resources, actions, fields)
}

/// A field's value: missing, of the wrong type, or one of its interesting values.
#[derive(Debug, Clone)]
enum Pick {
    Missing,
    Wrong(usize),
    Value(usize),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![
        1 => Just(Pick::Missing),
        1 => (0usize..4).prop_map(Pick::Wrong),
        10 => any::<usize>().prop_map(Pick::Value),
    ]
}

fn build(
    resources: &[String],
    actions: &[String],
    fields: &[(Field, Values)],
    r: usize,
    a: usize,
    picks: &[Pick],
) -> Event {
    let mut event = Event {
        resource: resources.get(r % resources.len()).cloned(),
        action: actions.get(a % actions.len()).cloned(),
        ..Event::default()
    };
    if r % 17 == 16 {
        event.resource = None;
    }
    for ((field, values), pick) in fields.iter().zip(picks) {
        let wrong = |i: usize| -> Value {
            [
                Value::Bool(true),
                Value::String("not a number".into()),
                Value::Number(Decimal::ONE),
                Value::Null,
            ][i % 4]
                .clone()
        };
        let value: Option<Value> = match (pick, values) {
            (Pick::Missing, _) => None,
            (Pick::Wrong(i), _) => Some(wrong(*i)),
            (Pick::Value(i), Values::Numbers(list)) if !list.is_empty() => {
                let n = list[i % list.len()];
                // Sometimes as a decimal string, which must decide alike.
                Some(if i % 5 == 0 {
                    Value::String(n.to_string())
                } else {
                    Value::Number(n)
                })
            }
            (Pick::Value(i), Values::Strings(list)) => {
                Some(Value::String(list[i % list.len()].clone()))
            }
            (Pick::Value(i), Values::Risk) => Some(Value::String(
                ["low", "medium", "high", "critical", "extreme"][i % 5].into(),
            )),
            (Pick::Value(_), Values::Numbers(_)) => Some(Value::Number(Decimal::ZERO)),
        };
        let text = || match &value {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match field {
            Field::Payload(name) => {
                if let Some(v) = value.clone() {
                    event.payload.insert(name.clone(), v);
                }
            }
            Field::Actor => event.actor = text(),
            Field::Environment => event.environment = text(),
            Field::Risk => event.risk = text(),
            Field::Resource | Field::Action | Field::Capability => {}
        }
    }
    event
}

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000)
}

fn check<C: Compiled>(table: &C, path: &str) {
    let policy = Policy::load(concat!(env!("CARGO_MANIFEST_DIR"), "/").to_owned() + path).unwrap();
    assert_eq!(table.digest(), policy.digest, "{path}: the table is stale");
    let (resources, actions, fields) = plan(&policy);
    let strategy = (
        any::<usize>(),
        any::<usize>(),
        prop::collection::vec(pick(), fields.len()),
    );
    let mut runner = TestRunner::new(Config {
        cases: cases(),
        failure_persistence: None,
        ..Config::default()
    });
    let by_kind: [std::cell::Cell<u32>; 3] = Default::default();
    runner
        .run(&strategy, |(r, a, picks)| {
            let event = build(&resources, &actions, &fields, r, a, &picks);
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
        capfence_compiler::policy::Tier::Allow,
        capfence_compiler::policy::Tier::RequireApproval,
        capfence_compiler::policy::Tier::Deny,
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
