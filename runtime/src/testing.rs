//! Proptest strategies for policy regression suites (cargo feature `testing`).
//!
//! [`events`] generates events for one policy, aimed where decisions change:
//! at each threshold and the smallest decimal steps around it (also as decimal
//! strings), at every literal of every string set and at values outside them,
//! at every risk level and an unknown one, at missing fields, wrongly typed
//! fields, capabilities the policy does not name and events without one.
//!
//! ```
//! use capfence::testing::events;
//! use capfence::{Compiled as _, DecisionKind, Decimal, Policy};
//! use proptest::prelude::*;
//!
//! let policy = Policy::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/fintech_policy.yaml")).unwrap();
//! let table = capfence::policy!("../policies/fintech_policy.yaml");
//! proptest!(ProptestConfig::with_cases(2_000), |(event in events(&policy))| {
//!     let decision = policy.decide(&event);
//!     // Nothing above 10,000 is ever sent without a human.
//!     let amount = event.payload.get("amount").and_then(|v| v.as_number());
//!     if event.capability().as_deref() == Some("payments.transfer") && amount > Some(Decimal::from(10_000)) {
//!         prop_assert_ne!(decision.kind, DecisionKind::Allow);
//!     }
//!     // The compiled table decides exactly like the reference evaluator.
//!     prop_assert_eq!(table.decide_view(&table.view(&event)).to_decision(), decision);
//! });
//! ```

use capfence_compiler::event::{Event, EventRisk, Value};
use capfence_compiler::policy::{CapabilityPattern, Field, FieldType, Policy, Test};
use proptest::prelude::*;
use rust_decimal::Decimal;

/// The interesting values of one field.
#[derive(Debug, Clone)]
enum Values {
    Numbers(Vec<Decimal>),
    Strings(Vec<String>),
    Risk,
}

/// `t`, `-t`, zero, and `t` plus and minus steps from 1 down to 10^-28.
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

/// What the generator aims at for one policy.
#[derive(Debug, Clone)]
struct Plan {
    resources: Vec<String>,
    actions: Vec<String>,
    fields: Vec<(Field, Values)>,
}

fn plan(policy: &Policy) -> Plan {
    let mut resources = vec!["other".to_owned()];
    let mut actions = vec!["other".to_owned()];
    for rule in &policy.rules {
        if let CapabilityPattern::Segments { resource, action } = &rule.capability {
            resources.extend(resource.clone());
            actions.extend(action.clone());
        }
    }
    let mut fields: Vec<(Field, Values)> = policy
        .field_types
        .iter()
        .map(|(field, ty)| {
            let values = match ty {
                FieldType::Number => Values::Numbers(Vec::new()),
                FieldType::Token => Values::Strings(vec!["something-else".to_owned()]),
                FieldType::Text => Values::Strings(vec!["something else".to_owned()]),
                FieldType::Risk => Values::Risk,
            };
            (field.clone(), values)
        })
        .collect();
    for rule in &policy.rules {
        rule.for_each_test(&mut |test| {
            let Some((_, values)) = fields.iter_mut().find(|(f, _)| f == test.field()) else {
                return;
            };
            match (test, values) {
                (Test::Number { value, .. }, Values::Numbers(list)) => list.extend(near(*value)),
                (Test::Strings { values, .. }, Values::Strings(list)) => {
                    list.extend(values.iter().flat_map(|v| look_alikes(v)))
                }
                _ => {}
            }
        });
    }
    for name in ["environment", "actor"] {
        let field = Field::from_name(name);
        if !fields.iter().any(|(f, _)| *f == field) {
            let values = vec![
                "production".into(),
                "staging".into(),
                "treasury-agent".into(),
                "staging ".into(),
                "ｓtaging".into(),
            ];
            fields.push((field, Values::Strings(values)));
        }
    }
    if !fields.iter().any(|(f, _)| *f == Field::Risk) {
        fields.push((Field::Risk, Values::Risk));
    }
    Plan {
        resources,
        actions,
        fields,
    }
}

/// A literal, and look-alikes of it that must never decide like it unless
/// they are the same text: a trailing space, a zero-width space, fullwidth
/// letters (the same text after NFKC), and an uppercase copy.
fn look_alikes(literal: &str) -> Vec<String> {
    let fullwidth: String = literal
        .chars()
        .map(|c| match c {
            '!'..='~' => char::from_u32(u32::from(c) - 0x21 + 0xFF01).unwrap_or(c),
            other => other,
        })
        .collect();
    vec![
        literal.to_owned(),
        format!("{literal} "),
        format!("{literal}\u{200b}"),
        fullwidth,
        literal.to_ascii_uppercase(),
    ]
}

/// A field's value: missing, of the wrong type, or one of its interesting values.
#[derive(Debug, Clone, Copy)]
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

fn wrong(i: usize) -> Value {
    match i % 4 {
        0 => Value::Bool(true),
        1 => Value::String("not a number".into()),
        2 => Value::Number(Decimal::ONE),
        _ => Value::Null,
    }
}

fn build(plan: &Plan, r: usize, a: usize, picks: &[Pick]) -> Event {
    let at = |list: &[String], i: usize| list.get(i % list.len().max(1)).cloned();
    let mut event = Event {
        resource: if r % 17 == 16 {
            None
        } else {
            at(&plan.resources, r)
        },
        action: at(&plan.actions, a),
        ..Event::default()
    };
    for ((field, values), pick) in plan.fields.iter().zip(picks) {
        let value: Option<Value> = match (pick, values) {
            (Pick::Missing, _) => None,
            (Pick::Wrong(i), _) => Some(wrong(*i)),
            (Pick::Value(i), Values::Numbers(list)) => {
                let n = list.get(i % list.len().max(1)).copied().unwrap_or_default();
                // Sometimes as a decimal string, which must decide alike.
                Some(if i % 5 == 0 {
                    Value::String(n.to_string())
                } else {
                    Value::Number(n)
                })
            }
            (Pick::Value(i), Values::Strings(list)) => at(list, *i).map(Value::String),
            (Pick::Value(i), Values::Risk) => {
                let levels = ["low", "medium", "high", "critical", "extreme"];
                levels
                    .get(i % levels.len())
                    .map(|l| Value::String((*l).to_owned()))
            }
        };
        let text = match &value {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        };
        match field {
            Field::Payload(name) => {
                if let Some(v) = value {
                    event.payload.insert(name.clone(), v);
                }
            }
            Field::Actor => event.actor = text,
            Field::Environment => event.environment = text,
            Field::Risk => event.risk = text.as_deref().map(EventRisk::parse),
            Field::Resource | Field::Action | Field::Capability => {}
        }
    }
    event
}

/// Events for `policy`, aimed where its decisions change (see the module docs).
pub fn events(policy: &Policy) -> BoxedStrategy<Event> {
    let plan = plan(policy);
    let width = plan.fields.len();
    (
        any::<usize>(),
        any::<usize>(),
        prop::collection::vec(pick(), width),
    )
        .prop_map(move |(r, a, picks)| build(&plan, r, a, &picks))
        .boxed()
}
