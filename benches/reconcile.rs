//! `capfence audit reconcile` on a rail export of 100,000 movements against
//! 100,000 executed calls: reading the CSV, gathering the executed calls
//! from 200,000 chain records (an allow and its outcome each), and matching
//! them. Run: `cargo bench --bench reconcile`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::indexing_slicing,
    missing_docs
)]

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Duration;

use capfence::reconcile::{self, Columns, ExecutedCalls};
use capfence::{AuditRecord, RecordKind};
use criterion::{Criterion, criterion_group, criterion_main};

const N: u64 = 100_000;

fn record(seq: u64, decision: RecordKind, payload: String, cites: Option<String>) -> AuditRecord {
    AuditRecord {
        seq,
        time: "2026-12-06T10:00:00.000000Z".to_owned(),
        actor: Some("treasury-agent".to_owned()),
        capability: Some("payments.transfer".to_owned()),
        environment: Some("production".to_owned()),
        risk: Some("low".to_owned()),
        payload,
        decision,
        rule: None,
        reason: String::new(),
        approval_id: cites,
        policy_digest: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// The chain's records: each call allowed, then its executed outcome.
fn chain() -> Vec<AuditRecord> {
    let mut records = Vec::with_capacity(2 * N as usize);
    for i in 1..=N {
        records.push(record(
            2 * i,
            RecordKind::ALLOW,
            format!(
                "{{\"amount\":{}.{:02},\"destination\":\"acct-{}\"}}",
                i % 9_000,
                i % 100,
                i % 500
            ),
            None,
        ));
        records.push(record(
            2 * i + 1,
            RecordKind::Outcome,
            format!("{{\"amount\":null,\"outcome\":\"executed\",\"reference\":\"BANK-{i:06}\"}}"),
            Some(format!("D-{}", 2 * i)),
        ));
    }
    records
}

fn rail() -> String {
    let mut csv = String::from("reference,amount,destination,time\n");
    for i in 1..=N {
        writeln!(
            csv,
            "BANK-{i:06},{}.{:02},acct-{},2026-12-06T10:00:00Z",
            i % 9_000,
            i % 100,
            i % 500
        )
        .unwrap();
    }
    csv
}

fn bench(c: &mut Criterion) {
    let records = chain();
    let csv = rail();
    let mut group = c.benchmark_group("reconcile_100k");
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(10));
    group.bench_function("read_rail", |b| {
        b.iter(|| reconcile::read_rail(black_box(csv.as_bytes()), "rail.csv", &Columns::default()))
    });
    group.bench_function("gather_executed", |b| {
        b.iter(|| {
            let mut calls = ExecutedCalls::default();
            for r in black_box(&records) {
                calls.push(r);
            }
            calls.calls.len()
        })
    });
    let movements = reconcile::read_rail(csv.as_bytes(), "rail.csv", &Columns::default()).unwrap();
    let mut calls = ExecutedCalls::default();
    for r in &records {
        calls.push(r);
    }
    assert_eq!(calls.calls.len(), N as usize);
    group.bench_function("match", |b| {
        b.iter(|| {
            let report = reconcile::reconcile(black_box(&calls.calls), black_box(&movements));
            assert!(report.is_clean());
            report.matched
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
