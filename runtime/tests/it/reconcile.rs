//! `capfence audit reconcile`: the ledger's executed calls against a
//! payment rail's export. Each planted fault is found, and nothing else.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use capfence::reconcile::{self, Columns, Executed, RailRow};
use capfence::{ActionRuntime, Decimal, Outcome};

use super::{TempDir, sql, transfer};

/// A rail file of 100,000 movements against 100,000 executed calls, with
/// one of each fault planted: a movement no call made, a call with no
/// movement, an amount and a destination that differ, and a reference the
/// rail books twice.
#[test]
fn a_100000_row_rail_file_with_one_of_each_fault() {
    const N: u64 = 100_000;
    let calls: Vec<Executed> = (1..=N)
        .map(|i| Executed {
            seq: 2 * i,
            outcome_seq: 2 * i + 1,
            reference: Some(format!("BANK-{i:06}")),
            amount: Some(Decimal::new(i64::try_from(i % 9_000).unwrap() * 100 + 1, 2)),
            destination: Some(format!("acct-{}", i % 500)),
        })
        .collect();
    let mut csv = String::from("booked_at,txn_id,value,beneficiary\n");
    for c in &calls {
        let i = c.seq / 2;
        let reference = c.reference.as_deref().unwrap();
        let mut amount = c.amount.unwrap();
        let mut destination = c.destination.clone().unwrap();
        match i {
            // The call with no movement.
            777 => continue,
            // The amount differs by a cent.
            31_337 => amount += Decimal::new(1, 2),
            // Paid elsewhere.
            50_000 => destination = "acct-attacker".to_owned(),
            _ => {}
        }
        writeln!(
            csv,
            "2026-12-06T10:{:02}:00Z,{reference},{},\"{destination}\"",
            i % 60,
            amount.normalize()
        )
        .unwrap();
    }
    // Money that went around the firewall, and a double booking.
    csv.push_str("2026-12-06T11:00:00Z,BANK-999999,4999.99,acct-x\n");
    csv.push_str("2026-12-06T11:00:01Z,BANK-000042,4200.01,acct-42\n");
    let columns = Columns::default()
        .parse_mapping("reference=txn_id, amount=value, destination=beneficiary, time=booked_at")
        .unwrap();
    let rail = reconcile::read_rail(csv.as_bytes(), "rail.csv", &columns).unwrap();
    assert_eq!(rail.len(), 100_001);
    let report = reconcile::reconcile(&calls, &rail);
    let refs =
        |rows: &[RailRow]| -> Vec<String> { rows.iter().map(|r| r.reference.clone()).collect() };
    assert_eq!(refs(&report.unauthorized), ["BANK-999999", "BANK-000042"]);
    assert_eq!(
        report.unauthorized[1].line, 100_002,
        "the double booking's line"
    );
    assert_eq!(report.missing.len(), 1);
    assert_eq!(report.missing[0].reference.as_deref(), Some("BANK-000777"));
    let differs: Vec<(String, Vec<&str>)> = report
        .mismatched
        .iter()
        .map(|m| (m.movement.reference.clone(), m.differs.clone()))
        .collect();
    assert_eq!(
        differs,
        [
            ("BANK-031337".to_owned(), vec!["amount"]),
            ("BANK-050000".to_owned(), vec!["destination"]),
        ]
    );
    assert_eq!(report.matched, 99_997);
    assert!(!report.is_clean());
}

fn capfence(state: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

/// Through the command, on a real ledger: executed calls (one that sent
/// less than decided), a failed one, one with no outcome yet.
#[test]
fn the_reconcile_command_on_a_ledger() {
    let dir = TempDir::new("reconcile-cli");
    let state = dir.path().join("state");
    let rt = ActionRuntime::builder(super::POLICY)
        .state_dir(&state)
        .build()
        .unwrap();
    let mut seqs = Vec::new();
    for i in 0..8 {
        let v = rt.execute(&transfer("300", &format!("acct-{i}")));
        assert!(v.authorized, "{}", v.reason);
        seqs.push(v.seq.unwrap());
    }
    for (i, seq) in seqs.iter().enumerate().take(6) {
        let amount = (i == 2).then(|| "299.99".parse::<Decimal>().unwrap());
        rt.record_outcome(
            *seq,
            &Outcome::Executed {
                reference: Some(format!("BANK-{i}")),
                amount,
            },
        )
        .unwrap();
    }
    rt.record_outcome(
        seqs[6],
        &Outcome::Failed {
            error: "declined".to_owned(),
        },
    )
    .unwrap();
    let rail = dir.path().join("rail.csv");
    let write = |rows: &[(&str, &str, &str)]| {
        let mut text = String::from("txn_id,value,beneficiary,booked_at\n");
        for (reference, amount, to) in rows {
            writeln!(text, "{reference},{amount},{to},2026-12-06").unwrap();
        }
        std::fs::write(&rail, text).unwrap();
    };
    let columns = "reference=txn_id,amount=value,destination=beneficiary,time=booked_at";
    let run = |format: &str| {
        capfence(
            &state,
            &[
                "audit",
                "reconcile",
                "--rail",
                rail.to_str().unwrap(),
                "--columns",
                columns,
                "--format",
                format,
            ],
        )
    };
    // Everything executed is on the rail as decided (BANK-2 as sent).
    write(&[
        ("BANK-0", "300", "acct-0"),
        ("BANK-1", "300.00", "acct-1"),
        ("BANK-2", "299.99", "acct-2"),
        ("BANK-3", "300", "acct-3"),
        ("BANK-4", "300", "acct-4"),
        ("BANK-5", "300", "acct-5"),
    ]);
    let clean = run("text");
    let text = String::from_utf8_lossy(&clean.stdout);
    assert_eq!(clean.status.code(), Some(0), "{text}");
    assert!(
        text.contains("ok: 6 movements, 6 executed calls, 6 matched"),
        "{text}"
    );

    // BANK-4 never reached the rail, BANK-5 went elsewhere, and the failed
    // call's money moved anyway under a reference no call has.
    write(&[
        ("BANK-0", "300", "acct-0"),
        ("BANK-1", "300", "acct-1"),
        ("BANK-2", "299.99", "acct-2"),
        ("BANK-3", "300", "acct-3"),
        ("BANK-5", "300", "acct-666"),
        ("BANK-X", "300", "acct-6"),
    ]);
    let found = run("text");
    let text = String::from_utf8_lossy(&found.stdout);
    assert_eq!(found.status.code(), Some(1), "{text}");
    assert!(
        text.contains("movements on the rail with no executed call: 1\n  line 7: reference BANK-X"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "executed calls with no movement on the rail: 1\n  record {} ",
            seqs[4]
        )),
        "{text}"
    );
    assert!(
        text.contains("destination differs: line 6: reference BANK-5"),
        "{text}"
    );
    let json = run("json");
    assert_eq!(json.status.code(), Some(1));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(report["unauthorized"][0]["reference"], "BANK-X");
    assert_eq!(report["unauthorized"][0]["amount"], "300");
    assert_eq!(report["missing"][0]["seq"], seqs[4]);
    assert_eq!(
        report["mismatched"][0]["differs"],
        serde_json::json!(["destination"])
    );
    assert_eq!(report["matched"], 4);

    // A rail file that is not what it should be: exit 2 naming the line.
    std::fs::write(
        &rail,
        "txn_id,value,beneficiary,booked_at\nB-1,lots,acct-1,today\n",
    )
    .unwrap();
    let bad = run("text");
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("rail.csv:2: column `value`"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    // A chain edited behind the ledger's back is not reconciled against.
    write(&[("BANK-0", "300", "acct-0")]);
    drop(rt);
    sql(&state)
        .execute("UPDATE audit SET reason = 'edited' WHERE seq = 2", [])
        .unwrap();
    let broken = run("text");
    assert_eq!(broken.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&broken.stdout).contains("does not verify"));
}

/// The rail file docs/reconciliation.md shows reads as it says: three
/// movements, a quoted destination holding a comma.
#[test]
fn the_documented_rail_file_reads() {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/reconciliation.md"
    ))
    .unwrap();
    let block = doc
        .split("```csv rail-example\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .unwrap();
    let rows = reconcile::read_rail(block.as_bytes(), "doc", &Columns::default()).unwrap();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[2].destination, "acct, held");
    assert_eq!(rows[2].line, 4);
    assert_eq!(rows[0].amount, "2500".parse::<Decimal>().unwrap());
}
