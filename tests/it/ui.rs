//! Compile-time behaviour of the macros, pinned by trybuild (tests/ui/).

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/pass_policy.rs");
    t.compile_fail("tests/ui/policy_unknown_key.rs");
    t.compile_fail("tests/ui/policy_missing_file.rs");
    t.compile_fail("tests/ui/policy_not_a_string.rs");
    t.pass("tests/ui/pass_gate.rs");
    t.compile_fail("tests/ui/gate_*.rs");
    t.compile_fail("tests/ui/seal_*.rs");
}
