//! CapFence runtime: decides agent tool calls against a policy.
//!
//! This crate is the one users depend on. It re-exports the policy types of
//! `capfence-compiler` and the macros of `capfence-macros`.

pub use capfence_compiler::eval::{Decision, DecisionKind};
pub use capfence_compiler::event::{Event, Value};
pub use capfence_compiler::policy::Policy;
pub use rust_decimal::Decimal;
