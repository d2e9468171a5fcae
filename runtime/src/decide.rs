//! The [`Decide`] trait: anything that turns an event into a decision.
//!
//! The reference evaluator ([`Policy`]) implements it, and so will the
//! compiled decision tables that `policy!` generates, so the runtime takes
//! either.

use capfence_compiler::{Decision, Event, Policy};

/// A policy in decidable form.
pub trait Decide: Send + Sync {
    /// Decides one event. Never panics; malformed events are denied.
    fn decide(&self, event: &Event) -> Decision;

    /// The SHA-256 digest (lowercase hex) of the policy source, recorded with
    /// every decision in the audit log.
    fn digest(&self) -> &str;
}

impl Decide for Policy {
    fn decide(&self, event: &Event) -> Decision {
        Policy::decide(self, event)
    }

    fn digest(&self) -> &str {
        &self.digest
    }
}
