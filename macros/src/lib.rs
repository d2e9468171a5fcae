//! Procedural macros of CapFence. Users reach them through the `capfence` crate
//! (`#[capfence::gate]`, `capfence::policy!`); generated code names only
//! `::capfence` paths.
