//! Cross-crate integration tests (one binary: link time matters on small machines).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs
)]

mod build;
mod compiled;
mod demo;
mod differential;
mod fuzz_replay;
mod gate;
mod gate_typed;
mod hardening;
mod sealed;
mod ui;
