//! Generators of random policies and events over a small shared vocabulary, so
//! that random events hit random rules' thresholds and sets often.

use capfence_compiler::Policy;
use capfence_compiler::event::{Event, Value};
use capfence_compiler::policy::DecisionKind;
use proptest::prelude::*;
use rust_decimal::Decimal;

pub const THRESHOLDS: [&str; 7] = [
    "0",
    "50",
    "100",
    "500",
    "500.0000000000000001",
    "10000",
    "-1",
];

/// One rule as YAML lines (without the tier).
#[derive(Debug, Clone)]
pub struct RuleText(pub String);

pub fn rule() -> impl Strategy<Value = RuleText> {
    let capability = prop::sample::select(vec![
        "payments.transfer",
        "payments.refund",
        "payments.*",
        "\"*.read\"",
        "\"*\"",
    ]);
    let amount = prop::option::of((
        prop::sample::select(vec![
            "amount_gt",
            "amount_gte",
            "amount_lt",
            "amount_lte",
            "amount_eq",
            "amount_ne",
        ]),
        prop::sample::select(THRESHOLDS.to_vec()),
    ));
    let environment = prop::option::of(prop::sample::select(vec![
        "staging",
        "production",
        "[staging, production]",
    ]));
    let risk = prop::option::of((
        prop::sample::select(vec!["risk_gte", "risk_lte", "risk_gt", "risk_lt", "risk"]),
        prop::sample::select(vec!["low", "medium", "high", "critical"]),
    ));
    let destination = prop::option::of((
        prop::sample::select(vec!["destination_in", "destination_not_in"]),
        prop::sample::select(vec!["[vendor-1]", "[vendor-1, vendor-2]", "[evil]"]),
    ));
    let when = prop::option::of(prop::sample::select(vec![
        "amount > 100 and risk >= high",
        "not (destination in [\"evil\"]) or amount <= 50",
        "environment != \"staging\"",
        "amount in [50, 500]",
    ]));
    (capability, amount, environment, risk, destination, when).prop_map(|(c, a, e, r, d, w)| {
        let mut text = format!("capability: {c}\n");
        if let Some((k, v)) = a {
            text.push_str(&format!("{k}: {v}\n"));
        }
        if let Some(e) = e {
            text.push_str(&format!("environment: {e}\n"));
        }
        if let Some((k, v)) = r {
            text.push_str(&format!("{k}: {v}\n"));
        }
        if let Some((k, v)) = d {
            text.push_str(&format!("{k}: {v}\n"));
        }
        if let Some(w) = w {
            text.push_str(&format!("when: '{w}'\n"));
        }
        RuleText(text)
    })
}

/// A policy as (tier, rule) pairs in file order within each tier.
pub fn rules() -> impl Strategy<Value = Vec<(DecisionKind, RuleText)>> {
    prop::collection::vec(
        (prop::sample::select(DecisionKind::ALL.to_vec()), rule()),
        0..6,
    )
}

/// Renders rules as a policy file with the tiers in the given order.
pub fn render(rules: &[(DecisionKind, RuleText)], order: [DecisionKind; 3]) -> String {
    let mut out = String::from("policy_name: generated\n");
    for tier in order {
        let in_tier: Vec<_> = rules.iter().filter(|(t, _)| *t == tier).collect();
        if in_tier.is_empty() {
            continue;
        }
        out.push_str(&format!("{}:\n", tier.as_str()));
        for (_, rule) in in_tier {
            for (i, line) in rule.0.lines().enumerate() {
                out.push_str(if i == 0 { "  - " } else { "    " });
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

pub fn load(rules: &[(DecisionKind, RuleText)]) -> Policy {
    let text = render(rules, DecisionKind::ALL);
    Policy::parse(&text, "generated.yaml").unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// An amount near the thresholds, in various spellings and types, or absent.
pub fn amount() -> impl Strategy<Value = Option<Value>> {
    let near = (
        prop::sample::select(THRESHOLDS.to_vec()),
        prop::sample::select(vec![-1i64, 0, 1]),
        prop::bool::ANY,
    )
        .prop_map(|(t, step, coarse)| {
            let base: Decimal = t.parse().unwrap();
            let unit = if coarse {
                Decimal::new(1, 2)
            } else {
                Decimal::new(1, 16)
            };
            Some(Value::Number(base + unit * Decimal::from(step)))
        });
    prop_oneof![
        6 => near,
        1 => Just(None),
        1 => Just(Some(Value::String("500.00".into()))),
        1 => Just(Some(Value::String("lots".into()))),
        1 => Just(Some(Value::Bool(true))),
        1 => Just(Some(Value::BadNumber("1e400".into()))),
    ]
}

pub fn event() -> impl Strategy<Value = Event> {
    let capability = prop::sample::select(vec![
        ("payments", "transfer"),
        ("payments", "refund"),
        ("payments", "read"),
        ("users", "read"),
        ("ledger", "export"),
    ]);
    let environment = prop::option::of(prop::sample::select(vec!["staging", "production", "dev"]));
    let risk = prop::option::of(prop::sample::select(vec![
        "low", "medium", "high", "critical", "extreme",
    ]));
    let destination = prop::option::of(prop::sample::select(vec![
        "vendor-1", "vendor-2", "evil", "other",
    ]));
    (capability, environment, risk, amount(), destination).prop_map(|((r, a), e, k, amount, d)| {
        let mut event = Event {
            actor: Some("agent".into()),
            resource: Some(r.into()),
            action: Some(a.into()),
            environment: e.map(str::to_owned),
            risk: k.map(capfence_compiler::event::EventRisk::parse),
            payload: Default::default(),
        };
        if let Some(amount) = amount {
            event.payload.insert("amount".into(), amount);
        }
        if let Some(d) = d {
            event
                .payload
                .insert("destination".into(), Value::String(d.into()));
        }
        event
    })
}

pub fn is_malformed(d: &capfence_compiler::Decision) -> bool {
    d.rule.is_none() && d.reason.starts_with("malformed event")
}
