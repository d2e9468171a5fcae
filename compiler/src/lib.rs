//! CapFence policy compiler.
//!
//! Turns a YAML policy into an IR ([`Policy`]), decides events with the reference
//! evaluator ([`Policy::decide`]), and runs regression suites ([`suite`]). It does
//! no I/O except reading the files it is asked to read, and knows nothing of
//! storage, approvals or audit: those belong to the `capfence` runtime crate.
//!
//! ```
//! use capfence_compiler::{Policy, event::Event, eval::DecisionKind};
//!
//! let policy = Policy::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/fintech_policy.yaml"))?;
//! let event = Event::from_json(r#"{"actor":"a","resource":"payments","action":"transfer",
//!     "environment":"production","risk":"low","payload":{"amount":500.0000000000000001}}"#)?;
//! let decision = policy.decide(&event);
//! assert_eq!(decision.kind, DecisionKind::RequireApproval);
//! assert_eq!(decision.rule.as_deref(), Some("require_approval[0]"));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod aggregate;
pub mod analysis;
pub mod capability;
pub mod codegen;
pub mod compiled;
pub mod diagnostic;
pub mod eval;
pub mod event;
pub mod explain;
pub mod facts;
pub mod keys;
pub mod lines;
pub mod load;
pub mod number;
pub mod policy;
pub mod source;
pub mod suggest;
pub mod suite;
pub mod time;
pub mod token;
pub mod tools;
pub mod when;
pub mod window;
pub mod yaml;

pub use eval::{Decision, DecisionKind};
pub use event::Event;
pub use load::LoadError;
pub use policy::Policy;
