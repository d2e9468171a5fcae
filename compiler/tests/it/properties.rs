//! Properties of the reference evaluator over random policies and events.

use capfence_compiler::event::Value;
use capfence_compiler::{DecisionKind, Policy};
use proptest::prelude::*;
use rust_decimal::Decimal;

use super::arb::{self, is_malformed};

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn adding_a_deny_rule_never_turns_a_deny_into_anything_else(
        rules in arb::rules(), extra in arb::rule(), events in prop::collection::vec(arb::event(), 16)
    ) {
        let before = arb::load(&rules);
        let mut more = rules.clone();
        more.push((DecisionKind::Deny, extra));
        let after = arb::load(&more);
        for event in &events {
            if before.decide(event).kind == DecisionKind::Deny {
                prop_assert_eq!(after.decide(event).kind, DecisionKind::Deny, "{}", event);
            }
        }
    }

    /// An added allow rule may test a field the event lacks, which makes the event
    /// malformed and so denied (fail closed); otherwise nothing changes.
    #[test]
    fn adding_an_allow_rule_never_changes_a_deny_or_approval_rule_decision(
        rules in arb::rules(), extra in arb::rule(), events in prop::collection::vec(arb::event(), 16)
    ) {
        let before = arb::load(&rules);
        let mut more = rules.clone();
        more.push((DecisionKind::Allow, extra));
        let after = arb::load(&more);
        for event in &events {
            let b = before.decide(event);
            if b.rule.is_some() && b.kind != DecisionKind::Allow {
                let a = after.decide(event);
                if is_malformed(&a) {
                    prop_assert_eq!(a.kind, DecisionKind::Deny);
                } else {
                    prop_assert_eq!(a, b, "{}", event);
                }
            }
        }
    }

    #[test]
    fn an_empty_policy_denies_everything(event in arb::event()) {
        for text in ["deny: []\n", "policy_name: nothing\n", "allow:\n"] {
            let policy = Policy::parse(text, "empty.yaml").unwrap();
            let d = policy.decide(&event);
            prop_assert_eq!(d.kind, DecisionKind::Deny);
            prop_assert_eq!(d.rule, None);
        }
    }

    #[test]
    fn tier_order_in_the_file_does_not_matter(
        rules in arb::rules(), order in Just(DecisionKind::ALL).prop_shuffle(), events in prop::collection::vec(arb::event(), 16)
    ) {
        let canonical = arb::load(&rules);
        let text = arb::render(&rules, order);
        let shuffled = Policy::parse(&text, "generated.yaml").unwrap();
        let summary = |p: &Policy| -> Vec<(String, DecisionKind, String)> {
            p.rules.iter().map(|r| (r.id.clone(), r.tier, r.decision_reason())).collect()
        };
        prop_assert_eq!(summary(&canonical), summary(&shuffled));
        for event in &events {
            prop_assert_eq!(canonical.decide(event), shuffled.decide(event));
        }
    }

    #[test]
    fn spellings_of_500_decide_alike(rules in arb::rules(), event in arb::event()) {
        let policy = arb::load(&rules);
        let with = |v: Value| {
            let mut e = event.clone();
            e.payload.insert("amount".into(), v);
            policy.decide(&e)
        };
        let reference = with(Value::Number(Decimal::from(500)));
        for v in [
            Value::Number("500.0".parse().unwrap()),
            Value::Number("500.00".parse().unwrap()),
            Value::Number(capfence_compiler::number::parse_exact("5E2").unwrap()),
            Value::String("500.00".into()),
            Value::String("5E2".into()),
        ] {
            prop_assert_eq!(&with(v), &reference);
        }
    }
}

/// A decimal of any sign and scale, often near whole amounts.
fn decimal() -> impl Strategy<Value = Decimal> {
    prop_oneof![
        (any::<i64>(), 0u32..=28).prop_map(|(m, s)| Decimal::new(m, s)),
        (-100_000i64..100_000, 0u32..=4).prop_map(|(m, s)| Decimal::new(m, s)),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            0u32..=28
        )
            .prop_map(|(lo, mid, hi, neg, s)| Decimal::from_parts(lo, mid, hi, neg, s)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    /// The generated tables rank a value by integers at a common scale; that
    /// rank is the decimal rank, for any thresholds and any value (huge
    /// mantissas, 28 decimals, negative numbers, values equal to a threshold
    /// written at another scale).
    #[test]
    fn the_integer_rank_is_the_decimal_rank(
        mut thresholds in prop::collection::vec(decimal(), 0..12),
        value in decimal(),
        pick in any::<prop::sample::Index>(),
        rescale in 0u32..6,
    ) {
        thresholds.sort();
        thresholds.dedup();
        // Often the value is a threshold, written with more decimals.
        let value = match thresholds.get(pick.index(thresholds.len().max(1))) {
            Some(t) if rescale > 0 => {
                let mut t = *t;
                t.rescale(t.scale() + rescale);
                t
            }
            _ => value,
        };
        let (scale, scaled) = capfence_compiler::compiled::fixed_point(&thresholds);
        let table = capfence_compiler::compiled::Thresholds {
            values: &thresholds,
            scale,
            scaled: scaled.as_deref(),
        };
        prop_assert_eq!(
            table.rank(value),
            capfence_compiler::compiled::rank(value, &thresholds),
            "{} among {:?}", value, thresholds
        );
    }
}

/// The MCP proxy's capability for a tool: the `tools:` map first (names are
/// exact: a look-alike is not the mapped tool), else `mcp.<tool>` for a name
/// that can be a segment, else none (the call is malformed).
#[test]
fn a_tool_is_decided_as_its_mapped_capability_or_mcp_tool() {
    let policy = Policy::parse(
        "tools:\n  transfer_funds: Payments.Transfer\nallow:\n  - capability: payments.transfer\n",
        "tools.yaml",
    )
    .unwrap();
    assert_eq!(
        policy.tool_capability("transfer_funds").as_deref(),
        Some("payments.transfer")
    );
    // A case variant of a mapped tool is not another tool.
    assert_eq!(policy.tool_capability("Transfer_Funds"), None);
    assert_eq!(
        policy.tool_capability("read_balance").as_deref(),
        Some("mcp.read_balance")
    );
    for bad in ["transfer_funds ", "transfer.funds", "", "ｔransfer", "a/b"] {
        assert_eq!(policy.tool_capability(bad), None, "{bad:?}");
    }
    for (text, expected) in [
        ("tools: [a]\n", "`tools` maps MCP tool names"),
        ("tools:\n  \"bad name\": a.b\n", "is not a plain token"),
        ("tools:\n  t: a.b.c\n", "is not a capability"),
        ("tools:\n  t: 3\n", "tools"),
    ] {
        let err = Policy::parse(text, "tools.yaml").unwrap_err().to_string();
        assert!(err.contains(expected), "{text}: {err}");
    }
}
