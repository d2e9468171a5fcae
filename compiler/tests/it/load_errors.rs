//! Every file in tests/fixtures/load/ is a broken policy; its error message is
//! pinned by a snapshot. Adding a case is adding a file.

use std::fs;
use std::path::Path;

use capfence_compiler::Policy;

#[test]
fn every_broken_policy_has_a_pinned_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/load");
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(
        files.len() >= 20,
        "expected the load fixtures, found {}",
        files.len()
    );
    for path in files {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let shown = format!("tests/fixtures/load/{stem}.yaml");
        let text = fs::read_to_string(&path).unwrap();
        let err = Policy::parse(&text, &shown).expect_err(&shown);
        assert!(err.location.is_some(), "{shown}: error without a location");
        let rendered = format!(
            "{err}\ncode: {}\nkey: {}",
            err.kind.code(),
            err.key.as_deref().unwrap_or("-")
        );
        insta::assert_snapshot!(stem, rendered);
    }
}

#[test]
fn unreadable_file_is_an_io_error() {
    let err = Policy::load("/nonexistent/policy.yaml").unwrap_err();
    assert_eq!(err.kind, capfence_compiler::load::LoadErrorKind::Io);
    assert!(
        err.to_string()
            .starts_with("/nonexistent/policy.yaml: cannot read policy")
    );
}

/// `policy_changes:` reads its three keys and refuses what cannot be met.
#[test]
fn policy_changes_are_checked() {
    use capfence_compiler::Policy;
    let key = "ed25519:AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";
    let other = "ed25519:ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";
    let with = |changes: &str| {
        format!(
            "approvers:\n  ops1: \"{key}\"\n  ops2: \"{other}\"\npolicy_changes:\n{changes}allow:\n  - capability: a.b\n"
        )
    };
    let ok = Policy::parse(
        &with("  approvals: 2\n  approvers: [ops1, ops2]\n  delay: 24h\n"),
        "p.yaml",
    )
    .unwrap();
    assert_eq!(ok.changes.quorum(), 2);
    assert_eq!(ok.changes.delay_secs, 86_400);
    assert!(ok.changes.may_sign(&ok, "ops2"));
    let default = Policy::parse(&with("  delay: 1h\n"), "p.yaml").unwrap();
    assert_eq!(default.changes.quorum(), 1);
    for (changes, says) in [
        (
            "  approvals: 3\n",
            "needs 3 signatures, but only 2 approvers may sign",
        ),
        ("  approvers: [ops9]\n", "unknown approver `ops9`"),
        ("  delay: soon\n", "is not a duration"),
        ("  quorum: 2\n", "unknown `policy_changes` key `quorum`"),
        ("  approvals: 0\n", "1 or more"),
    ] {
        let err = Policy::parse(&with(changes), "p.yaml")
            .unwrap_err()
            .to_string();
        assert!(err.contains(says), "{changes}: {err}");
    }
    let unsigned = Policy::parse(
        "policy_changes:\n  approvals: 1\nallow:\n  - capability: a.b\n",
        "p.yaml",
    )
    .unwrap_err()
    .to_string();
    assert!(
        unsigned.contains("needs a top-level `approvers:` list"),
        "{unsigned}"
    );
}
