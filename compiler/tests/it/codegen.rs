//! `capfence-compile build` and the generator: stable bytes, no heap types,
//! the digest carried, files tracked for rebuilds.

use std::process::Command;

use capfence_compiler::codegen::{generate_expr, render_file};

use super::{fintech, root};

fn case_study_file() -> String {
    let mut policy = fintech();
    policy.file = "policies/fintech_policy.yaml".into();
    render_file(&policy)
}

#[test]
fn the_case_study_table_is_pinned() {
    insta::assert_snapshot!("fintech_table", case_study_file());
}

#[test]
fn build_is_deterministic_and_heap_free() {
    let dir = std::env::temp_dir().join(format!("capfence-build-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut outputs = Vec::new();
    for run in 0..2 {
        let out = dir.join(format!("table{run}.rs"));
        let status = Command::new(env!("CARGO_BIN_EXE_capfence-compile"))
            .args(["build", "policies/fintech_policy.yaml", "-o"])
            .arg(&out)
            .current_dir(root())
            .status()
            .unwrap();
        assert!(status.success());
        outputs.push(std::fs::read(&out).unwrap());
    }
    assert_eq!(outputs[0], outputs[1], "same policy, same bytes");
    let text = String::from_utf8(outputs.remove(0)).unwrap();
    assert_eq!(text, case_study_file());
    for heap in [
        "Vec",
        "String",
        "Box<",
        "format!",
        "HashMap",
        "BTreeMap",
        "to_string",
        "to_owned",
        "dyn ",
    ] {
        assert!(!text.contains(heap), "generated table mentions `{heap}`");
    }
    assert!(text.contains(&fintech().digest));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn the_macro_form_tracks_the_policy_file() {
    let tokens = generate_expr(
        &fintech(),
        &["/abs/policies/fintech_policy.yaml".to_owned()],
    )
    .to_string();
    assert!(
        tokens.contains("include_bytes ! (\"/abs/policies/fintech_policy.yaml\")"),
        "{tokens}"
    );
}

#[test]
fn build_reports_policy_errors_with_exit_2() {
    let out = Command::new(env!("CARGO_BIN_EXE_capfence-compile"))
        .args([
            "build",
            "compiler/tests/fixtures/load/unknown_key.yaml",
            "-o",
            "-",
        ])
        .current_dir(root())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown_key.yaml:3:5"));
}

#[test]
fn editing_the_policy_changes_the_item() {
    let before =
        capfence_compiler::Policy::parse("allow:\n  - capability: payments.read\n", "p.yaml")
            .unwrap();
    let after = capfence_compiler::Policy::parse(
        "allow:\n  - capability: payments.read\n    environment: production\n",
        "p.yaml",
    )
    .unwrap();
    let track = ["/abs/p.yaml".to_owned()];
    let a = generate_expr(&before, &track).to_string();
    let b = generate_expr(&after, &track).to_string();
    assert_ne!(a, b);
    assert!(a.contains(&before.digest) && b.contains(&after.digest));
    assert_eq!(
        a,
        generate_expr(&before, &track).to_string(),
        "deterministic"
    );
}
