//! Outcomes: what became of an authorized call, one per call, only for a
//! call that was authorized; a failed call releases what it held in a
//! velocity window, an executed one counts the amount it sent; `verify`
//! holds the window rows and the outcome records to the chain.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use capfence::{ActionRuntime, Decimal, Outcome, OutcomeError, RecordKind};

use super::{ManualClock, TempDir, sql, transfer};

const VELOCITY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../policies/treasury_velocity.yaml"
);

fn runtime(state: &Path) -> ActionRuntime {
    ActionRuntime::builder(VELOCITY)
        .state_dir(state)
        .clock(Arc::new(ManualClock::default()))
        .build()
        .unwrap()
}

fn executed(reference: &str) -> Outcome {
    Outcome::Executed {
        reference: Some(reference.to_owned()),
        amount: None,
    }
}

fn failed() -> Outcome {
    Outcome::Failed {
        error: "the bank said: account closed".to_owned(),
    }
}

#[test]
fn an_outcome_follows_an_authorized_call_once() {
    let dir = TempDir::new("outcome-once");
    let rt = runtime(dir.path());
    let paid = rt.execute(&transfer("400", "acct-1"));
    assert!(paid.authorized);
    let seq = paid.seq.expect("an authorized call names its record");
    let record = rt.record_outcome(seq, &executed("BANK-7731")).unwrap();
    assert_eq!(record.decision, RecordKind::Outcome);
    assert_eq!(
        record.approval_id.as_deref(),
        Some(format!("D-{seq}").as_str())
    );
    assert_eq!(record.actor.as_deref(), Some("treasury-agent"));
    assert!(record.reason.contains("BANK-7731"), "{}", record.reason);

    // Only one outcome per call.
    match rt.record_outcome(seq, &failed()) {
        Err(OutcomeError::AlreadyRecorded { seq: s, at, .. }) => {
            assert_eq!((s, at), (seq, record.seq));
        }
        other => panic!("{other:?}"),
    }
    // Only an authorized call has one: a held call, an outcome record, a
    // seq past the head.
    let held = rt.execute(&transfer("700", "acct-1"));
    assert!(!held.authorized);
    assert!(matches!(
        rt.record_outcome(held.seq.unwrap(), &executed("BANK-1")),
        Err(OutcomeError::NotAuthorized { .. })
    ));
    assert!(matches!(
        rt.record_outcome(record.seq, &executed("BANK-1")),
        Err(OutcomeError::NotAuthorized { .. })
    ));
    assert!(matches!(
        rt.record_outcome(10_000, &executed("BANK-1")),
        Err(OutcomeError::NoSuchRecord(10_000))
    ));
    // Text that cannot be kept is refused before anything is written.
    let other = rt.execute(&transfer("10", "acct-2")).seq.unwrap();
    for bad in [
        executed("BANK\n2"),
        executed(""),
        Outcome::Failed {
            error: "x".repeat(2001),
        },
        Outcome::Executed {
            reference: None,
            amount: Some(Decimal::NEGATIVE_ONE),
        },
    ] {
        assert!(
            matches!(
                rt.record_outcome(other, &bad),
                Err(OutcomeError::Invalid(_))
            ),
            "{bad:?}"
        );
    }
    let records = rt.verify().unwrap().0;
    rt.ledger()
        .verify_windows(&rt_windows(), digest(&rt))
        .unwrap();
    assert_eq!(
        rt.ledger()
            .records()
            .unwrap()
            .iter()
            .filter(|r| r.decision == RecordKind::Outcome)
            .count(),
        1,
        "refusals record nothing ({records} records)"
    );
}

fn rt_windows() -> Vec<capfence_compiler::window::Window> {
    capfence::Policy::load(VELOCITY).unwrap().windows()
}

fn digest(rt: &ActionRuntime) -> &str {
    &rt.policy_facts().digest
}

/// The daily cap is 1,000 per actor and destination. A failed 900 holds
/// nothing: 900 more passes. An executed call that sent less than decided
/// counts what it sent.
#[test]
fn a_failed_call_releases_its_reservation() {
    let dir = TempDir::new("outcome-release");
    let rt = runtime(dir.path());
    let first = rt.execute(&transfer("450", "acct-9"));
    let second = rt.execute(&transfer("450", "acct-9"));
    assert!(first.authorized && second.authorized);
    assert!(
        !rt.execute(&transfer("450", "acct-9")).authorized,
        "1,350 > 1,000: held"
    );
    rt.record_outcome(first.seq.unwrap(), &failed()).unwrap();
    let third = rt.execute(&transfer("450", "acct-9"));
    assert!(third.authorized, "{}", third.reason);
    assert!(!rt.execute(&transfer("450", "acct-9")).authorized);
    // The third sent 50 only: 450 + 50 = 500 counted, 450 more fits.
    rt.record_outcome(
        third.seq.unwrap(),
        &Outcome::Executed {
            reference: Some("BANK-3".to_owned()),
            amount: Some(Decimal::new(50, 0)),
        },
    )
    .unwrap();
    assert!(rt.execute(&transfer("450", "acct-9")).authorized, "950");
    assert!(!rt.execute(&transfer("50.01", "acct-9")).authorized);
    assert!(rt.execute(&transfer("50", "acct-9")).authorized, "1,000");
    rt.verify().unwrap();
    rt.ledger()
        .verify_windows(&rt_windows(), digest(&rt))
        .unwrap();

    // The rows are held to the outcomes: a released row put back is found.
    sql(dir.path())
        .execute(
            "UPDATE windows SET value = '450', running = running WHERE value = '0'",
            [],
        )
        .unwrap();
    let fault = rt
        .ledger()
        .verify_windows(&rt_windows(), digest(&rt))
        .unwrap_err();
    assert!(fault.to_string().contains("window"), "{fault}");
}

/// Racing callers over released room: the cap is full (five 200s), two of
/// them fail while four threads keep trying 200s. Exactly two more pass,
/// never a third, and the rows verify.
#[test]
fn racing_callers_get_exactly_the_released_room() {
    let dir = TempDir::new("outcome-race");
    let rt = runtime(dir.path());
    let full: Vec<u64> = (0..5)
        .map(|_| {
            let v = rt.execute(&transfer("200", "acct-r"));
            assert!(v.authorized);
            v.seq.unwrap()
        })
        .collect();
    let passed = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                for _ in 0..10 {
                    if rt.execute(&transfer("200", "acct-r")).authorized {
                        passed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    }
                }
            });
        }
        s.spawn(|| {
            for seq in &full[..2] {
                rt.record_outcome(*seq, &failed()).unwrap();
            }
        });
    });
    // Whatever the order, the releases are done now: try once more.
    if rt.execute(&transfer("200", "acct-r")).authorized {
        passed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    assert_eq!(passed.into_inner(), 2);
    rt.verify().unwrap();
    rt.ledger()
        .verify_windows(&rt_windows(), digest(&rt))
        .unwrap();
}

fn capfence(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_outcome_command() {
    let dir = TempDir::new("outcome-cli");
    let seq = {
        let rt = ActionRuntime::builder(VELOCITY)
            .state_dir(dir.path())
            .build()
            .unwrap();
        rt.execute(&transfer("300", "acct-c")).seq.unwrap()
    };
    let seq = seq.to_string();
    let ok = capfence(
        dir.path(),
        &[
            "outcome",
            &seq,
            "executed",
            "--policy",
            VELOCITY,
            "--reference",
            "BANK-1",
            "--amount",
            "299.99",
        ],
    );
    let text = String::from_utf8_lossy(&ok.stdout);
    assert_eq!(ok.status.code(), Some(0), "{text}");
    assert!(
        text.contains("executed (reference BANK-1, amount sent 299.99)"),
        "{text}"
    );
    let again = capfence(
        dir.path(),
        &[
            "outcome", &seq, "failed", "--policy", VELOCITY, "--error", "late",
        ],
    );
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stdout).contains("already has its outcome"));
    let usage = capfence(
        dir.path(),
        &["outcome", &seq, "failed", "--policy", VELOCITY],
    );
    assert_eq!(usage.status.code(), Some(2));
    let bad = capfence(
        dir.path(),
        &[
            "outcome", "1", "executed", "--policy", VELOCITY, "--amount", "1e999999",
        ],
    );
    assert_eq!(bad.status.code(), Some(2));
    let verify = capfence(dir.path(), &["verify", "--policy", VELOCITY]);
    assert_eq!(
        verify.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&verify.stdout)
    );
    let log = capfence(dir.path(), &["audit", "log"]);
    assert!(String::from_utf8_lossy(&log.stdout).contains("outcome"));
}
