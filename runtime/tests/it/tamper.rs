//! `capfence verify` against a real chain edited behind its back.

use std::process::{Command, Output};

use super::{TempDir, insert_record, runtime, sql, transfer};

fn capfence(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A state directory with `n` records on the chain: the policy's
/// activation, then `n - 1` decisions.
fn chain(name: &str, n: usize) -> TempDir {
    let dir = TempDir::new(name);
    let rt = runtime(dir.path());
    for i in 0..n.saturating_sub(1) {
        rt.execute(&transfer(&format!("{}", 100 + i), "vendor-7"));
    }
    dir
}

#[test]
fn a_clean_chain_verifies() {
    let dir = chain("clean", 8);
    let out = capfence(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).starts_with("ok: 8 records verified; head 8 "));
}

#[test]
fn an_edited_record_is_named() {
    let dir = chain("edited", 8);
    sql(dir.path())
        .execute(
            "UPDATE audit SET reason = 'nothing to see' WHERE seq = 5",
            [],
        )
        .unwrap();
    let out = capfence(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stdout(&out),
        "FAILED: record 5: its content does not match its hash (edited)\n"
    );
}

#[test]
fn a_deleted_record_is_named() {
    let dir = chain("deleted", 8);
    sql(dir.path())
        .execute("DELETE FROM audit WHERE seq = 3", [])
        .unwrap();
    let out = capfence(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("FAILED: record 4: expected seq 3"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn an_inserted_record_is_named() {
    let dir = chain("inserted", 8);
    let conn = sql(dir.path());
    // Make room after record 4 and insert a well-formed forgery chained to it.
    conn.execute_batch(
        "UPDATE audit SET seq = -seq - 1 WHERE seq > 4; UPDATE audit SET seq = -seq WHERE seq < 0;",
    )
    .unwrap();
    let prev: String = conn
        .query_row("SELECT hash FROM audit WHERE seq = 4", [], |r| r.get(0))
        .unwrap();
    let mut forged = super::vectors::first();
    forged.seq = 5;
    forged.prev_hash = prev.clone();
    forged.hash = forged.compute_hash();
    insert_record(&conn, &forged);
    let out = capfence(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("FAILED: record 6: prev_hash does not match the hash of record 5"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn reordered_records_are_named() {
    let dir = chain("reordered", 8);
    sql(dir.path())
        .execute_batch("UPDATE audit SET seq = 100 WHERE seq = 3; UPDATE audit SET seq = 3 WHERE seq = 6; UPDATE audit SET seq = 6 WHERE seq = 100;")
        .unwrap();
    let out = capfence(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stdout(&out).starts_with("FAILED: record 3:"),
        "{}",
        stdout(&out)
    );
}

#[test]
fn a_truncated_tail_is_caught_with_the_head() {
    let dir = chain("truncated", 8);
    let head = capfence(dir.path(), &["audit", "head"]);
    assert_eq!(head.status.code(), Some(0));
    let head = stdout(&head);
    let (seq, hash) = head.trim().split_once(' ').unwrap();
    assert_eq!(seq, "8");
    assert_eq!(hash.len(), 64);
    assert_eq!(
        capfence(dir.path(), &["verify", "--head", hash])
            .status
            .code(),
        Some(0)
    );
    sql(dir.path())
        .execute("DELETE FROM audit WHERE seq > 6", [])
        .unwrap();
    assert_eq!(
        capfence(dir.path(), &["verify"]).status.code(),
        Some(0),
        "a cut chain is still a chain"
    );
    let out = capfence(dir.path(), &["verify", "--head", hash]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).contains("truncated"), "{}", stdout(&out));
}

/// A writer with SQL access can re-seal the last record with a `decision`
/// CapFence never writes ("alow", a look-alike of "allow"): the hashes hold,
/// so only the record kind gives it away, and `verify` names it.
#[test]
fn a_record_kind_capfence_never_writes_is_named() {
    let dir = chain("kind", 4);
    let conn = sql(dir.path());
    let prev: String = conn
        .query_row("SELECT hash FROM audit WHERE seq = 3", [], |r| r.get(0))
        .unwrap();
    let record = runtime(dir.path())
        .ledger()
        .records()
        .unwrap()
        .pop()
        .unwrap();
    let mut view = record.view();
    view.decision = b"alow";
    view.prev_hash = prev.as_bytes();
    let hash = view.hash_hex(&mut Vec::new());
    let hash = String::from_utf8(hash.to_vec()).unwrap();
    conn.execute(
        "UPDATE audit SET decision = 'alow', hash = ?1 WHERE seq = 4",
        [&hash],
    )
    .unwrap();
    let out = capfence(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(
        stdout(&out).trim(),
        "FAILED: record 4: its decision \"alow\" is neither a decision nor an operator action"
    );
}

/// `verify` copies a held call asked again only while its ticket is
/// undecided (it changes nothing then). A writer with SQL access appends,
/// re-sealed, the same held call twice after the ticket was approved (and
/// twice before, legitimately): the first one after the approval is named.
#[test]
fn a_held_call_resealed_after_its_approval_is_named() {
    let dir = TempDir::new("recite-after-approval");
    let rt = runtime(dir.path());
    let event = transfer("2500", "vendor-7");
    let ticket = rt.execute(&event).approval_id.unwrap();
    assert_eq!(
        rt.execute(&event).approval_id.as_deref(),
        Some(ticket.as_str())
    );
    rt.approve(&ticket, "ops@corp").unwrap();
    drop(rt);
    let records = runtime(dir.path()).ledger().records().unwrap();
    let opening = records
        .iter()
        .find(|r| r.approval_id.as_deref() == Some(ticket.as_str()))
        .unwrap()
        .clone();
    let conn = sql(dir.path());
    let mut last = records.last().unwrap().clone();
    for _ in 0..2 {
        let mut forged = opening.clone();
        forged.seq = last.seq + 1;
        forged.time.clone_from(&last.time);
        forged.prev_hash.clone_from(&last.hash);
        forged.hash = forged.compute_hash();
        insert_record(&conn, &forged);
        last = forged;
    }
    let first_forged = last.seq - 1;
    let out = capfence(dir.path(), &["verify"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let said = stdout(&out);
    assert!(
        said.contains(&format!("record {first_forged}")) && said.contains(&ticket),
        "{said}"
    );
}
