//! Velocity limits: sums and counts over a window, decided inside the
//! transaction that records the call, so splitting a transfer or racing
//! callers never gets more through than the cap.

use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use capfence::{ActionEvent, ActionRuntime, DecisionKind, Risk, payload};

use super::{ManualClock, TempDir, reported, run_workers};

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
    let authorized: usize = run_workers(
        "velocity::velocity_worker_entry",
        4,
        &[(WORKER_ENV, dir.path().to_str().unwrap())],
    )
    .iter()
    .map(|out| reported(out, "authorized"))
    .sum();
    // 8 callers x 25 calls of 100 against a 1,000 cap: exactly 10.
    assert_eq!(authorized, 10);
    let rt = ActionRuntime::builder(POLICY)
        .state_dir(dir.path())
        .build()
        .unwrap();
    let records = rt.ledger().records().unwrap();
    assert_eq!(records.len(), 200 + 1, "and the policy's activation");
    assert_eq!(
        records
            .iter()
            .filter(|r| r.decision.as_str() == "allow")
            .count(),
        10
    );
    rt.verify().unwrap();
}

#[test]
fn verify_holds_the_window_rows_to_the_chain() {
    let dir = TempDir::new("velocity-verify");
    let rt = runtime(dir.path(), Arc::new(ManualClock::default()));
    for _ in 0..3 {
        rt.execute(&transfer("400", "vendor-5"));
    }
    rt.verify().unwrap();
    let cli = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_capfence"))
            .arg("--state")
            .arg(dir.path())
            .args(args)
            .output()
            .unwrap()
    };
    assert_eq!(cli(&["verify", "--policy", POLICY]).status.code(), Some(0));
    // Deleting a row would reset the window: verify names it.
    let db = super::sql(dir.path());
    db.execute(
        "DELETE FROM windows WHERE n = (SELECT max(n) FROM windows)",
        [],
    )
    .unwrap();
    let err = rt.verify().unwrap_err().to_string();
    assert!(err.contains("its head says 2 calls"), "{err}");
    let out = cli(&["verify", "--policy", POLICY]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("its head says 2 calls"));
    // Deleting the row and lowering the head to match: the chain still has
    // the allowed call.
    db.execute("UPDATE window_heads SET last_n = 1, running = '400'", [])
        .unwrap();
    let err = rt.verify().unwrap_err().to_string();
    assert!(err.contains("has no window row"), "{err}");
    // Without the policy, verify cannot know the windows.
    assert_eq!(cli(&["verify"]).status.code(), Some(0));
    // A running total lowered to make room: verify names it.
    let dir2 = TempDir::new("velocity-verify-running");
    let rt2 = runtime(dir2.path(), Arc::new(ManualClock::default()));
    rt2.execute(&transfer("400", "vendor-5"));
    rt2.execute(&transfer("400", "vendor-5"));
    super::sql(dir2.path())
        .execute("UPDATE windows SET running = '0' WHERE n = 2", [])
        .unwrap();
    let err = rt2.verify().unwrap_err().to_string();
    assert!(err.contains("does not follow"), "{err}");
    // A head lowered to make room: verify names it.
    let dir4 = TempDir::new("velocity-verify-head");
    let rt4 = runtime(dir4.path(), Arc::new(ManualClock::default()));
    rt4.execute(&transfer("400", "vendor-5"));
    super::sql(dir4.path())
        .execute("UPDATE window_heads SET running = '0'", [])
        .unwrap();
    let err = rt4.verify().unwrap_err().to_string();
    assert!(err.contains("its head says"), "{err}");
    // A forged row for a call never made.
    let dir3 = TempDir::new("velocity-verify-forged");
    let rt3 = runtime(dir3.path(), Arc::new(ManualClock::default()));
    rt3.execute(&transfer("400", "vendor-5"));
    super::sql(dir3.path())
        .execute(
            "INSERT INTO windows (spec, grp, n, at, value, running) SELECT spec, grp, 2, at, \
             '9999', '10399' FROM windows",
            [],
        )
        .unwrap();
    super::sql(dir3.path())
        .execute("UPDATE window_heads SET last_n = 2, running = '10399'", [])
        .unwrap();
    let err = rt3.verify().unwrap_err().to_string();
    assert!(err.contains("no allow record"), "{err}");
}

/// A clock that reads `offset` ahead of (or behind) another.
struct Skewed(Arc<ManualClock>, i64);

impl capfence::clock::Clock for Skewed {
    fn now_micros(&self) -> i64 {
        self.0.now_micros() + self.1
    }
}

/// Two hosts on one SQLite ledger, one clock right and one 25 h ahead (then
/// one 25 h behind). Under a 1,000-per-24 h cap: 400 and 400 pass, the third
/// 400 waits; the skewed host's 0.01 may pass, but it never reopens the
/// window: the next 400s from the right clock still wait. The skewed record
/// is reported where recorded time runs backward.
#[test]
fn a_clock_ahead_or_behind_never_loosens_a_cap() {
    use capfence::clock::Clock as _;
    const DAY_AND_HOUR: i64 = 25 * 3600 * 1_000_000;
    for offset in [DAY_AND_HOUR, -DAY_AND_HOUR] {
        let dir = TempDir::new("velocity-skew");
        let clock = Arc::new(ManualClock::default());
        let right = runtime(dir.path(), Arc::clone(&clock));
        let skewed = ActionRuntime::builder(POLICY)
            .state_dir(dir.path())
            .clock(Arc::new(Skewed(Arc::clone(&clock), offset)))
            .build()
            .unwrap();
        let mut moved = Vec::new();
        let mut send = |rt: &ActionRuntime, amount: &str| {
            let v = rt.execute(&transfer(amount, "attacker-1"));
            if v.authorized {
                moved.push(amount.parse::<capfence::Decimal>().unwrap());
            }
            clock.advance(Duration::from_secs(1));
            v
        };
        assert!(send(&right, "400").authorized);
        assert!(send(&right, "400").authorized);
        assert_eq!(send(&right, "400").decision, DecisionKind::RequireApproval);
        send(&skewed, "0.01");
        for _ in 0..2 {
            let v = send(&right, "400");
            assert_eq!(
                v.decision,
                DecisionKind::RequireApproval,
                "offset {offset}: {v:?}"
            );
        }
        let total: capfence::Decimal = moved.iter().sum();
        assert!(
            total <= capfence::Decimal::from(1000),
            "offset {offset}: {moved:?}"
        );
        right.verify().unwrap();
        let reversals = right.ledger().time_reversals().unwrap();
        assert!(!reversals.is_empty(), "offset {offset}");
        // Ahead: the records after the skewed one run backward; behind: the
        // skewed record itself does.
        // (Record 1 activates the policy; the skewed host's call is the
        // fourth decision.)
        let skewed_seq = 4 + 1;
        if offset > 0 {
            assert_eq!(reversals[0].seq, skewed_seq + 1);
            assert_eq!(reversals[0].latest_seq, skewed_seq);
            // `capfence verify` says so, and still passes.
            let out = Command::new(env!("CARGO_BIN_EXE_capfence"))
                .arg("--state")
                .arg(dir.path())
                .arg("verify")
                .output()
                .unwrap();
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{stdout}");
            assert!(
                stdout.contains(&format!(
                    "note: recorded time runs backward at record {}:",
                    skewed_seq + 1
                )),
                "{stdout}"
            );
        } else {
            assert_eq!(reversals[0].seq, skewed_seq);
        }
        assert!(clock.now_micros() > 0);
    }
}
