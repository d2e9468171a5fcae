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
