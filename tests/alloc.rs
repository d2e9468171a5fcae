//! Allocations on the gate's path, counted on the calling thread
//! (allocation-counter's allocator is this test binary's): the gate's
//! decision allocates nothing, with a given context or the ambient one, and
//! a gated call made through the ambient context allocates no more than the
//! same call given its context.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::sync::Arc;

use capfence::store::memory::MemoryStore;
use capfence::{ActionRuntime, Blocked, Context, Decimal};

/// The allocations `f` makes on this thread, and its value.
fn allocations<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let mut out = None;
    let info = allocation_counter::measure(|| out = Some(f()));
    (info.count_total, out.unwrap())
}

#[derive(Debug)]
struct ToolError;

impl From<Blocked> for ToolError {
    fn from(_: Blocked) -> Self {
        ToolError
    }
}

#[capfence::gate("payments.transfer")]
fn given(ctx: &Context, amount: Decimal, destination: &str) -> Result<usize, ToolError> {
    Ok(destination.len() + usize::from(amount.is_sign_positive()))
}

#[capfence::gate("payments.transfer")]
fn ambient(amount: Decimal, destination: &str) -> Result<usize, ToolError> {
    Ok(destination.len() + usize::from(amount.is_sign_positive()))
}

static POLICY: &dyn capfence::Decide = &capfence::policy!("policies/treasury_agent.yaml");

fn context() -> Context {
    let runtime = ActionRuntime::compiled_builder(POLICY)
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    Context::new(runtime, "treasury-agent", "production")
}

#[test]
fn the_gate_decision_allocates_nothing() {
    let ctx = context();
    let amount = Decimal::new(12_000, 2);
    let decide = |c: &Context| {
        capfence::gate_decision!(
            "payments.transfer",
            c,
            amount = amount,
            destination = "vendor-corp-123"
        )
        .map(|d| d.kind)
    };
    // Warm: the ambient stack's first push grows its buffer once per thread.
    ctx.scope(|| decide(&Context::current().unwrap()));
    let (given, kind) = allocations(|| decide(&ctx));
    assert_eq!(kind, Some(capfence::DecisionKind::Allow));
    assert_eq!(given, 0, "the decision with a given context allocated");
    let (ambient, kind) = allocations(|| ctx.scope(|| decide(&Context::current().unwrap())));
    assert_eq!(kind, Some(capfence::DecisionKind::Allow));
    assert_eq!(ambient, 0, "finding the ambient context allocated");
    // The count is real: a context's own strings are allocations.
    let (made, _) = allocations(|| Context::new(ctx.runtime().clone(), "a", "b"));
    assert!(made > 0);
}

#[test]
fn a_call_through_the_ambient_context_allocates_as_one_given_its_context() {
    let ctx = context();
    let amount = Decimal::new(12_000, 2);
    // Warm both paths (the ledger's first records, the ambient stack).
    for _ in 0..3 {
        given(&ctx, amount, "vendor-corp-123").unwrap();
        ctx.scope(|| ambient(amount, "vendor-corp-123")).unwrap();
    }
    // The fewest of several calls each: a buffer of the store that grows
    // now and then is not the path's.
    let mut with_given = u64::MAX;
    let mut with_ambient = u64::MAX;
    for _ in 0..16 {
        let (n, _) = allocations(|| given(&ctx, amount, "vendor-corp-123").unwrap());
        with_given = with_given.min(n);
        let (n, _) = allocations(|| ctx.scope(|| ambient(amount, "vendor-corp-123")).unwrap());
        with_ambient = with_ambient.min(n);
    }
    assert!(
        with_given > 0,
        "a recorded call allocates (its event, its record)"
    );
    assert_eq!(
        with_ambient,
        with_given,
        "the ambient context cost {} allocations more a call",
        with_ambient.saturating_sub(with_given)
    );
}
