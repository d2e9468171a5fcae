//! The Python package (`python/`, PyO3 + maturin) under pytest: the case
//! study's program as written, exact money, exceptions, threads.
//!
//! Needs `CAPFENCE_MCP_PYTHON` to name a Python where `pip install ./python`
//! has been run (`.ci/run` does it); otherwise skipped, except under CI.

use std::process::Command;

#[test]
fn the_python_package_passes_its_tests() {
    let Some(python) = std::env::var_os("CAPFENCE_MCP_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the Python package tests: set CAPFENCE_MCP_PYTHON to a Python \
             with `pip install ./python` done"
        );
        eprintln!("skipped: the Python package tests need CAPFENCE_MCP_PYTHON (see python/)");
        return;
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(python)
        .args([
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "python/tests",
        ])
        .current_dir(root)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pytest python/tests failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains(" passed"), "{stdout}");
    assert!(!stdout.contains("skipped"), "{stdout}");
}
