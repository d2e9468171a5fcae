//! The cost of `#[capfence::gate]`: the same plain function; the gate's
//! decision alone (typed arguments to a verdict kind, with the table the gate
//! was compiled against: `capfence::gate_decision!` runs that code); a gated
//! call with the in-memory store; and with SQLite (durable, fsync'd). The
//! runtimes are built from the same table (`policy!`).
//! Run: `cargo bench --bench gate`.

#![allow(clippy::unwrap_used, clippy::expect_used, missing_docs)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use capfence::store::memory::MemoryStore;
use capfence::{ActionRuntime, Blocked, Context, Decimal};
use criterion::{Criterion, criterion_group, criterion_main};

#[derive(Debug)]
struct ToolError;

impl From<Blocked> for ToolError {
    fn from(_: Blocked) -> Self {
        ToolError
    }
}

fn plain_transfer(_ctx: &Context, amount: Decimal, destination: &str) -> Result<usize, ToolError> {
    Ok(destination.len() + usize::from(amount.is_sign_positive()))
}

#[capfence::gate("payments.transfer")]
fn gated_transfer(ctx: &Context, amount: Decimal, destination: &str) -> Result<usize, ToolError> {
    Ok(destination.len() + usize::from(amount.is_sign_positive()))
}

static POLICY: &dyn capfence::Decide = &capfence::policy!("policies/treasury_agent.yaml");

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("gate");
    group
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let amount = Decimal::new(12_000, 2);

    let memory = ActionRuntime::compiled_builder(POLICY)
        .store(Arc::new(MemoryStore::new()))
        .build()
        .unwrap();
    let ctx = Context::new(memory, "treasury-agent", "production");
    group.bench_function("plain", |b| {
        b.iter(|| plain_transfer(&ctx, black_box(amount), "vendor-corp-123").unwrap())
    });
    group.bench_function("decision", |b| {
        b.iter(|| {
            capfence::gate_decision!(
                "payments.transfer",
                &ctx,
                amount = black_box(amount),
                destination = black_box("vendor-corp-123")
            )
            .map(|d| d.kind)
        })
    });
    group.bench_function("gated_memory", |b| {
        b.iter(|| gated_transfer(&ctx, black_box(amount), "vendor-corp-123").unwrap())
    });

    let state = std::env::temp_dir().join(format!("capfence-bench-gate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&state);
    let sqlite = ActionRuntime::compiled_builder(POLICY)
        .state_dir(&state)
        .build()
        .unwrap();
    let ctx = Context::new(sqlite, "treasury-agent", "production");
    group.bench_function("gated_sqlite", |b| {
        b.iter(|| gated_transfer(&ctx, black_box(amount), "vendor-corp-123").unwrap())
    });
    group.finish();
    let _ = std::fs::remove_dir_all(&state);
}

criterion_group!(benches, bench);
criterion_main!(benches);
