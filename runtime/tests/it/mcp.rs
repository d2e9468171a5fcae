//! `capfence mcp-proxy` against the official MCP Python SDK (tests/mcp):
//! the SDK's stdio client drives the proxy in front of an SDK server.
//!
//! The Python side needs a virtual environment with tests/mcp/requirements.txt;
//! `CAPFENCE_MCP_PYTHON` names its interpreter (`.ci/run` makes one). Without
//! it the test says it was skipped, except under CI (`CI` set), where a
//! missing environment is a failure: CI never passes without running it.

use std::process::Command;

#[test]
fn the_mcp_sdk_drives_the_proxy() {
    let Some(python) = std::env::var_os("CAPFENCE_MCP_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the MCP tests: set CAPFENCE_MCP_PYTHON to a Python with \
             tests/mcp/requirements.txt"
        );
        eprintln!(
            "skipped: the MCP SDK tests need CAPFENCE_MCP_PYTHON (a Python with \
             tests/mcp/requirements.txt installed); see tests/mcp/"
        );
        return;
    };
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/..");
    let out = Command::new(python)
        .args(["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/mcp"])
        .current_dir(root)
        .env("CAPFENCE_BIN", env!("CARGO_BIN_EXE_capfence"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pytest tests/mcp failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // pytest ran the tests, not zero of them.
    assert!(stdout.contains(" passed"), "{stdout}");
    assert!(!stdout.contains("skipped"), "{stdout}");
}
