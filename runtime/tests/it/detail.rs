//! Structured verdicts through the Rust API: the numbers a refusal names
//! are in `detail`, and they are the true ones — the window's `frees_at` is
//! the moment the cap really frees up, a grant's `uses_left` is what the next
//! call finds, a refused or unrecorded deny says so.

use std::sync::Arc;
use std::time::Duration;

use capfence::clock::{Clock, rfc3339};
use capfence::store::sqlite::SqliteOptions;
use capfence::verdict::{DetailCause, LimitDetail};
use capfence::{ActionRuntime, DecisionKind, GrantLimits};

use super::{ManualClock, POLICY, TempDir, runtime, transfer};

const VELOCITY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policies/treasury_velocity.yaml"
);

#[test]
fn a_window_cap_says_its_total_and_frees_up_when_it_says() {
    let dir = TempDir::new("detail-window");
    let clock = Arc::new(ManualClock::default());
    let rt = ActionRuntime::builder(VELOCITY)
        .state_dir(dir.path())
        .clock(clock.clone())
        .build()
        .unwrap();
    let first_at = clock.now_micros();
    assert!(rt.execute(&transfer("400", "vendor-corp-123")).authorized);
    clock.advance(Duration::from_secs(3600));
    assert!(rt.execute(&transfer("400", "vendor-corp-123")).authorized);
    clock.advance(Duration::from_secs(3600));

    let held = rt.execute(&transfer("400", "vendor-corp-123"));
    assert_eq!(held.decision, DecisionKind::RequireApproval);
    let d = &held.detail;
    assert_eq!(d.cause, DetailCause::Rule);
    assert_eq!(d.rule.as_deref(), Some("daily-sum"));
    let [w] = d.windows.as_slice() else {
        panic!("one window: {d:?}")
    };
    assert_eq!(
        (w.total.as_str(), w.limit.as_deref()),
        ("1200", Some("1000"))
    );
    assert_eq!(w.oldest_at.as_deref(), Some(rfc3339(first_at).as_str()));
    let frees_at = first_at + 24 * 3600 * 1_000_000;
    assert_eq!(w.frees_at.as_deref(), Some(rfc3339(frees_at).as_str()));
    let ticket = d.ticket.as_ref().unwrap();
    assert_eq!(Some(&ticket.id), held.approval_id.as_ref());
    assert_eq!((ticket.state, ticket.quorum), ("pending", 1));

    // A second before `frees_at` the cap still holds; a second after, the
    // first call has left the window and the same transfer goes through.
    clock.advance(Duration::from_micros(
        u64::try_from(frees_at - clock.now_micros() - 1_000_000).unwrap(),
    ));
    let still = rt.execute(&transfer("300", "vendor-corp-123"));
    assert_eq!(still.decision, DecisionKind::RequireApproval, "{still:?}");
    assert_eq!(still.detail.windows[0].total, "1100");
    clock.advance(Duration::from_secs(2));
    let freed = rt.execute(&transfer("300", "vendor-corp-123"));
    assert!(freed.authorized, "{freed:?}");
}

#[test]
fn a_deny_names_the_limit_and_the_value() {
    let dir = TempDir::new("detail-limit");
    let v = runtime(dir.path()).execute(&transfer("10000.01", "x"));
    assert_eq!(v.detail.conditions, ["amount > 10000.0"]);
    assert_eq!(
        v.detail.limits,
        [LimitDetail {
            field: "amount".into(),
            op: ">".into(),
            limit: "10000".into(),
            value: Some("10000.01".into()),
        }]
    );
    assert_eq!(v.detail.rule, v.rule);
}

#[test]
fn a_grant_says_its_uses_left_and_the_last_use_is_the_last() {
    let dir = TempDir::new("detail-grant");
    let rt = runtime(dir.path());
    let grant = rt
        .grant(
            "treasury-agent",
            "payments.transfer",
            "production",
            "ops",
            Duration::from_secs(60),
            GrantLimits {
                uses: Some(2),
                ..GrantLimits::default()
            },
        )
        .unwrap();
    let uses: Vec<Option<u32>> = (0..2)
        .map(|_| {
            let v = rt.execute(&transfer("700", "v"));
            assert!(v.authorized, "{v:?}");
            let g = v.detail.grant.unwrap();
            assert_eq!(
                (g.id, g.granted_by),
                (format!("G-{}", grant.id), "ops".into())
            );
            g.uses_left
        })
        .collect();
    assert_eq!(uses, [Some(1), Some(0)]);
    let after = rt.execute(&transfer("700", "v"));
    assert_eq!(after.decision, DecisionKind::RequireApproval);
    assert!(after.detail.grant.is_none());
}

#[test]
fn refused_and_unrecorded_denies_say_which() {
    let dir = TempDir::new("detail-refused");
    assert!(runtime(dir.path()).execute(&transfer("1", "v")).authorized);
    // Another policy on a ledger whose active policy is the case study's.
    let other = ActionRuntime::builder(VELOCITY)
        .state_dir(dir.path())
        .build()
        .unwrap()
        .execute(&transfer("1", "v"));
    assert_eq!(other.detail.cause, DetailCause::Refused, "{other:?}");
    assert!(other.detail.rule.is_none() && other.detail.limits.is_empty());

    let read_only = ActionRuntime::builder(POLICY)
        .state_dir(dir.path())
        .sqlite_options(SqliteOptions {
            read_only: true,
            ..SqliteOptions::default()
        })
        .build()
        .unwrap()
        .execute(&transfer("1", "v"));
    assert!(!read_only.authorized);
    assert_eq!(read_only.detail.cause, DetailCause::Unrecorded);
    // The JSON line carries the same cause.
    let json: serde_json::Value = serde_json::from_str(&read_only.to_json()).unwrap();
    assert_eq!(json["detail"]["cause"], "unrecorded");
}
