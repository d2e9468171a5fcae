//! The [`Decide`] trait: anything that turns an event into a decision.
//!
//! The reference evaluator ([`Policy`]) and the compiled decision tables
//! that `policy!` and `capfence-compile build` generate ([`Compiled`])
//! implement it, so the runtime takes either. Besides deciding, a decider
//! tells the runtime its digest, every rule's facts (caps fields, quorum,
//! eligible approvers) and its velocity windows.

use capfence_compiler::compiled::CompiledDecision;
use capfence_compiler::facts::RuleFacts;
use capfence_compiler::window::Window;
use capfence_compiler::{Decision, Event, Policy};

/// Who may implement [`Decide`]: this crate (the reference evaluator) and the
/// tables `policy!` and `capfence-compile build` generate. Not nameable
/// outside the crate but through the hidden path generated code uses.
mod seal {
    /// The seal on [`Decide`](super::Decide).
    pub trait Sealed {}
}

pub(crate) use seal::Sealed;

/// The seal, for `__private` (generated code) only.
#[doc(hidden)]
pub(crate) mod seal_for_generated {
    pub use super::seal::Sealed;
}

impl Sealed for Policy {}

/// A policy in decidable form: the reference evaluator ([`Policy`]) or a
/// generated table. Sealed: a runtime decides only with one of these, and
/// records only what it decided.
pub trait Decide: seal::Sealed + Send + Sync {
    /// Decides one event. Never panics; malformed events are denied.
    fn decide(&self, event: &Event) -> Decision;

    /// The SHA-256 digest (lowercase hex) of the policy source, recorded with
    /// every decision in the audit log.
    fn digest(&self) -> &str;

    /// Every rule's capability pattern and numerically tested fields, in
    /// precedence order: what grants' caps are checked against.
    fn rule_facts(&self) -> Vec<RuleFacts>;

    /// The policy's text, whole: what a fresh ledger records when this
    /// policy is the first it is opened with.
    fn source(&self) -> &str;

    /// Every velocity window a rule tests: the runtime computes each one's
    /// total inside the transaction that records the decision and hands it
    /// to [`decide`](Self::decide) in the event (see
    /// [`capfence_compiler::window`]).
    fn windows(&self) -> Vec<Window>;
}

impl Decide for Policy {
    fn decide(&self, event: &Event) -> Decision {
        Policy::decide(self, event)
    }

    fn source(&self) -> &str {
        &self.source
    }

    fn rule_facts(&self) -> Vec<RuleFacts> {
        Policy::rule_facts(self)
    }

    fn windows(&self) -> Vec<Window> {
        Policy::windows(self)
    }

    fn digest(&self) -> &str {
        &self.digest
    }
}

/// A compiled decision table (what `capfence::policy!` and `capfence-compile
/// build` generate): a typed view of an event, built once, and an
/// allocation-free decision on it.
pub trait Compiled: Decide {
    /// The typed view of an event.
    type View: Copy;

    /// Builds the view of `event` (intake: lookups and parsing happen here).
    fn view(&self, event: &Event) -> Self::View;

    /// Decides a view: no allocation, no string handling.
    fn decide_view(&self, view: &Self::View) -> &'static CompiledDecision;
}
