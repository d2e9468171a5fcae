//! CapFence runtime: decides agent tool calls against a policy, settles
//! approvals, and records every decision in a SHA-256-chained audit log before
//! it answers.
//!
//! This is the one crate users depend on. It re-exports the policy types of
//! `capfence-compiler`.
//!
//! ```
//! use capfence::{payload, ActionEvent, ActionRuntime, DecisionKind, Risk};
//!
//! let state = std::env::temp_dir().join(format!("capfence-lib-doc-{}", std::process::id()));
//! let runtime = ActionRuntime::builder(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/fintech_policy.yaml"))
//!     .state_dir(&state)
//!     .build()?;
//! let safe = ActionEvent::create("treasury-agent", "transfer", "payments", "production", Risk::Low,
//!     payload! {"amount" => "120.00", "destination" => "vendor-corp-123"});
//! let verdict = runtime.execute(&safe);
//! assert!(verdict.authorized);
//! assert_eq!(verdict.decision, DecisionKind::Allow);
//! assert_eq!(runtime.verify()?.0, 2); // the policy's activation and the decision, chain intact
//! # std::fs::remove_dir_all(&state)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod action;
pub mod approvals;
pub mod audit;
pub mod checkpoint;
pub mod clock;
pub mod decide;
pub mod gate;
pub mod ledger;
pub mod mcp;
pub mod merkle;
#[cfg(feature = "reconcile")]
pub mod reconcile;
pub mod runtime;
#[cfg(feature = "serve")]
pub mod serve;
pub mod signing;
pub mod store;
#[cfg(feature = "testing")]
pub mod testing;
pub mod verdict;

pub use action::ActionEvent;
pub use approvals::{Grant, GrantId, GrantLimits, Ticket, TicketId, TicketStatus};
pub use audit::{AuditRecord, RecordKind};
pub use capfence_compiler::compiled::CompiledDecision;
pub use capfence_compiler::eval::{Cause, Decision, DecisionKind, Fault};
pub use capfence_compiler::event::{Event, EventRisk, Value};
pub use capfence_compiler::policy::{Policy, Risk};
pub use capfence_macros::{gate, gate_decision, policy};
pub use decide::{Compiled, Decide};
pub use gate::{Blocked, Context, PayloadValue, RailReceipt};
pub use ledger::{Ledger, OperatorError, Outcome, OutcomeError, Refusal, VerifyError};
pub use runtime::{ActionRuntime, RuntimeBuilder, RuntimeError};
pub use rust_decimal::Decimal;
pub use signing::OperatorKey;
pub use store::StoreError;
pub use verdict::{
    DetailCause, GrantDetail, LimitDetail, MalformedDetail, TicketDetail, Verdict, VerdictDetail,
    WindowDetail,
};

/// What generated code names; not part of the public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::decide::seal_for_generated::Sealed;
    pub use crate::decide::{Compiled, Decide};
    pub use crate::gate::{
        Context, ErrorText, NoErrorText, NoReceipt, Passage, PayloadValue, Probe, ReceiptParts,
        Recording, Settling, gate, gate_async,
    };
    pub use capfence_compiler::compiled::{
        Arg, CompiledDecision, DEFAULT_DENY, GateContext, MISSING_NUM, MISSING_SYM, NumSlot,
        RiskSlot, SlotState, SymSlot, Thresholds, arg_num, arg_sym, arg_text, default_deny,
        gate_fault, name_fault, name_fault_decision, num, payload_sym, pick, risk, risk_level, sym,
        text_sym,
    };
    pub use capfence_compiler::eval::{Cause, Decision, DecisionKind, Fault, NameFault};
    pub use capfence_compiler::event::Event;
    pub use capfence_compiler::event::Value;
    pub use capfence_compiler::facts::{Eligible, Limit, RuleFactList, RuleFacts};
    pub use capfence_compiler::policy::FieldType;
    pub use capfence_compiler::window::{Window, WindowList};
    pub use rust_decimal::Decimal;
    pub use std::borrow::Cow;
}
