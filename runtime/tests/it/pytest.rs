//! The Python suites under pytest, one interpreter for both:
//! - `tests/mcp`: `capfence mcp-proxy` against the official MCP Python SDK
//!   (the SDK's stdio client drives the proxy in front of an SDK server);
//! - `python/tests`: the Python package (`python/`, PyO3 + maturin): the case
//!   study's program as written, exact money, the gate, signed approvals.
//!
//! `CAPFENCE_MCP_PYTHON` names a Python with tests/mcp/requirements.txt
//! installed and `pip install ./python` done (`.ci/run` makes one). Without
//! it each test says it was skipped, except under CI (`CI` set), where a
//! missing interpreter is a failure: CI never passes without running them.

use std::process::Command;

/// Runs pytest on `suite` (relative to the repository root) and asserts it
/// ran tests and all passed, none skipped.
fn pytest(suite: &str, env: &[(&str, &str)]) {
    let Some(python) = std::env::var_os("CAPFENCE_MCP_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run {suite}: set CAPFENCE_MCP_PYTHON to a Python with \
             tests/mcp/requirements.txt installed and `pip install ./python` done"
        );
        eprintln!(
            "skipped: {suite} needs CAPFENCE_MCP_PYTHON (a Python with \
             tests/mcp/requirements.txt and ./python installed)"
        );
        return;
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", suite])
        .current_dir(root)
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pytest {suite} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // pytest ran the tests, not zero of them, and skipped none.
    assert!(stdout.contains(" passed"), "{stdout}");
    assert!(!stdout.contains("skipped"), "{stdout}");
}

#[test]
fn the_mcp_sdk_drives_the_proxy() {
    pytest(
        "tests/mcp",
        &[("CAPFENCE_BIN", env!("CARGO_BIN_EXE_capfence"))],
    );
}

#[test]
fn the_python_package_passes_its_tests() {
    pytest("python/tests", &[]);
}

/// The operator console in Debian's Chromium, driven by Selenium
/// (`tests/console`). Outside CI a machine without Chromium skips it.
#[test]
fn the_console_works_in_a_browser() {
    let browser = ["/usr/bin/chromium", "/usr/bin/chromedriver"];
    if !browser.iter().all(|p| std::path::Path::new(p).exists()) {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the browser tests: install Debian's chromium and chromium-driver"
        );
        eprintln!("skipped: the browser tests need Debian's chromium and chromium-driver");
        return;
    }
    pytest(
        "tests/console",
        &[("CAPFENCE_BIN", env!("CARGO_BIN_EXE_capfence"))],
    );
}
