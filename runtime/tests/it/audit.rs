//! The canonical encoding and hashes against docs/audit-format.md, and the
//! verifier on hand-made chains.

use capfence::audit::{AuditRecord, ChainFault, GENESIS, Verifier};

use super::vectors;

fn doc_block(name: &str) -> String {
    let doc = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../docs/audit-format.md"
    ))
    .unwrap();
    let start = doc
        .find(&format!("```text {name}\n"))
        .unwrap_or_else(|| panic!("no block {name}"));
    let body = &doc[start..];
    let body = &body[body.find('\n').unwrap() + 1..];
    body[..body.find("```").unwrap()].to_owned()
}

#[test]
fn documented_vectors_hold() {
    let chain = vectors::chain();
    for (i, record) in chain.iter().enumerate() {
        let n = i + 1;
        assert_eq!(
            String::from_utf8(record.canonical()).unwrap(),
            doc_block(&format!("vector-{n}-canonical")),
            "record {n}"
        );
        assert_eq!(
            record.hash,
            doc_block(&format!("vector-{n}-hash")).trim(),
            "record {n}"
        );
    }
    // The approval steps replay: T-1 opened, approved, consumed once; G-1 given.
    let ticket = capfence::approvals::chain_ticket(&chain[2..], None).unwrap();
    assert_eq!(ticket.approved_by().as_deref(), Some("ops@corp"));
    assert_eq!(ticket.used_at, Some(5));
    let grant = capfence::approvals::chain_grant(1, &chain[1..2]).unwrap();
    assert_eq!(grant.uses_left, Some(3));
    assert_eq!(capfence::approvals::caps_text(&grant.caps), "amount=5000");
}

#[test]
fn an_independent_implementation_agrees() {
    // Python's hashlib re-chains the documented canonical blocks and checks
    // every length prefix: a second implementation of docs/audit-format.md.
    let out = std::process::Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/independent/audit_vectors.py"
        ))
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../docs/audit-format.md"
        ))
        .output()
        .expect("python3 runs the independent check");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ok: 5 records");
}

#[test]
fn a_value_cannot_forge_a_field_boundary() {
    let mut a = vectors::first();
    a.reason = "x\nrule=8:allow[9]".into();
    let mut b = vectors::first();
    b.reason = "x".into();
    b.rule = Some("allow[9]".into());
    assert_ne!(a.canonical(), b.canonical());
    let mut c = vectors::first();
    c.approval_id = Some("~".into());
    assert_ne!(
        c.canonical(),
        vectors::first().canonical(),
        "absent and \"~\" differ"
    );
}

fn chain(n: u64) -> Vec<AuditRecord> {
    let mut prev = GENESIS.to_owned();
    (1..=n)
        .map(|seq| {
            let mut r = vectors::first();
            r.seq = seq;
            r.reason = format!("record {seq}");
            r.prev_hash = prev.clone();
            r.hash = r.compute_hash();
            prev.clone_from(&r.hash);
            r
        })
        .collect()
}

fn verify(records: &[AuditRecord], head: Option<&str>) -> Result<(u64, String), ChainFault> {
    let mut v = head.map_or_else(Verifier::default, Verifier::with_head);
    for r in records {
        v.check(r)?;
    }
    v.finish()
}

#[test]
fn verifier_names_the_first_bad_record() {
    let good = chain(6);
    assert_eq!(verify(&good, None).unwrap().0, 6);

    let mut edited = good.clone();
    edited[3].reason = "rewritten".into();
    assert_eq!(verify(&edited, None), Err(ChainFault::Edited { seq: 4 }));

    let mut deleted = good.clone();
    deleted.remove(2);
    assert_eq!(
        verify(&deleted, None),
        Err(ChainFault::Gap {
            expected: 3,
            found: 4
        })
    );

    let mut reordered = good.clone();
    reordered.swap(1, 2);
    assert_eq!(
        verify(&reordered, None),
        Err(ChainFault::Gap {
            expected: 2,
            found: 3
        })
    );
    let mut repeated = good.clone();
    repeated.insert(3, good[2].clone());
    assert_eq!(
        verify(&repeated, None),
        Err(ChainFault::OutOfOrder {
            expected: 4,
            found: 3
        })
    );

    // A forged record re-sealed in place still breaks the link of the next one.
    let mut forged = good.clone();
    forged[2].reason = "forged".into();
    let prev = forged[1].hash.clone();
    forged[2].prev_hash = prev.clone();
    forged[2].hash = forged[2].compute_hash();
    assert_eq!(
        verify(&forged, None),
        Err(ChainFault::BrokenLink {
            seq: 4,
            previous: 3
        })
    );

    let head = good[5].hash.clone();
    assert!(verify(&good, Some(&head)).is_ok());
    assert!(matches!(
        verify(&good[..4], Some(&head)),
        Err(ChainFault::HeadMissing { last: 4, .. })
    ));
    assert!(verify(&[], Some(GENESIS)).is_ok());
}
