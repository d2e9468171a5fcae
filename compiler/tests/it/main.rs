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

/// The case-study policy.
pub fn fintech() -> capfence_compiler::Policy {
    capfence_compiler::Policy::load(root().join("policies/fintech_policy.yaml")).unwrap()
}
