//! Integration tests of capfence-compiler (one test binary).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

pub mod arb;
mod cli;
mod codegen;
mod diff;
mod docs;
mod lint;
mod load_errors;
mod properties;
mod reference;
mod robustness;
mod suite_properties;

use std::path::{Path, PathBuf};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs `capfence-compile` from the workspace root with `stdin` as input.
pub fn compile_with(args: &[&str], stdin: &str) -> std::process::Output {
    compile_with_bytes(args, stdin.as_bytes())
}

/// Runs `capfence-compile` with raw bytes as input.
pub fn compile_with_bytes(args: &[&str], stdin: &[u8]) -> std::process::Output {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new(env!("CARGO_BIN_EXE_capfence-compile"))
        .args(args)
        .current_dir(root())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let written = child.stdin.take().unwrap().write_all(stdin);
    // A command that exits before reading its input (a policy that does not
    // load, say) closes the pipe: that is its answer, not a test failure.
    if let Err(e) = written {
        assert_eq!(e.kind(), std::io::ErrorKind::BrokenPipe, "{e}");
    }
    child.wait_with_output().unwrap()
}

/// The case-study policy.
pub fn fintech() -> capfence_compiler::Policy {
    capfence_compiler::Policy::load(root().join("policies/fintech_policy.yaml")).unwrap()
}
