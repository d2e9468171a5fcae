//! What `#[capfence::gate]` expands to at run time: the [`Context`] a gated
//! tool runs in, the [`PayloadValue`] conversion of its arguments, and the
//! [`Blocked`] error it returns when the call may not proceed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use capfence_compiler::DecisionKind;
use capfence_compiler::event::{Event, Value};
use capfence_compiler::policy::Risk;
use rust_decimal::Decimal;

use crate::runtime::ActionRuntime;
use crate::verdict::Verdict;

/// Who calls gated tools, where, and through which runtime.
///
/// ```
/// use capfence::{ActionRuntime, Context, Risk};
/// # let state = std::env::temp_dir().join(format!("capfence-ctx-doc-{}", std::process::id()));
/// let runtime = ActionRuntime::builder(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/fintech_policy.yaml"))
///     .state_dir(&state)
///     .build()?;
/// let ctx = Context::new(runtime, "treasury-agent", "production").with_risk(Risk::Low);
/// assert_eq!(ctx.actor(), "treasury-agent");
/// # std::fs::remove_dir_all(&state).ok();
/// # Ok::<(), capfence::RuntimeError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Context {
    runtime: ActionRuntime,
    actor: String,
    environment: String,
    risk: Risk,
}

thread_local! {
    static AMBIENT: RefCell<Vec<Context>> = const { RefCell::new(Vec::new()) };
}

impl Context {
    /// A context for `actor` in `environment` (risk `low` unless set).
    pub fn new(runtime: ActionRuntime, actor: &str, environment: &str) -> Context {
        Context {
            runtime,
            actor: actor.to_owned(),
            environment: environment.to_owned(),
            risk: Risk::Low,
        }
    }

    /// The same context with another risk level.
    pub fn with_risk(mut self, risk: Risk) -> Context {
        self.risk = risk;
        self
    }

    /// The actor.
    pub fn actor(&self) -> &str {
        &self.actor
    }

    /// The runtime.
    pub fn runtime(&self) -> &ActionRuntime {
        &self.runtime
    }

    /// Runs `f` with this context as the ambient one (for gated functions that
    /// take no `&Context` argument), on this thread.
    pub fn scope<T>(&self, f: impl FnOnce() -> T) -> T {
        AMBIENT.with(|a| a.borrow_mut().push(self.clone()));
        struct Pop;
        impl Drop for Pop {
            fn drop(&mut self) {
                AMBIENT.with(|a| a.borrow_mut().pop());
            }
        }
        let _pop = Pop;
        f()
    }

    /// Wraps a future so that this context is the ambient one whenever the
    /// future runs: a task-local that works with any executor.
    pub fn scope_async<F: Future>(&self, future: F) -> Scoped<F> {
        Scoped {
            context: self.clone(),
            future: Box::pin(future),
        }
    }

    /// The innermost ambient context on this thread, if any.
    pub fn current() -> Option<Context> {
        AMBIENT.with(|a| a.borrow().last().cloned())
    }
}

/// A future running inside a [`Context`] (see [`Context::scope_async`]).
pub struct Scoped<F> {
    context: Context,
    future: Pin<Box<F>>,
}

impl<F: Future> Future for Scoped<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<F::Output> {
        let this = &mut *self;
        let context = this.context.clone();
        context.scope(|| this.future.as_mut().poll(cx))
    }
}

/// The error a gated tool returns when its call may not proceed: denied, or
/// waiting for approval. Its verdict is already on the audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    verdict: Verdict,
}

impl Blocked {
    /// `deny` or `require_approval`.
    pub fn decision(&self) -> DecisionKind {
        self.verdict.decision
    }

    /// Why.
    pub fn reason(&self) -> &str {
        &self.verdict.reason
    }

    /// The ticket to approve (`T-…`), for `require_approval`.
    pub fn approval_id(&self) -> Option<&str> {
        self.verdict.approval_id.as_deref()
    }

    /// The whole verdict.
    pub fn verdict(&self) -> &Verdict {
        &self.verdict
    }
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "blocked by CapFence ({}): {}",
            self.verdict.decision, self.verdict.reason
        )
    }
}

impl std::error::Error for Blocked {}

/// A tool argument as a payload value.
pub trait PayloadValue {
    /// The value the policy sees.
    fn to_payload_value(&self) -> Value;
}

impl PayloadValue for Decimal {
    fn to_payload_value(&self) -> Value {
        Value::Number(*self)
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl PayloadValue for $t {
            fn to_payload_value(&self) -> Value {
                Value::Number(Decimal::from(*self))
            }
        }
    )*};
}
integers!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

impl PayloadValue for str {
    fn to_payload_value(&self) -> Value {
        Value::String(self.to_owned())
    }
}

impl PayloadValue for String {
    fn to_payload_value(&self) -> Value {
        Value::String(self.clone())
    }
}

impl PayloadValue for bool {
    fn to_payload_value(&self) -> Value {
        Value::Bool(*self)
    }
}

impl<T: PayloadValue + ?Sized> PayloadValue for &T {
    fn to_payload_value(&self) -> Value {
        (**self).to_payload_value()
    }
}

impl<T: PayloadValue> PayloadValue for Option<T> {
    fn to_payload_value(&self) -> Value {
        self.as_ref()
            .map_or(Value::Null, PayloadValue::to_payload_value)
    }
}

/// Decides a gated call: builds the event, executes it (decision and audit
/// record), and lets the call proceed only if it is authorized. `digest` is
/// the policy the gate was checked against at compile time: a runtime on any
/// other policy denies the call (recorded), naming both digests.
#[doc(hidden)]
pub fn check(
    context: Option<&Context>,
    resource: &str,
    action: &str,
    digest: &str,
    payload: BTreeMap<String, Value>,
) -> Result<Verdict, Blocked> {
    let ambient;
    let context = match context {
        Some(c) => c,
        None => match Context::current() {
            Some(c) => {
                ambient = c;
                &ambient
            }
            None => {
                return Err(Blocked {
                    verdict: Verdict::deny(format!(
                        "no CapFence context for {resource}.{action}: pass a &capfence::Context \
                         or run inside Context::scope"
                    )),
                });
            }
        },
    };
    let mut event = Event::new(
        &context.actor,
        resource,
        action,
        &context.environment,
        context.risk.name(),
    );
    event.payload = payload;
    let running = context.runtime.policy_digest();
    let verdict = if running == digest {
        context.runtime.execute_event(&event)
    } else {
        context.runtime.deny_event(
            &event,
            &format!(
                "denied: this gate was checked against policy {digest}, but the runtime runs \
                 policy {running}; build the runtime from the same policy \
                 (ActionRuntime::compiled_builder(&capfence::policy!(…)))"
            ),
        )
    };
    if verdict.authorized {
        Ok(verdict)
    } else {
        Err(Blocked { verdict })
    }
}
