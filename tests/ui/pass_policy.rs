// A policy compiled at build time, usable as a `static`.
use capfence::Decide;

static POLICY: &dyn Decide = &capfence::policy!("policies/fintech_policy.yaml");

fn main() {
    let table = capfence::policy!("policies/fintech_policy.yaml");
    let event = capfence::Event::from_json(r#"{"capability":"payments.read"}"#).unwrap();
    assert_eq!(table.decide_view(&table.view(&event)).rule, Some("allow[1]"));
    assert_eq!(POLICY.decide(&event).rule.as_deref(), Some("allow[1]"));
}
