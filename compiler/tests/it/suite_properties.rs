//! `properties:` in test suites: checked exactly, with counterexamples that
//! `eval` confirms, and `--coverage`.

use capfence_compiler::event::Event;
use capfence_compiler::suite::Suite;
use proptest::prelude::*;

use super::{arb, compile_with as compile, fintech, root};

const FAILING: &str = "tests/fixtures/suites/failing_property.tests.yaml";

#[test]
fn a_failing_property_prints_a_counterexample_that_eval_confirms() {
    let out = compile(&["test", "policies/fintech_policy.yaml", FAILING], "");
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    insta::assert_snapshot!("failing_property", text);
    let json: serde_json::Value = serde_json::from_slice(
        &compile(
            &[
                "test",
                "policies/fintech_policy.yaml",
                FAILING,
                "--format",
                "json",
            ],
            "",
        )
        .stdout,
    )
    .unwrap();
    let broken = &json["properties"][0];
    assert_eq!(broken["holds"], false);
    assert_eq!(json["properties"][1]["holds"], true);
    let event = broken["counterexample"]["event"].to_string();
    let eval = compile(
        &["eval", "policies/fintech_policy.yaml"],
        &format!("{event}\n"),
    );
    let decided: serde_json::Value = serde_json::from_slice(&eval.stdout).unwrap();
    assert_eq!(decided["decision"], broken["counterexample"]["decision"]);
    assert_eq!(decided["rule"], broken["counterexample"]["rule"]);
}

#[test]
fn coverage_lists_rules_nothing_exercised() {
    let dir = std::env::temp_dir().join(format!("capfence-coverage-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let suite = dir.join("thin.tests.yaml");
    std::fs::write(
        &suite,
        "properties:\n  - name: reads\n    for: { capability: payments.read }\n    expect: allow\ncases:\n  - name: big\n    event: { capability: payments.transfer, environment: production, payload: { amount: 20000 } }\n    expect: deny\n",
    )
    .unwrap();
    let out = compile(
        &[
            "test",
            "policies/fintech_policy.yaml",
            &suite.to_string_lossy(),
            "--coverage",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("coverage: rules no example case decided: deny[1], require_approval[0], require_approval[1], allow[0], allow[1]\n"), "{text}");
    assert!(text.contains("coverage: rules no property touches: deny[0], deny[1], require_approval[0], require_approval[1], allow[0]\n"), "{text}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn property_mistakes_are_located() {
    let err = Suite::parse("properties:\n  - name: x\n    for: { capability: payments.transfer, amount_gtt: 5 }\n    expect: deny\n", "s.yaml").unwrap_err();
    assert!(
        err.to_string().starts_with(
            "s.yaml:3:43: `for`: unknown key `amount_gtt` in rule `for` of the property at line 2"
        ),
        "{err}"
    );
    let err = Suite::parse(
        "properties:\n  - name: x\n    for: { capability: payments.read }\n    expect_not: maybe\n",
        "s.yaml",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .starts_with("s.yaml:4:17: `expect_not` takes allow"),
        "{err}"
    );
    let err = Suite::parse(
        "properties:\n  - name: x\n    for: { capability: payments.read }\n",
        "s.yaml",
    )
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("property has no `expect, expect_not or expect_one_of`"),
        "{err}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// A property that holds is never broken by a random event of its region;
    /// a property that fails has a counterexample in its region that gets the
    /// reported decision.
    #[test]
    fn properties_agree_with_the_reference(
        rules in arb::rules(), region in arb::rule(), kind in 0usize..3, events in prop::collection::vec(arb::event(), 64)
    ) {
        let policy = arb::load(&rules);
        let decision = ["allow", "require_approval", "deny"][kind];
        let body: String = region.0.lines().map(|l| format!("      {l}\n")).collect();
        let text = format!("properties:\n  - name: p\n    for:\n{body}    expect_not: {decision}\n");
        let suite = Suite::parse(&text, "p.yaml").unwrap();
        let result = suite.check_properties(&policy).pop().unwrap();
        let property = &suite.properties[0].region;
        match &result.counterexample {
            None => {
                prop_assert!(result.unchecked.is_none());
                for e in &events {
                    let d = policy.decide(e);
                    if property.matches(e) && !d.reason.starts_with("malformed") {
                        prop_assert_ne!(d.kind.as_str(), decision, "{} breaks a property reported to hold", e);
                    }
                }
            }
            Some(c) => {
                let e = Event::from_json(&c.event).unwrap();
                prop_assert!(property.matches(&e), "counterexample outside the region: {}", c.event);
                let d = policy.decide(&e);
                prop_assert_eq!(d.kind, c.decision);
                prop_assert_eq!(d.rule, c.rule.clone());
                prop_assert_eq!(d.kind.as_str(), decision);
            }
        }
    }
}

#[test]
fn the_shipped_suite_has_properties_that_hold() {
    let suite = Suite::load(root().join("policies/fintech_policy.tests.yaml")).unwrap();
    assert!(suite.properties.len() >= 5);
    assert!(suite.check_properties(&fintech()).iter().all(|p| p.holds()));
}
