//! Fail closed: every storage fault is a deny that names it, never a panic,
//! never an authorization without a record.

use std::time::Duration;

use capfence::store::sqlite::SqliteOptions;
use capfence::{ActionRuntime, DecisionKind, Verdict};

use super::{POLICY, TempDir, runtime, sql, transfer};

fn safe(rt: &ActionRuntime) -> Verdict {
    rt.execute(&transfer("120", "vendor-corp-123"))
}

fn assert_denied(v: &Verdict, fault: &str) {
    assert!(!v.authorized, "{v:?}");
    assert_eq!(v.decision, DecisionKind::Deny, "{v:?}");
    assert!(
        v.reason.contains(fault),
        "`{}` does not name `{fault}`",
        v.reason
    );
}

#[test]
fn a_database_locked_past_the_timeout_denies() {
    let dir = TempDir::new("locked");
    assert!(safe(&runtime(dir.path())).authorized);
    let holder = sql(dir.path());
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let rt = ActionRuntime::builder(POLICY)
        .state_dir(dir.path())
        .lock_timeout(Duration::from_millis(100))
        .build()
        .unwrap();
    assert_denied(&safe(&rt), "locked");
    assert!(
        rt.try_execute(&transfer("120", "v")).is_err(),
        "try_execute reports the fault"
    );
    holder.execute_batch("COMMIT").unwrap();
    assert!(safe(&rt).authorized, "recovers once the lock is gone");
    assert_eq!(rt.verify().unwrap().0, 2 + 1, "and the policy's activation");
}

#[test]
fn read_only_storage_denies() {
    let dir = TempDir::new("readonly");
    assert!(safe(&runtime(dir.path())).authorized);
    let options = SqliteOptions {
        read_only: true,
        ..SqliteOptions::default()
    };
    let rt = ActionRuntime::builder(POLICY)
        .state_dir(dir.path())
        .sqlite_options(options)
        .build()
        .unwrap();
    assert_denied(&safe(&rt), "read-only");
}

#[test]
fn a_full_disk_denies_and_keeps_every_authorized_record() {
    let dir = TempDir::new("full");
    let options = SqliteOptions {
        max_page_count: Some(12),
        ..SqliteOptions::default()
    };
    let rt = ActionRuntime::builder(POLICY)
        .state_dir(dir.path())
        .sqlite_options(options)
        .build()
        .unwrap();
    let destination = "d".repeat(2000);
    let mut authorized = 0;
    let mut last = None;
    for _ in 0..200 {
        let v = rt.execute(&transfer("120", &destination));
        if !v.authorized {
            last = Some(v);
            break;
        }
        authorized += 1;
    }
    let v = last.expect("the page limit is reached");
    assert_denied(&v, "full");
    assert!(authorized > 0);
    let records = runtime(dir.path()).ledger().records().unwrap();
    assert_eq!(
        records
            .iter()
            .filter(|r| r.decision.as_str() == "allow")
            .count(),
        authorized
    );
    // Every authorized call and the policy's activation.
    assert_eq!(
        runtime(dir.path()).verify().unwrap().0 as usize,
        authorized + 1
    );
}

#[test]
fn a_corrupted_file_denies() {
    let dir = TempDir::new("corrupt");
    std::fs::write(dir.path().join("ledger.db"), vec![0x5a; 8192]).unwrap();
    let rt = runtime(dir.path());
    assert_denied(&safe(&rt), "corrupted");
    assert_denied(&rt.execute(&transfer("2500", "v")), "corrupted");
}

#[test]
fn a_foreign_database_denies() {
    let dir = TempDir::new("foreign");
    sql(dir.path())
        .execute_batch("CREATE TABLE customers (id INTEGER, name TEXT)")
        .unwrap();
    let rt = runtime(dir.path());
    assert_denied(&safe(&rt), "not a CapFence state directory");
}

#[test]
fn an_unusable_state_directory_denies() {
    let dir = TempDir::new("blocked");
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let rt = runtime(&file.join("state"));
    assert_denied(&safe(&rt), "audit storage");
}

#[test]
fn a_held_lock_is_waited_for_once_not_twice() {
    // Built while another writer holds the lock, the runtime must open the
    // store and decide within one lock timeout (it used to wait once at build
    // and again on the first transaction).
    let dir = TempDir::new("lock-wait");
    assert!(safe(&runtime(dir.path())).authorized);
    let holder = sql(dir.path());
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let timeout = Duration::from_millis(1500);
    let started = std::time::Instant::now();
    let rt = ActionRuntime::builder(POLICY)
        .state_dir(dir.path())
        .lock_timeout(timeout)
        .build()
        .unwrap();
    let verdict = safe(&rt);
    let waited = started.elapsed();
    assert_denied(&verdict, "locked");
    assert!(waited >= timeout, "gave up early: {waited:?}");
    assert!(
        waited < timeout + Duration::from_millis(1000),
        "waited {waited:?} for a lock timeout of {timeout:?}"
    );
    holder.execute_batch("COMMIT").unwrap();
    assert!(safe(&rt).authorized);
}

#[test]
fn an_old_two_file_state_directory_is_refused_with_what_to_do() {
    let dir = TempDir::new("two-files");
    std::fs::write(dir.path().join("audit.db"), b"").unwrap();
    std::fs::write(dir.path().join("approvals.db"), b"").unwrap();
    let v = safe(&runtime(dir.path()));
    assert_denied(&v, "earlier CapFence state");
    assert!(v.reason.contains("ledger.db"), "{}", v.reason);
    assert!(
        !dir.path().join("ledger.db").exists(),
        "nothing is mixed into the old directory"
    );
}

/// A storage fault is a kind to branch on, with the driver's error beneath
/// it as its source: nothing the driver said is lost.
#[test]
fn a_storage_fault_keeps_the_drivers_error_as_its_source() {
    use std::error::Error;
    let dir = TempDir::new("corrupt-source");
    std::fs::write(dir.path().join("ledger.db"), vec![0x5a; 8192]).unwrap();
    let opened =
        capfence::store::open_url(dir.path().to_str().unwrap(), Duration::from_millis(200))
            .and_then(|store| store.tickets());
    let Err(e) = opened else {
        panic!("a corrupted file opened");
    };
    assert!(matches!(e, capfence::StoreError::Corrupt(_)), "{e:?}");
    let detail = e.source().expect("a detail");
    let driver = detail.source().expect("the driver's error");
    assert!(
        driver.downcast_ref::<rusqlite::Error>().is_some(),
        "{driver:?}"
    );
    assert!(e.to_string().contains(&driver.to_string()), "{e}");
}
