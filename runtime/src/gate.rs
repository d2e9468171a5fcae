//! What `#[capfence::gate]` expands to at run time: the [`Context`] a gated
//! tool runs in, the [`PayloadValue`] conversion of its arguments, and the
//! [`Blocked`] error it returns when the call may not proceed.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context as TaskContext, Poll};

use capfence_compiler::compiled::{Arg, CompiledDecision, GateContext};
use capfence_compiler::eval::{NameFault, names_fault};
use capfence_compiler::event::{Event, Value};
use capfence_compiler::policy::Risk;
use capfence_compiler::{Decision, DecisionKind};
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
///
/// A context is shared, not copied: cloning it (and making it the ambient
/// one, and finding it there) allocates nothing.
#[derive(Debug, Clone)]
pub struct Context {
    inner: Arc<Inner>,
}

#[derive(Debug, Clone)]
struct Inner {
    runtime: ActionRuntime,
    actor: String,
    /// Lowercase, as event intake makes it.
    environment: String,
    risk: Risk,
    /// The name fault of actor and environment.
    fault: NameFault,
}

thread_local! {
    static AMBIENT: RefCell<Vec<Context>> = const { RefCell::new(Vec::new()) };
}

impl Context {
    /// A context for `actor` in `environment` (risk `low` unless set).
    pub fn new(runtime: ActionRuntime, actor: &str, environment: &str) -> Context {
        let environment = environment.to_ascii_lowercase();
        let fault = names_fault(None, None, Some(&environment), Some(actor), None);
        Context {
            inner: Arc::new(Inner {
                runtime,
                actor: actor.to_owned(),
                environment,
                risk: Risk::Low,
                fault,
            }),
        }
    }

    /// The same context with another risk level.
    pub fn with_risk(mut self, risk: Risk) -> Context {
        Arc::make_mut(&mut self.inner).risk = risk;
        self
    }

    /// The actor.
    pub fn actor(&self) -> &str {
        &self.inner.actor
    }

    /// The environment (lowercase).
    pub fn environment(&self) -> &str {
        &self.inner.environment
    }

    /// The risk level.
    pub fn risk(&self) -> Risk {
        self.inner.risk
    }

    /// The runtime.
    pub fn runtime(&self) -> &ActionRuntime {
        &self.inner.runtime
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

impl GateContext for Context {
    fn actor(&self) -> &str {
        &self.inner.actor
    }
    fn environment(&self) -> &str {
        &self.inner.environment
    }
    fn risk(&self) -> Risk {
        self.inner.risk
    }
    fn fault(&self) -> NameFault {
        self.inner.fault
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
///
/// The gate decides from [`as_arg`](Self::as_arg), a borrowed view that costs
/// nothing to make; [`to_payload_value`](Self::to_payload_value) is called
/// only to write the audit record. The two must agree:
/// `Arg::of(&to_payload_value()) == as_arg()`.
pub trait PayloadValue {
    /// The value the policy sees.
    fn to_payload_value(&self) -> Value;

    /// The value borrowed for the decision.
    fn as_arg(&self) -> Arg<'_>;
}

impl PayloadValue for Decimal {
    fn to_payload_value(&self) -> Value {
        Value::Number(*self)
    }
    fn as_arg(&self) -> Arg<'_> {
        Arg::Number(*self)
    }
}

macro_rules! integers {
    ($($t:ty),*) => {$(
        impl PayloadValue for $t {
            fn to_payload_value(&self) -> Value {
                Value::Number(Decimal::from(*self))
            }
            fn as_arg(&self) -> Arg<'_> {
                Arg::Number(Decimal::from(*self))
            }
        }
    )*};
}
integers!(i8, i16, i32, i64, u8, u16, u32, u64, isize, usize);

impl PayloadValue for str {
    fn to_payload_value(&self) -> Value {
        Value::String(self.to_owned())
    }
    fn as_arg(&self) -> Arg<'_> {
        Arg::Str(self)
    }
}

impl PayloadValue for String {
    fn to_payload_value(&self) -> Value {
        Value::String(self.clone())
    }
    fn as_arg(&self) -> Arg<'_> {
        Arg::Str(self)
    }
}

impl PayloadValue for bool {
    fn to_payload_value(&self) -> Value {
        Value::Bool(*self)
    }
    fn as_arg(&self) -> Arg<'_> {
        Arg::Other
    }
}

impl<T: PayloadValue + ?Sized> PayloadValue for &T {
    fn to_payload_value(&self) -> Value {
        (**self).to_payload_value()
    }
    fn as_arg(&self) -> Arg<'_> {
        (**self).as_arg()
    }
}

impl<T: PayloadValue> PayloadValue for Option<T> {
    fn to_payload_value(&self) -> Value {
        self.as_ref()
            .map_or(Value::Null, PayloadValue::to_payload_value)
    }
    fn as_arg(&self) -> Arg<'_> {
        self.as_ref().map_or(Arg::Other, PayloadValue::as_arg)
    }
}

/// A gated call ready to be settled: the runtime, the event to record, and
/// the gate's own decision (or why it may not decide).
struct Prepared {
    runtime: ActionRuntime,
    event: Event,
    decision: Result<Option<Decision>, String>,
}

impl Prepared {
    /// Decides with the gate's table and builds the event: cheap, no I/O.
    fn new(
        context: Option<&Context>,
        resource: &str,
        action: &str,
        digest: &str,
        decide: impl FnOnce(&Context) -> Option<&'static CompiledDecision>,
        payload: impl FnOnce() -> BTreeMap<String, Value>,
    ) -> Result<Prepared, Blocked> {
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
                            "no CapFence context for {resource}.{action}: pass a \
                             &capfence::Context or run inside Context::scope"
                        )),
                    });
                }
            },
        };
        let running = context.runtime().policy_digest();
        let decision = if running == digest {
            Ok(decide(context).map(CompiledDecision::to_decision))
        } else {
            Err(format!(
                "denied: this gate was checked against policy {digest}, but the runtime runs \
                 policy {running}; build the runtime from the same policy \
                 (ActionRuntime::compiled_builder(&capfence::policy!(…)))"
            ))
        };
        let mut event = Event::new(
            context.actor(),
            resource,
            action,
            context.environment(),
            context.risk().name(),
        );
        event.payload = payload();
        Ok(Prepared {
            runtime: context.runtime().clone(),
            event,
            decision,
        })
    }

    /// Records the call (the durable commit: this waits).
    fn settle(self) -> Result<Passage, Blocked> {
        let verdict = match self.decision {
            Ok(decision) => self.runtime.execute_decided(self.event, decision),
            Err(reason) => self
                .runtime
                .deny_event(self.event, capfence_compiler::Decision::refused(reason)),
        };
        if verdict.authorized {
            Ok(Passage {
                verdict,
                runtime: self.runtime,
            })
        } else {
            Err(Blocked { verdict })
        }
    }
}

/// An authorized gated call on its way through the body: once the body has
/// returned, [`finish`](Self::finish) records its outcome.
#[doc(hidden)]
#[derive(Debug)]
pub struct Passage {
    /// The call's verdict (authorized).
    pub verdict: Verdict,
    runtime: ActionRuntime,
}

impl Passage {
    /// Records what the body returned as the call's outcome: `Ok` is
    /// `executed` (with the reference and amount `receipt` reads from the
    /// value), `Err` is `failed` (with `error`'s text). The tool's result
    /// is the tool's: an outcome that cannot be recorded is reported
    /// (tracing), never turned into an error of the call.
    pub fn finish<T, E>(
        self,
        result: &Result<T, E>,
        receipt: impl FnOnce(&T) -> (Option<String>, Option<Decimal>),
        error: impl FnOnce(&E) -> String,
    ) {
        let outcome = outcome_of(result, receipt, error);
        self.record(&outcome);
    }

    /// [`finish`](Self::finish) for an `async fn`: the outcome's durable
    /// commit runs on a thread of its own while the future waits, as the
    /// decision's does.
    pub fn finish_async<T, E>(
        self,
        result: &Result<T, E>,
        receipt: impl FnOnce(&T) -> (Option<String>, Option<Decimal>),
        error: impl FnOnce(&E) -> String,
    ) -> Recording {
        let outcome = outcome_of(result, receipt, error);
        let shared: Arc<Mutex<(bool, Option<std::task::Waker>)>> = Arc::default();
        let done = Arc::clone(&shared);
        let spawned = std::thread::Builder::new()
            .name("capfence-outcome".to_owned())
            .spawn(move || {
                self.record(&outcome);
                let waker = done.lock().ok().and_then(|mut state| {
                    state.0 = true;
                    state.1.take()
                });
                if let Some(waker) = waker {
                    waker.wake();
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(target: "capfence::outcome", error = %e, "no thread to record the outcome");
            if let Ok(mut state) = shared.lock() {
                state.0 = true;
            }
        }
        Recording { shared }
    }

    fn record(self, outcome: &crate::ledger::Outcome) {
        let Some(seq) = self.verdict.seq else {
            return;
        };
        if let Err(e) = self.runtime.record_outcome(seq, outcome) {
            tracing::warn!(
                target: "capfence::outcome",
                seq,
                error = %e,
                "the gated call's outcome was not recorded"
            );
        }
    }
}

/// A gated async call's outcome being recorded (see [`Passage::finish_async`]).
#[doc(hidden)]
pub struct Recording {
    shared: Arc<Mutex<(bool, Option<std::task::Waker>)>>,
}

impl Future for Recording {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        match self.shared.lock() {
            Ok(mut state) if !state.0 => {
                state.1 = Some(cx.waker().clone());
                Poll::Pending
            }
            _ => Poll::Ready(()),
        }
    }
}

/// The outcome a body's result tells: `Ok` executed, `Err` failed.
fn outcome_of<T, E>(
    result: &Result<T, E>,
    receipt: impl FnOnce(&T) -> (Option<String>, Option<Decimal>),
    error: impl FnOnce(&E) -> String,
) -> crate::ledger::Outcome {
    {
        match result {
            Ok(value) => {
                let (reference, amount) = receipt(value);
                crate::ledger::Outcome::Executed {
                    reference: reference.filter(|r| fit_text(r).as_deref() == Some(r.as_str())),
                    amount: amount.filter(|a| !a.is_sign_negative() || a.is_zero()),
                }
            }
            Err(e) => crate::ledger::Outcome::Failed {
                error: fit_text(&error(e))
                    .unwrap_or_else(|| "the tool returned an error".to_owned()),
            },
        }
    }
}

/// `text` as an outcome keeps it: control characters as spaces, at most
/// 2,000 characters; `None` when nothing is left.
fn fit_text(text: &str) -> Option<String> {
    let fitted: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(2000)
        .collect();
    (!fitted.trim().is_empty()).then_some(fitted)
}

/// What a tool's successful result tells the ledger about the movement it
/// made: the payment rail's reference, and the amount sent when it may
/// differ from the one decided. Implement it for the value a gated payment
/// tool returns, and the gate records both in the call's `executed`
/// outcome (`capfence audit reconcile` matches the rail's export by the
/// reference). A value without it is recorded as executed, no reference.
pub trait RailReceipt {
    /// The rail's id of the movement (a bank transaction id).
    fn reference(&self) -> Option<String>;
    /// The amount actually sent, if it is not the decided one.
    fn amount_sent(&self) -> Option<Decimal> {
        None
    }
}

/// Reads a gated tool's result for its outcome (generated code: picks
/// [`RailReceipt`] and `Display` where the type has them).
#[doc(hidden)]
pub struct Probe<'a, T: ?Sized>(pub &'a T);

/// A result that is a [`RailReceipt`].
#[doc(hidden)]
pub trait ReceiptParts {
    /// Its reference and amount sent.
    fn receipt_parts(&self) -> (Option<String>, Option<Decimal>);
}

impl<T: RailReceipt + ?Sized> ReceiptParts for Probe<'_, T> {
    fn receipt_parts(&self) -> (Option<String>, Option<Decimal>) {
        (self.0.reference(), self.0.amount_sent())
    }
}

/// Any other result: no reference.
#[doc(hidden)]
pub trait NoReceipt {
    /// Nothing.
    fn receipt_parts(&self) -> (Option<String>, Option<Decimal>);
}

impl<T: ?Sized> NoReceipt for &Probe<'_, T> {
    fn receipt_parts(&self) -> (Option<String>, Option<Decimal>) {
        (None, None)
    }
}

/// An error that displays.
#[doc(hidden)]
pub trait ErrorText {
    /// Its text.
    fn error_text(&self) -> String;
}

impl<T: fmt::Display + ?Sized> ErrorText for Probe<'_, T> {
    fn error_text(&self) -> String {
        self.0.to_string()
    }
}

/// Any other error: its type's name.
#[doc(hidden)]
pub trait NoErrorText {
    /// `the tool returned an error (TYPE)`.
    fn error_text(&self) -> String;
}

impl<T: ?Sized> NoErrorText for &Probe<'_, T> {
    fn error_text(&self) -> String {
        format!(
            "the tool returned an error ({})",
            std::any::type_name::<T>()
        )
    }
}

/// Decides a gated call and records it; the call proceeds only if it is
/// authorized. `digest` is the policy the gate was checked against at compile
/// time: a runtime on any other policy denies the call (recorded), naming both
/// digests. `decide` is the gate's own table, deciding from the typed
/// arguments (`None` for a capability a velocity window counts: the runtime
/// decides that one on the ledger's totals); `payload` builds the payload for
/// the audit record and any ticket, after the decision.
#[doc(hidden)]
pub fn gate(
    context: Option<&Context>,
    resource: &str,
    action: &str,
    digest: &str,
    decide: impl FnOnce(&Context) -> Option<&'static CompiledDecision>,
    payload: impl FnOnce() -> BTreeMap<String, Value>,
) -> Result<Passage, Blocked> {
    Prepared::new(context, resource, action, digest, decide, payload)?.settle()
}

/// [`gate`] for an `async fn`: the decision and the event are made at once
/// (they borrow the arguments), the durable commit runs on a thread of its
/// own, and the returned future is ready when it is done. The executor's
/// thread never waits for the disk, so other tasks go on meanwhile.
#[doc(hidden)]
pub fn gate_async(
    context: Option<&Context>,
    resource: &str,
    action: &str,
    digest: &str,
    decide: impl FnOnce(&Context) -> Option<&'static CompiledDecision>,
    payload: impl FnOnce() -> BTreeMap<String, Value>,
) -> Settling {
    let shared: Arc<Mutex<SettlingState>> = Arc::default();
    match Prepared::new(context, resource, action, digest, decide, payload) {
        Err(blocked) => {
            if let Ok(mut state) = shared.lock() {
                state.result = Some(Err(blocked));
            }
        }
        Ok(prepared) => {
            let done = Arc::clone(&shared);
            let spawned = std::thread::Builder::new()
                .name("capfence-commit".to_owned())
                .spawn(move || {
                    let result = prepared.settle();
                    let waker = match done.lock() {
                        Ok(mut state) => {
                            state.result = Some(result);
                            state.waker.take()
                        }
                        Err(_) => None,
                    };
                    if let Some(waker) = waker {
                        waker.wake();
                    }
                });
            if let Err(e) = spawned
                && let Ok(mut state) = shared.lock()
            {
                // No thread: nothing was recorded; the call is denied.
                state.result = Some(Err(Blocked {
                    verdict: Verdict::deny(format!(
                        "denied: no thread for the audit commit could be started ({e})"
                    )),
                }));
            }
        }
    }
    Settling { shared }
}

#[derive(Default)]
struct SettlingState {
    result: Option<Result<Passage, Blocked>>,
    waker: Option<std::task::Waker>,
}

/// A gated async call being recorded (see [`gate_async`]).
#[doc(hidden)]
pub struct Settling {
    shared: Arc<Mutex<SettlingState>>,
}

impl Future for Settling {
    type Output = Result<Passage, Blocked>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let Ok(mut state) = self.shared.lock() else {
            return Poll::Ready(Err(Blocked {
                verdict: Verdict::deny("denied: the audit commit's state was lost".to_owned()),
            }));
        };
        match state.result.take() {
            Some(result) => Poll::Ready(result),
            None => {
                state.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}
