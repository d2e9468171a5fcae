//! One decision, compiled table against reference evaluator, over the shared
//! 1,024-event mix for the case-study policy (523 allow, 229 require_approval,
//! 272 deny), shuffled once with a fixed seed so that branch predictors see a
//! realistic stream rather than one event replayed.
//! Run: `cargo bench --bench decision`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;

use capfence::{Event, Policy};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const ROOT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/");

fn events() -> Vec<Event> {
    let text = std::fs::read_to_string(format!("{ROOT}tests/data/seed_policy_events.jsonl"))
        .expect("tests/data/seed_policy_events.jsonl in the repository");
    let mut events: Vec<Event> = text.lines().map(|l| Event::from_json(l).unwrap()).collect();
    // Fisher-Yates with a fixed 64-bit LCG: the same order on every run.
    let mut state: u64 = 0x5eed_cafe_f00d_0001;
    for i in (1..events.len()).rev() {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        events.swap(i, (state >> 33) as usize % (i + 1));
    }
    events
}

fn decision(c: &mut Criterion) {
    let events = events();
    let policy = Policy::load(format!("{ROOT}policies/fintech_policy.yaml")).unwrap();
    let table = capfence::policy!("policies/fintech_policy.yaml");
    let views: Vec<_> = events.iter().map(|e| table.view(e)).collect();
    // Same answers before any timing.
    for (event, view) in events.iter().zip(&views) {
        assert_eq!(table.decide_view(view).to_decision(), policy.decide(event));
    }
    let mut group = c.benchmark_group("decision");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("compiled", |b| {
        b.iter(|| {
            for view in &views {
                black_box(table.decide_view(black_box(view)));
            }
        });
    });
    group.bench_function("compiled_with_view", |b| {
        b.iter(|| {
            for event in &events {
                black_box(table.decide_view(&table.view(black_box(event))));
            }
        });
    });
    group.bench_function("reference", |b| {
        b.iter(|| {
            for event in &events {
                black_box(policy.decide(black_box(event)));
            }
        });
    });
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
