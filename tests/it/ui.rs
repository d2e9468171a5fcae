//! Compile-time behaviour of the macros, pinned by trybuild (tests/ui/).
//!
//! trybuild builds each case in a crate of its own inside the target
//! directory, wherever that is (`CARGO_TARGET_DIR`, `build.target-dir`), so a
//! case cannot name its policy relative to its own crate. The cases name
//! policies relative to this repository (`policies/treasury_agent.yaml`) and
//! are built with `CAPFENCE_POLICY_ROOT` pointing here: the test runs itself
//! again as a child process with that variable set (setting it in this
//! process would race the other tests' threads).

use std::process::Command;

const CHILD: &str = "CAPFENCE_UI_CHILD";

#[test]
fn ui() {
    if std::env::var_os(CHILD).is_some() {
        let t = trybuild::TestCases::new();
        t.pass("tests/ui/pass_policy.rs");
        t.compile_fail("tests/ui/policy_unknown_key.rs");
        t.compile_fail("tests/ui/policy_missing_file.rs");
        t.compile_fail("tests/ui/policy_not_a_string.rs");
        t.pass("tests/ui/pass_gate.rs");
        t.compile_fail("tests/ui/gate_*.rs");
        t.compile_fail("tests/ui/seal_*.rs");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = Command::new(exe)
        .args(["ui::ui", "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, "1")
        .env("CAPFENCE_POLICY_ROOT", env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run the UI cases in a child process");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the UI cases failed:\n{stdout}\n{stderr}"
    );
    // The child really ran the cases (not a filter that matched nothing).
    assert!(
        stdout.contains("1 passed") && stderr.contains("gate_unknown_capability"),
        "the child did not run the UI cases:\n{stdout}\n{stderr}"
    );
}
