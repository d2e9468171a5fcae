//! `new:` conditions: the first payment to an account the actor never paid
//! is held; once one is authorized, the account is known. Decided inside the
//! transaction that records the call, on SQLite and PostgreSQL; `cooling`
//! keeps a new account new for a while, `window` limits how far back
//! "known" reaches, and a failed payment does not make an account known.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use capfence::{ActionRuntime, Outcome};

use super::{ManualClock, TempDir, transfer};

const POLICY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/new_payee.yaml");

fn runtime(state: &Path, policy: &Path, clock: Arc<ManualClock>) -> ActionRuntime {
    ActionRuntime::builder(policy)
        .state_dir(state)
        .clock(clock)
        .build()
        .unwrap()
}

fn windows(policy: &Path) -> Vec<capfence_compiler::window::Window> {
    capfence::Policy::load(policy).unwrap().windows()
}

#[test]
fn the_first_payment_to_a_new_account_is_held_and_the_second_is_not() {
    let dir = TempDir::new("new-payee");
    let clock = Arc::new(ManualClock::default());
    let rt = runtime(dir.path(), Path::new(POLICY), Arc::clone(&clock));
    let first = rt.execute(&transfer("300", "acct-new"));
    assert!(!first.authorized);
    assert_eq!(first.rule.as_deref(), Some("new-payee"));
    assert!(
        first.reason.contains("destination new per actor: new"),
        "{}",
        first.reason
    );
    let ticket = first.approval_id.unwrap();
    rt.approve(&ticket, "ops").unwrap();
    assert!(
        rt.execute(&transfer("300", "acct-new")).authorized,
        "approved"
    );
    // Known now: the next payment within the limits needs nobody.
    let second = rt.execute(&transfer("250", "acct-new"));
    assert!(second.authorized, "{}", second.reason);
    // Known to this actor only, and compared as a token (case folded).
    assert!(rt.execute(&transfer("250", "ACCT-NEW")).authorized);
    let other = rt.execute(&super::transfer("250", "acct-other"));
    assert!(!other.authorized, "another account is new");
    rt.verify().unwrap();
    rt.ledger()
        .verify_windows(&windows(Path::new(POLICY)), &rt.policy_facts().digest)
        .unwrap();
}

#[test]
fn a_failed_payment_does_not_make_an_account_known() {
    let dir = TempDir::new("new-payee-failed");
    let clock = Arc::new(ManualClock::default());
    let rt = runtime(dir.path(), Path::new(POLICY), clock);
    let held = rt.execute(&transfer("300", "acct-f"));
    rt.approve(held.approval_id.as_deref().unwrap(), "ops")
        .unwrap();
    let paid = rt.execute(&transfer("300", "acct-f"));
    assert!(paid.authorized);
    rt.record_outcome(
        paid.seq.unwrap(),
        &Outcome::Failed {
            error: "account closed".to_owned(),
        },
    )
    .unwrap();
    assert!(
        !rt.execute(&transfer("300", "acct-f")).authorized,
        "nothing ever reached it: still new"
    );
    rt.ledger()
        .verify_windows(&windows(Path::new(POLICY)), &rt.policy_facts().digest)
        .unwrap();
}

#[test]
fn cooling_and_window_bound_what_known_means() {
    let dir = TempDir::new("new-payee-cooling");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "require_approval:
  - id: new-payee
    capability: payments.transfer
    new: destination
    cooling: 72h
    window: 30d
allow:
  - capability: payments.transfer
    amount_lte: 500
",
    )
    .unwrap();
    let clock = Arc::new(ManualClock::default());
    let rt = runtime(&dir.path().join("state"), &policy, Arc::clone(&clock));
    let held = rt.execute(&transfer("100", "acct-c"));
    rt.approve(held.approval_id.as_deref().unwrap(), "ops")
        .unwrap();
    assert!(rt.execute(&transfer("100", "acct-c")).authorized);
    // Within the cooling period every payment still waits for a human.
    clock.advance(Duration::from_secs(71 * 3600));
    let cooling = rt.execute(&transfer("100", "acct-c"));
    assert!(!cooling.authorized, "{}", cooling.reason);
    assert!(cooling.reason.contains("cooling 3d"), "{}", cooling.reason);
    // 72 hours after the first payment went through, it is known.
    clock.advance(Duration::from_secs(3600 + 1));
    assert!(rt.execute(&transfer("100", "acct-c")).authorized);
    // Thirty days without a payment that counts: new again. The payment
    // just made keeps it known for thirty days from then.
    clock.advance(Duration::from_secs(29 * 86_400));
    assert!(rt.execute(&transfer("100", "acct-c")).authorized);
    clock.advance(Duration::from_secs(31 * 86_400));
    assert!(
        !rt.execute(&transfer("100", "acct-c")).authorized,
        "forgotten"
    );
    rt.ledger()
        .verify_windows(&windows(&policy), &rt.policy_facts().digest)
        .unwrap();
}

/// Eight callers racing to pay one new account: none gets through without
/// a human, however the transactions interleave.
#[test]
fn racing_first_payments_are_all_held() {
    let dir = TempDir::new("new-payee-race");
    let clock = Arc::new(ManualClock::default());
    let rt = runtime(dir.path(), Path::new(POLICY), clock);
    let passed = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for i in 0..8 {
            let rt = &rt;
            let passed = &passed;
            s.spawn(move || {
                let amount = format!("{}", 100 + i);
                if rt.execute(&transfer(&amount, "acct-race")).authorized {
                    passed.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
            });
        }
    });
    assert_eq!(passed.into_inner(), 0);
    rt.verify().unwrap();
}

#[test]
fn new_needs_its_fields_and_cooling_needs_new() {
    let dir = TempDir::new("new-payee-errors");
    for (text, message) in [
        (
            "require_approval:\n  - capability: payments.transfer\n    cooling: 72h\n",
            "has `cooling` but no `new`",
        ),
        (
            "require_approval:\n  - capability: payments.transfer\n    new: [destination, destination]\n",
            "`new` lists `destination` twice",
        ),
        (
            "require_approval:\n  - capability: payments.transfer\n    new: destination\n    cooling: 1.5h\n",
            "`cooling: 1.5h` is not a duration",
        ),
        (
            "require_approval:\n  - capability: payments.transfer\n    new: \"a b\"\n",
            "not a payload field name",
        ),
    ] {
        let path = dir.path().join("p.yaml");
        std::fs::write(&path, text).unwrap();
        let e = capfence::Policy::load(&path).unwrap_err().to_string();
        assert!(e.contains(message), "{e}");
    }
}

/// A `unicode_fields` field is compared as text after NFKC: a decomposed
/// "Müller" is the account the composed one paid; another script's
/// look-alike is another account.
#[test]
fn unicode_values_compare_after_nfkc() {
    let dir = TempDir::new("new-payee-unicode");
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "unicode_fields: [beneficiary]
require_approval:
  - id: new-beneficiary
    capability: payments.transfer
    new: beneficiary
allow:
  - capability: payments.transfer
    amount_lte: 500
",
    )
    .unwrap();
    let clock = Arc::new(ManualClock::default());
    let rt = runtime(&dir.path().join("state"), &policy, clock);
    let pay = |beneficiary: &str| {
        capfence::ActionEvent::create(
            "treasury-agent",
            "transfer",
            "payments",
            "production",
            capfence::Risk::Low,
            capfence::payload! {"amount" => capfence::Decimal::from(100), "beneficiary" => beneficiary},
        )
    };
    let first = rt.execute(&pay("Müller GmbH"));
    assert_eq!(first.rule.as_deref(), Some("new-beneficiary"));
    rt.approve(first.approval_id.as_deref().unwrap(), "ops")
        .unwrap();
    assert!(rt.execute(&pay("Müller GmbH")).authorized);
    assert!(
        rt.execute(&pay("Mu\u{308}ller GmbH")).authorized,
        "the same name, decomposed"
    );
    assert!(
        !rt.execute(&pay("Мüller GmbH")).authorized,
        "a Cyrillic М is another account"
    );
    assert!(
        !rt.execute(&pay("Müller\u{200b} GmbH")).authorized,
        "a hidden character is malformed"
    );
    rt.ledger()
        .verify_windows(&windows(&policy), &rt.policy_facts().digest)
        .unwrap();
}
