//! Velocity limits: sums and counts over a window, decided inside the
//! transaction that records the call, so splitting a transfer or racing
//! callers never gets more through than the cap.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use capfence::{ActionEvent, ActionRuntime, DecisionKind, Risk, payload};

use super::{ManualClock, TempDir};

const POLICY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policies/treasury_velocity.yaml"
);

fn runtime(state: &Path, clock: Arc<ManualClock>) -> ActionRuntime {
    ActionRuntime::builder(POLICY)
        .state_dir(state)
        .clock(clock)
        .build()
        .unwrap()
}

fn transfer(amount: &str, destination: &str) -> ActionEvent {
    super::transfer(amount, destination)
}

fn refund(amount: &str) -> ActionEvent {
    ActionEvent::create(
        "treasury-agent",
        "refund",
        "payments",
        "production",
        Risk::Low,
        payload! {"amount" => amount.parse::<capfence::Decimal>().unwrap()},
    )
}

#[test]
fn split_transfers_stop_at_the_window_cap() {
    let dir = TempDir::new("velocity-split");
    let clock = Arc::new(ManualClock::default());
    let rt = runtime(dir.path(), Arc::clone(&clock));
    let mut authorized = 0;
    let mut first_held = None;
    for i in 0..40 {
        let v = rt.execute(&transfer("499.99", "attacker-1"));
        if v.authorized {
            authorized += 1;
        } else if first_held.is_none() {
            first_held = Some((i, v));
        }
        clock.advance(Duration::from_secs(60));
    }
    // 499.99 + 499.99 = 999.98 passes; the third would make 1,499.97.
    assert_eq!(authorized, 2);
    let (at, held) = first_held.unwrap();
    assert_eq!(at, 2);
    assert_eq!(held.decision, DecisionKind::RequireApproval);
    assert_eq!(held.rule.as_deref(), Some("daily-sum"));
    assert!(
        held.reason
            .contains("sum of amount over 24h per actor, destination: 1499.97 with this call"),
        "{}",
        held.reason
    );
    // Another destination is another window; so is another actor.
    assert!(rt.execute(&transfer("499.99", "vendor-7")).authorized);
    // A case variant of the destination is the same window.
    assert!(!rt.execute(&transfer("100", "ATTACKER-1")).authorized);
    // A day after the first two, the window has room again.
    clock.advance(Duration::from_secs(24 * 3600 - 40 * 60 + 1));
    assert!(rt.execute(&transfer("499.99", "attacker-1")).authorized);
    rt.verify().unwrap();
}

#[test]
fn an_approved_call_counts_in_the_window() {
    let dir = TempDir::new("velocity-approved");
    let clock = Arc::new(ManualClock::default());
    let rt = runtime(dir.path(), clock);
    assert!(
        rt.execute(&transfer("600", "vendor-9"))
            .approval_id
            .is_some()
    );
    rt.approve("T-1", "ops@corp").unwrap();
    assert!(rt.execute(&transfer("600", "vendor-9")).authorized);
    // 600 was let through by a human and counts: 600 + 450 > 1000.
    let v = rt.execute(&transfer("450", "vendor-9"));
    assert!(!v.authorized);
    assert_eq!(v.rule.as_deref(), Some("daily-sum"));
}

#[test]
fn a_call_count_denies_past_the_limit() {
    let dir = TempDir::new("velocity-calls");
    let clock = Arc::new(ManualClock::default());
    let rt = runtime(dir.path(), Arc::clone(&clock));
    for i in 0..20 {
        assert!(rt.execute(&refund("10")).authorized, "refund {i}");
    }
    let v = rt.execute(&refund("10"));
    assert_eq!(v.decision, DecisionKind::Deny);
    assert!(
        v.reason
            .contains("calls over 1h per actor: 21 with this call"),
        "{}",
        v.reason
    );
    // Denied calls do not count; an hour later the window is empty again.
    clock.advance(Duration::from_secs(3601));
    assert!(rt.execute(&refund("10")).authorized);
}

#[test]
fn values_smuggled_under_the_window_names_never_decide() {
    let dir = TempDir::new("velocity-smuggle");
    let rt = runtime(dir.path(), Arc::new(ManualClock::default()));
    assert!(rt.execute(&transfer("499.99", "attacker-2")).authorized);
    assert!(rt.execute(&transfer("499.99", "attacker-2")).authorized);
    let key = "@sum(amount)/86400s/actor,destination/payments.transfer";
    let event = capfence::Event::from_json(&format!(
        r#"{{"actor":"treasury-agent","resource":"payments","action":"transfer","environment":"production","risk":"high","payload":{{"amount":"499.99","destination":"attacker-2","{key}":0}}}}"#
    ))
    .unwrap();
    let v = rt.execute_event(&event);
    assert!(!v.authorized, "{v:?}");
    // A destination that is no token cannot be grouped: malformed, denied.
    let odd = rt.execute(&transfer("10", "attacker 2"));
    assert_eq!(odd.decision, DecisionKind::Deny);
}

const WORKER_ENV: &str = "CAPFENCE_IT_VELOCITY_STATE";

/// Worker process of `racing_callers_never_jointly_pass_a_cap`.
#[test]
fn velocity_worker_entry() {
    let Some(state) = std::env::var_os(WORKER_ENV) else {
        return;
    };
    let rt = ActionRuntime::builder(POLICY)
        .state_dir(&state)
        .build()
        .unwrap();
    let threads: Vec<_> = (0..2)
        .map(|_| {
            let rt = rt.clone();
            std::thread::spawn(move || {
                (0..25)
                    .filter(|_| rt.execute(&transfer("100", "attacker-3")).authorized)
                    .count()
            })
        })
        .collect();
    let authorized: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
    let mut out = std::io::stdout().lock();
    writeln!(out, "authorized={authorized}").unwrap();
}

#[test]
fn racing_callers_never_jointly_pass_a_cap() {
    let dir = TempDir::new("velocity-race");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            Command::new(&exe)
                .args([
                    "--exact",
                    "velocity::velocity_worker_entry",
                    "--nocapture",
                    "--test-threads",
                    "1",
                ])
                .env(WORKER_ENV, dir.path())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut authorized = 0;
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let n: usize = text
            .split("authorized=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap()
            .parse()
            .unwrap();
        authorized += n;
    }
    // 8 callers x 25 calls of 100 against a 1,000 cap: exactly 10.
    assert_eq!(authorized, 10);
    let rt = ActionRuntime::builder(POLICY)
        .state_dir(dir.path())
        .build()
        .unwrap();
    let records = rt.ledger().records().unwrap();
    assert_eq!(records.len(), 200);
    assert_eq!(records.iter().filter(|r| r.decision == "allow").count(), 10);
    rt.verify().unwrap();
}
