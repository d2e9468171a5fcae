//! One decision, compiled table against reference evaluator, over the shared
//! 1,024-event mix for the case-study policy (523 allow, 229 require_approval,
//! 272 deny), shuffled once with a fixed seed so that branch predictors see a
//! realistic stream rather than one event replayed. Beside the generated
//! table, its branch-free floor: the same policy written by hand as bit
//! arithmetic and one table lookup.
//! Run: `cargo bench --bench decision`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::hint::black_box;

use capfence::__private::{Cause, CompiledDecision, DecisionKind, NameFault};
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

const fn decided(kind: DecisionKind, rule: &'static str, reason: &'static str) -> CompiledDecision {
    CompiledDecision {
        kind,
        rule: Some(rule),
        reason,
        cause: Cause::Rule,
    }
}

/// The case-study policy's decisions, in the order the floor picks them:
/// the transfer rules, the refund rule, the read rule, the default.
static FLOOR: [CompiledDecision; 7] = [
    decided(
        DecisionKind::Deny,
        "deny[0]",
        "denied by deny[0]: payments.transfer, amount > 10000.0",
    ),
    decided(
        DecisionKind::Deny,
        "deny[1]",
        "denied by deny[1]: payments.transfer, environment = staging, amount > 50.0",
    ),
    decided(
        DecisionKind::RequireApproval,
        "require_approval[0]",
        "approval required by require_approval[0]: payments.transfer, amount > 500.0",
    ),
    decided(
        DecisionKind::Allow,
        "allow[0]",
        "allowed by allow[0]: payments.transfer, amount <= 500.0",
    ),
    decided(
        DecisionKind::RequireApproval,
        "require_approval[1]",
        "approval required by require_approval[1]: payments.refund, amount > 100.0",
    ),
    decided(
        DecisionKind::Allow,
        "allow[1]",
        "allowed by allow[1]: payments.read",
    ),
    CompiledDecision {
        kind: DecisionKind::Deny,
        rule: None,
        reason: "no rule matches this event (default deny)",
        cause: Cause::DefaultDeny,
    },
];

/// A malformed event, out of the floor's line: the generated table decides it.
#[inline(never)]
fn malformed_floor<C: capfence::Compiled>(table: &C, view: &C::View) -> &'static CompiledDecision {
    table.decide_view(view)
}

/// The branch-free floor of the case-study policy, written by hand over the
/// generated view: every rule of every class as one bit, the classes
/// masked in without a branch, the first bit picks the decision in a table,
/// which is borrowed, not copied. A malformed event goes to the generated
/// table, out of line.
macro_rules! floor {
    ($table:expr, $v:expr) => {{
        let v = $v;
        let malformed = (v.fault != NameFault::None)
            | ((v.f0.state as u8 | v.f1.state as u8) != 0)
            | (v.class > 2);
        if malformed {
            malformed_floor(&$table, v)
        } else {
            let r = v.f0.rank;
            let transfer = u64::from(r > 7)
                | (u64::from((v.f1.id == 0) & (r > 1)) << 1)
                | (u64::from(r > 5) << 2)
                | (u64::from(r <= 5) << 3);
            let refund = u64::from(r > 3) << 4;
            let read = 1u64 << 5;
            let of = |class: u32| 0u64.wrapping_sub(u64::from(v.class == class));
            let m = (transfer & of(2)) | (refund & of(1)) | (read & of(0)) | (1 << 6);
            &FLOOR[m.trailing_zeros() as usize]
        }
    }};
}

fn decision(c: &mut Criterion) {
    let events = events();
    let policy = Policy::load(format!("{ROOT}policies/fintech_policy.yaml")).unwrap();
    let table = capfence::policy!("policies/fintech_policy.yaml");
    let views: Vec<_> = events.iter().map(|e| table.view(e)).collect();
    // Same answers before any timing.
    for (event, view) in events.iter().zip(&views) {
        assert_eq!(table.decide_view(view).to_decision(), policy.decide(event));
        assert_eq!(floor!(table, view), table.decide_view(view));
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
    // Well-formed events only in the timed loop: the floor is written for them.
    let formed: Vec<_> = views
        .iter()
        .filter(|v| {
            v.fault == NameFault::None && (v.f0.state as u8 | v.f1.state as u8) == 0 && v.class <= 2
        })
        .collect();
    println!("{} of {} events well formed", formed.len(), views.len());
    group.bench_function("branch_free_floor", |b| {
        b.iter(|| {
            for view in &formed {
                black_box(floor!(table, black_box(*view)));
            }
        });
    });
    group.bench_function("compiled_well_formed", |b| {
        b.iter(|| {
            for view in &formed {
                black_box(table.decide_view(black_box(*view)));
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
