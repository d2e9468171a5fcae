//! No input panics the loader, the `when` parser, the suite reader or event intake.

use capfence_compiler::Policy;
use capfence_compiler::event::Event;
use capfence_compiler::suite::Suite;
use capfence_compiler::when::parse_when;
use proptest::prelude::*;

const FINTECH: &str = include_str!("../../../policies/fintech_policy.yaml");

const TOKENS: &[&str] = &[
    ":",
    "-",
    "- ",
    "[",
    "]",
    "{",
    "}",
    "*",
    "&a ",
    "*a",
    "!!str ",
    "\"",
    "'",
    "\n",
    "\n  ",
    "\n    ",
    "when: ",
    "amount_gt: ",
    "1e99999",
    "NaN",
    "~",
    "---\n",
    "\t",
    "#",
    "capability: *",
    "id: x\n",
    "risk_gte: ",
    "not in [",
    "and",
    " or ",
    "(",
    ")",
    "\u{feff}",
    "é",
    "%YAML 1.2\n",
    "? ",
    "|\n",
    ">-\n",
];

fn mutation() -> impl Strategy<Value = (usize, usize, usize)> {
    (any::<usize>(), 0usize..8, 0..TOKENS.len())
}

fn mutate(base: &str, edits: &[(usize, usize, usize)]) -> String {
    let mut bytes = base.as_bytes().to_vec();
    for (at, delete, token) in edits {
        let at = at % (bytes.len() + 1);
        let end = (at + delete).min(bytes.len());
        bytes.splice(at..end, TOKENS[*token].bytes());
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_the_loader(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let text = String::from_utf8_lossy(&bytes);
        let _ = Policy::parse(&text, "fuzz.yaml");
        let _ = Suite::parse(&text, "fuzz.yaml");
        let _ = parse_when(&text);
        let _ = Event::from_json(&text);
    }

    #[test]
    fn mutated_policies_never_panic_and_errors_have_locations(edits in prop::collection::vec(mutation(), 1..6)) {
        let text = mutate(FINTECH, &edits);
        if let Err(e) = Policy::parse(&text, "mutated.yaml") {
            let at = e.location.unwrap();
            prop_assert!(at.line >= 1 && at.column >= 1, "{}", e);
        }
    }

    #[test]
    fn arbitrary_when_expressions_never_panic(text in "[a-z .<>=!()\\[\\]\",0-9-]{0,64}") {
        let _ = parse_when(&text);
        let _ = Policy::parse(&format!("allow:\n  - capability: a.b\n    when: '{}'\n", text.replace('\'', "''")), "w.yaml");
    }

    #[test]
    fn arbitrary_event_json_never_panics(text in "\\{(\"[a-z]{1,8}\":(\"[a-zA-Z.]{0,8}\"|-?[0-9]{1,40}(\\.[0-9]{0,40})?(e-?[0-9]{1,4})?|\\{\\}|null|true),?){0,6}\\}") {
        if let Ok(event) = Event::from_json(&text) {
            let _ = super::fintech().decide(&event);
        }
    }
}

#[test]
fn deeply_nested_input_is_refused_not_overflowed() {
    let deep = format!("{}1{}", "[".repeat(100_000), "]".repeat(100_000));
    assert!(Policy::parse(&deep, "deep.yaml").is_err());
    let deep_when = format!("{}a > 1{}", "(".repeat(5_000), ")".repeat(5_000));
    let _ = parse_when(&deep_when);
    let deep_json = format!(
        "{{\"payload\":{{\"a\":{}1{}}}}}",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    assert!(Event::from_json(&deep_json).is_err());
}
