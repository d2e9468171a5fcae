//! `capfence-compile lint` on generated policies of 100, 1,000 and 10,000
//! rules over 250 capabilities (50 resources × 5 actions), with thresholds,
//! environment lists and risk ranges. Run: `cargo bench --bench lint`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;
use std::time::Duration;

use capfence_compiler::Policy;
use capfence_compiler::analysis::lint;
use criterion::{Criterion, criterion_group, criterion_main};

/// A deterministic policy of `n` rules.
fn generated(n: usize) -> Policy {
    let mut state: u64 = 0x1234_5678_9abc_def1;
    let mut next = |m: u64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 33) % m
    };
    let mut tiers = [
        String::from("deny:\n"),
        String::from("require_approval:\n"),
        String::from("allow:\n"),
    ];
    for _ in 0..n {
        let tier = next(3) as usize;
        let mut rule = format!("  - capability: r{}.a{}\n", next(50), next(5));
        match next(4) {
            0 => rule.push_str(&format!("    amount_gt: {}\n", next(20) * 50)),
            1 => rule.push_str(&format!(
                "    amount_gte: {}\n    amount_lte: {}\n",
                next(10) * 10,
                100 + next(10) * 100
            )),
            2 => rule.push_str(&format!(
                "    environment: [env{}, env{}]\n",
                next(4),
                next(4)
            )),
            _ => rule.push_str(&format!(
                "    risk_gte: {}\n",
                ["low", "medium", "high", "critical"][next(4) as usize]
            )),
        }
        if next(3) == 0 {
            rule.push_str(&format!(
                "    destination_not_in: [d{}, d{}]\n",
                next(8),
                next(8)
            ));
        }
        tiers[tier].push_str(&rule);
    }
    Policy::parse(&tiers.concat(), "generated.yaml").unwrap()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("lint");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(10));
    for n in [100, 1_000, 10_000] {
        let policy = generated(n);
        group.bench_function(format!("rules_{n}"), |b| {
            b.iter(|| black_box(lint(black_box(&policy))))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
