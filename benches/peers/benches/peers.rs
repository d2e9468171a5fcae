//! One decision in each of four engines, over the shared 1,024-event mix for
//! the case-study policy, shuffled with a fixed seed. Inputs are prepared
//! before timing for every engine (CapFence views, Cedar requests, Rego input
//! values), so each measures its decision alone. Run: `benches/peers/run.sh`.

use std::hint::black_box;
use std::time::Duration;

use capfence_peers::{Cedar, Rego, event, reference, shared_mix, shuffled};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

fn peers(c: &mut Criterion) {
    let (events, _) = shared_mix();
    let events = shuffled(events);
    let policy = reference();
    let table = capfence::policy!("../../policies/fintech_policy.yaml");
    let parsed: Vec<_> = events.iter().map(|l| event(l)).collect();
    let views: Vec<_> = parsed.iter().map(|e| table.view(e)).collect();
    let cedar = Cedar::new();
    let requests: Vec<_> = events.iter().map(|l| Cedar::request(l)).collect();
    let mut rego = Rego::new();
    let inputs: Vec<_> = events.iter().map(|l| Rego::input(l)).collect();

    let mut group = c.benchmark_group("peers");
    group.throughput(Throughput::Elements(events.len() as u64));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    group.bench_function("capfence_compiled", |b| {
        b.iter(|| {
            views
                .iter()
                .map(|v| table.decide_view(black_box(v)).kind as usize)
                .sum::<usize>()
        })
    });
    group.bench_function("capfence_reference", |b| {
        b.iter(|| {
            parsed
                .iter()
                .map(|e| policy.decide(black_box(e)).kind as usize)
                .sum::<usize>()
        })
    });
    group.bench_function("cedar", |b| {
        b.iter(|| {
            requests
                .iter()
                .map(|r| cedar.decide(black_box(r)).len())
                .sum::<usize>()
        })
    });
    group.bench_function("regorus", |b| {
        b.iter(|| {
            inputs
                .iter()
                .map(|i| rego.decide(black_box(i)).len())
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, peers);
criterion_main!(benches);
