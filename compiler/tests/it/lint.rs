//! `capfence-compile lint`: one snapshot per fixture in tests/fixtures/lint/,
//! the case study's expected findings, the output formats and exit codes, and
//! a property test of the analysis against the reference evaluator.

use std::fs;
use std::path::Path;
use std::process::Command;

use capfence_compiler::Policy;
use capfence_compiler::analysis::{Analysis, lint};
use capfence_compiler::diagnostic::{Diagnostic, render_human, render_json, render_sarif};
use capfence_compiler::event::Event;
use proptest::prelude::*;

use super::{arb, root};

fn lint_file(path: &Path, shown: &str) -> Vec<Diagnostic> {
    let text = fs::read_to_string(path).unwrap();
    match Policy::parse(&text, shown) {
        Ok(policy) => lint(&policy),
        Err(e) => vec![Diagnostic::from(&e)],
    }
}

#[test]
fn every_lint_fixture_has_its_snapshot() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/lint");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 15);
    for path in files {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let shown = format!("tests/fixtures/lint/{stem}.yaml");
        let diagnostics = lint_file(&path, &shown);
        let text = fs::read_to_string(&path).unwrap();
        let rendered = render_human(&diagnostics, &|_| Some(text.clone()));
        insta::assert_snapshot!(format!("lint_{stem}"), rendered);
    }
}

#[test]
fn the_case_study_policy_has_exactly_the_expected_findings() {
    let found: Vec<(&str, Option<String>)> = lint(&super::fintech())
        .into_iter()
        .map(|d| (d.code.as_str(), d.rule))
        .collect();
    let id = |s: &str| Some(s.to_owned());
    assert_eq!(
        found,
        [
            ("conflict", id("require_approval[0]")),
            ("conflict", id("allow[0]")),
            ("unbounded-amount", id("allow[0]")),
            ("default-deny-gap", id("require_approval[1]")),
            ("unauthenticated-approvals", id("require_approval[0]")),
        ]
    );
    let gap = lint(&super::fintech())
        .into_iter()
        .find(|d| d.code == "default-deny-gap")
        .unwrap();
    assert!(
        gap.message
            .starts_with("payments.refund with amount <= 100 "),
        "{}",
        gap.message
    );
    let conflict = lint(&super::fintech()).remove(1);
    assert!(
        conflict.notes[0].contains("environment = staging, 50 < amount <= 500"),
        "{:?}",
        conflict.notes
    );
}

fn compile(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_capfence-compile"))
        .args(args)
        .current_dir(root())
        .output()
        .unwrap()
}

#[test]
fn exit_codes_follow_the_findings() {
    assert_eq!(
        compile(&["lint", "policies/fintech_policy.yaml"])
            .status
            .code(),
        Some(0)
    );
    assert_eq!(
        compile(&["lint", "policies/fintech_policy.yaml", "--deny-warnings"])
            .status
            .code(),
        Some(1)
    );
    let unsat = "compiler/tests/fixtures/lint/unsatisfiable_decimals.yaml";
    assert_eq!(compile(&["lint", unsat]).status.code(), Some(1));
    assert_eq!(
        compile(&[
            "lint",
            "compiler/tests/fixtures/lint/clean.yaml",
            "--deny-warnings"
        ])
        .status
        .code(),
        Some(0)
    );
    assert_eq!(compile(&["lint", "no/such.yaml"]).status.code(), Some(2));
    assert_eq!(compile(&["lint"]).status.code(), Some(2));
    // Several files per call.
    let out = compile(&[
        "lint",
        "policies/fintech_policy.yaml",
        unsat,
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["errors"], 1);
    assert_eq!(json["warnings"], 4);
}

#[test]
fn json_output_has_the_documented_shape() {
    let json = render_json(&lint(&super::fintech()));
    let keys = |v: &serde_json::Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&json), ["diagnostics", "errors", "warnings"]);
    let first = &json["diagnostics"][0];
    assert_eq!(
        keys(first),
        [
            "code", "column", "file", "line", "message", "related", "rule", "severity"
        ]
    );
    assert_eq!(first["code"], "conflict");
    assert_eq!(
        first["related"][0],
        serde_json::json!({"rule": "deny[0]", "line": 7})
    );
    assert_eq!(
        (json["errors"].as_u64(), json["warnings"].as_u64()),
        (Some(0), Some(4))
    );
}

#[test]
fn sarif_output_has_the_required_fields() {
    let sarif = render_sarif(&lint(&super::fintech()));
    assert_eq!(sarif["version"], "2.1.0");
    let run = &sarif["runs"][0];
    let driver = &run["tool"]["driver"];
    assert_eq!(driver["name"], "capfence-compile");
    let rules = driver["rules"].as_array().unwrap();
    for code in [
        "unsatisfiable-rule",
        "shadowed-rule",
        "conflict",
        "unbounded-amount",
        "default-deny-gap",
    ] {
        let rule = rules
            .iter()
            .find(|r| r["id"] == code)
            .unwrap_or_else(|| panic!("{code}"));
        assert!(rule["help"]["text"].as_str().is_some_and(|t| !t.is_empty()));
    }
    let results = run["results"].as_array().unwrap();
    assert_eq!(results.len(), 5);
    for result in results {
        // SARIF 2.1.0 requires `message`; code scanning needs ruleId, level and a physical location.
        assert!(result["message"]["text"].is_string());
        assert!(["error", "warning", "note"].contains(&result["level"].as_str().unwrap()));
        let index = result["ruleIndex"].as_u64().unwrap() as usize;
        assert_eq!(rules[index]["id"], result["ruleId"]);
        let location = &result["locations"][0]["physicalLocation"];
        assert!(
            location["artifactLocation"]["uri"]
                .as_str()
                .unwrap()
                .ends_with("policies/fintech_policy.yaml")
        );
        assert!(location["region"]["startLine"].as_u64().unwrap() >= 1);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// No event is decided by a rule reported shadowed or unsatisfiable; every
    /// conflict and gap witness gets the decision the note reports.
    #[test]
    fn the_analysis_agrees_with_the_reference_evaluator(
        rules in arb::rules(), events in prop::collection::vec(arb::event(), 64)
    ) {
        let policy = arb::load(&rules);
        let diagnostics = lint(&policy);
        let never: Vec<&str> = diagnostics
            .iter()
            .filter(|d| matches!(d.code.as_str(), "shadowed-rule" | "unsatisfiable-rule"))
            .filter_map(|d| d.rule.as_deref())
            .collect();
        for event in &events {
            let decision = policy.decide(event);
            if let Some(rule) = decision.rule.as_deref() {
                prop_assert!(!never.contains(&rule), "{} decided {} but was reported never deciding", rule, event);
            }
        }
        for d in &diagnostics {
            for note in &d.notes {
                let Some(json) = note.split("e.g. ").nth(1).filter(|j| j.starts_with('{')) else { continue };
                let witness = Event::from_json(json).unwrap();
                let decision = policy.decide(&witness);
                match d.code.as_str() {
                    "default-deny-gap" => prop_assert_eq!(decision.rule, None, "{}", json),
                    "conflict" => {
                        let higher = note.split(' ').next().unwrap();
                        prop_assert_eq!(decision.rule.as_deref(), Some(higher), "{}", json);
                        let rule = policy.rules.iter().find(|r| Some(r.id.as_str()) == d.rule.as_deref()).unwrap();
                        prop_assert!(rule.matches(&witness), "witness outside {}: {}", rule.id, json);
                    }
                    _ => {}
                }
            }
        }
    }

    /// Each rule's effective region holds exactly the events it decides.
    #[test]
    fn effective_regions_are_exact(rules in arb::rules(), events in prop::collection::vec(arb::event(), 64)) {
        let policy = arb::load(&rules);
        let analysis = Analysis::new(&policy);
        for event in &events {
            let decision = policy.decide(event);
            if decision.reason.starts_with("malformed") {
                continue;
            }
            for (i, rule) in policy.rules.iter().enumerate() {
                let Some(region) = analysis.effective(i) else { continue };
                let inside = region.boxes.iter().any(|b| contains(b, event));
                prop_assert_eq!(inside, decision.rule.as_deref() == Some(rule.id.as_str()), "{} {}", rule.id, event);
            }
        }
    }
}

/// Whether a (well-formed) event lies in a box.
fn contains(b: &capfence_compiler::analysis::region::Box, event: &Event) -> bool {
    use capfence_compiler::policy::Field;
    let (Some(r), Some(a)) = (&event.resource, &event.action) else {
        return false;
    };
    if !b.resource.contains(r) || !b.action.contains(a) {
        return false;
    }
    if let Some(risk) = event
        .risk
        .as_ref()
        .and_then(capfence_compiler::event::EventRisk::level)
    {
        if !b.risk.contains(risk) {
            return false;
        }
    } else if b.risk != capfence_compiler::policy::RiskSet::ALL {
        return false;
    }
    for (field, interval) in &b.numbers {
        let Field::Payload(name) = field else {
            return false;
        };
        match event.payload.get(name).and_then(|v| v.as_number()) {
            Some(n) if interval.contains(n) => {}
            _ => return false,
        }
    }
    for (field, set) in &b.strings {
        let value = match field {
            Field::Actor => event.actor.clone(),
            Field::Environment => event.environment.clone(),
            Field::Payload(name) => event
                .payload
                .get(name)
                .and_then(|v| v.as_str())
                .map(str::to_owned),
            _ => None,
        };
        match value {
            Some(v) if set.contains(&v) => {}
            _ => return false,
        }
    }
    true
}

#[test]
fn gates_in_the_sources_are_checked_against_the_rules() {
    let src = "compiler/tests/fixtures/src";
    let out = compile(&[
        "lint",
        "policies/fintech_policy.yaml",
        "--src",
        src,
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let found: Vec<(String, String, u64)> = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["code"].as_str().unwrap().contains("gate"))
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_owned(),
                d["file"].as_str().unwrap().to_owned(),
                d["line"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        found,
        [
            (
                "gate-without-rule".to_owned(),
                "compiler/tests/fixtures/src/agent/tools.rs".to_owned(),
                12
            ),
            (
                "rule-without-gate".to_owned(),
                "policies/fintech_policy.yaml".to_owned(),
                16
            ),
            (
                "rule-without-gate".to_owned(),
                "policies/fintech_policy.yaml".to_owned(),
                22
            ),
        ]
    );
    let human =
        String::from_utf8(compile(&["lint", "policies/fintech_policy.yaml", "--src", src]).stdout)
            .unwrap();
    assert!(
        human.contains("warning[gate-without-rule]: `export` gates `ledger.export`"),
        "{human}"
    );
    assert!(
        human.contains("--> compiler/tests/fixtures/src/agent/tools.rs:12:22"),
        "{human}"
    );
    let sarif: serde_json::Value = serde_json::from_slice(
        &compile(&[
            "lint",
            "policies/fintech_policy.yaml",
            "--src",
            src,
            "--format",
            "sarif",
        ])
        .stdout,
    )
    .unwrap();
    let ids: Vec<&str> = sarif["runs"][0]["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["ruleId"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"gate-without-rule") && ids.contains(&"rule-without-gate"),
        "{ids:?}"
    );
    assert_eq!(
        compile(&[
            "lint",
            "policies/fintech_policy.yaml",
            "--src",
            "no/such/dir"
        ])
        .status
        .code(),
        Some(2)
    );
}

/// A source tree an attacker (or an accident) shaped: a symlink back to its
/// root, a gated file that does not parse, a gate hidden in `target/` and in
/// a dot directory. The walk ends, the unparsed file is an error (its gates
/// were not checked: exit 1, never a silent pass), and the skipped
/// directories stay skipped.
#[test]
fn a_hostile_source_tree_is_walked_to_the_end_and_fails_closed() {
    let root = std::env::temp_dir().join(format!("capfence-lint-src-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let write = |path: &str, text: &str| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    };
    write(
        "a/ok.rs",
        "#[capfence::gate(\"payments.transfer\")]\nfn t() {}\n#[capfence::gate(\"payments.refund\")]\nfn r() {}\n#[capfence::gate(\"payments.read\")]\nfn b() {}\n",
    );
    write(
        "b/broken.rs",
        "#[capfence::gate(\"ledger.export\")]\nfn export( {\n",
    );
    write(
        "target/gen.rs",
        "#[capfence::gate(\"ledger.wipe\")]\nfn w() {}\n",
    );
    write(
        ".hidden/x.rs",
        "#[capfence::gate(\"ledger.wipe\")]\nfn w() {}\n",
    );
    std::os::unix::fs::symlink(&root, root.join("a/loop")).unwrap();
    let src = root.display().to_string();
    let out = compile(&[
        "lint",
        "policies/fintech_policy.yaml",
        "--src",
        &src,
        "--format",
        "json",
    ]);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let codes: Vec<(String, String)> = json["diagnostics"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| {
            let code = d["code"].as_str().unwrap();
            code.contains("gate") || code.contains("source")
        })
        .map(|d| {
            (
                d["code"].as_str().unwrap().to_owned(),
                d["file"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [("unparsed-source".to_owned(), format!("{src}/b/broken.rs"))],
        "{json}"
    );
    assert_eq!(out.status.code(), Some(1));
    let human =
        String::from_utf8(compile(&["lint", "policies/fintech_policy.yaml", "--src", &src]).stdout)
            .unwrap();
    assert!(
        human.contains("error[unparsed-source]") && human.contains("does not parse as Rust (2:"),
        "{human}"
    );
    std::fs::remove_dir_all(&root).unwrap();
}

/// Every code a diagnostic can carry is a SARIF rule with help text, and a
/// result's `ruleIndex` points at its own rule (a load error's code too:
/// codes and help text are one type, so none can be missing).
#[test]
fn every_code_has_its_sarif_rule_and_results_point_at_it() {
    use capfence_compiler::diagnostic::Code;
    let err = capfence_compiler::Policy::parse(
        "allow:\n  - capability: payments.transfer\n    actor_in: [\"bad actor\"]\n",
        "p.yaml",
    )
    .unwrap_err();
    let diagnostic = Diagnostic::from(&err);
    assert_eq!(diagnostic.code, "not-a-token");
    let sarif = render_sarif(&[diagnostic]);
    let rules = sarif["runs"][0]["tool"]["driver"]["rules"]
        .as_array()
        .unwrap();
    assert_eq!(rules.len(), Code::all().count());
    for (i, code) in Code::all().enumerate() {
        assert_eq!(rules[i]["id"], code.as_str());
        assert!(!code.help().is_empty(), "{code}");
    }
    let result = &sarif["runs"][0]["results"][0];
    let index = result["ruleIndex"].as_u64().unwrap() as usize;
    assert_eq!(rules[index]["id"], "not-a-token");
    assert_eq!(result["ruleId"], "not-a-token");
}
