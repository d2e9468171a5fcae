// The bodies of the fuzz targets, shared by `cargo fuzz` (fuzz/fuzz_targets/)
// and the stable replay test (tests/it/fuzz_replay.rs), so the corpora that
// CI replays run exactly the code the fuzzer ran.
//
// Every target asserts more than "no panic": where an input is accepted, it
// checks a property that would catch a wrong answer.

use capfence::audit::{AuditRecord, GENESIS, RecordKind, Verifier};
use capfence::{Compiled, Event, Policy};
use capfence_compiler::suite::Suite;
use capfence_compiler::when::parse_when;

/// The case-study policy's text, decided by the event and suite targets.
pub const FINTECH: &str = include_str!("../policies/fintech_policy.yaml");

fn fintech() -> Policy {
    Policy::parse(FINTECH, "policies/fintech_policy.yaml").unwrap_or_else(|e| {
        panic!("the case-study policy must load: {e}");
    })
}

/// Events every loaded policy decides.
const PROBES: [&str; 4] = [
    r#"{"actor":"a","capability":"payments.transfer","environment":"production","risk":"low","payload":{"amount":120,"destination":"v-1"}}"#,
    r#"{"actor":"a","capability":"payments.refund","environment":"staging","risk":"critical","payload":{"amount":"100.00"}}"#,
    r#"{"capability":"x.y"}"#,
    r#"{}"#,
];

/// The policy loader: an error has a location; a policy decides the probe
/// events, lints, and decides every witness the same way on a second load.
pub fn policy(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Policy::parse(text, "fuzz.yaml") {
        Err(e) => assert!(e.location.is_some(), "a load error without a location: {e}"),
        Ok(policy) => {
            let again = Policy::parse(text, "fuzz.yaml").unwrap_or_else(|e| {
                panic!("a policy that loaded once must load again: {e}");
            });
            assert_eq!(policy, again, "loading is deterministic");
            for probe in PROBES {
                if let Ok(event) = Event::from_json(probe) {
                    let _ = policy.decide(&event);
                }
            }
            let _ = capfence_compiler::analysis::lint(&policy);
        }
    }
}

/// The `when` parser: errors point inside the expression.
pub fn when(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Err(e) = parse_when(text) {
        assert!(e.line >= 1 && e.column >= 1, "{e:?}");
        let lines = text.split('\n').count().max(1);
        assert!(e.line <= lines, "line {} of {lines}: {e:?}", e.line);
    }
}

/// Event intake: an event that reads survives its own canonical JSON, and
/// the compiled table decides it exactly as the reference evaluator does.
pub fn event<C: Compiled>(data: &[u8], table: &C) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(event) = Event::from_json(text) else {
        return;
    };
    let again = Event::from_json(&event.to_json()).unwrap_or_else(|e| {
        panic!("canonical JSON must read back: {e}: {}", event.to_json());
    });
    assert_eq!(again, event, "canonical JSON round trip");
    let reference = fintech().decide(&event);
    let compiled = table.decide_view(&table.view(&event)).to_decision();
    assert_eq!(
        compiled, reference,
        "table and reference disagree on {text}"
    );
}

/// Suite files: a suite that reads runs against the case-study policy.
pub fn suite(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    match Suite::parse(text, "fuzz.tests.yaml") {
        Err(e) => {
            let _ = e.to_string();
        }
        Ok(suite) => {
            let report = suite.run(&fintech());
            let _ = report.render_human();
        }
    }
}

/// Audit records: fields cut from the input are sealed into a chain, which
/// must verify; the same chain with any one byte of one field changed must
/// not. Then the raw input, read as claimed records, must never panic the
/// verifier.
pub fn audit(data: &[u8]) {
    const KINDS: [RecordKind; 7] = [
        RecordKind::ALLOW,
        RecordKind::REQUIRE_APPROVAL,
        RecordKind::DENY,
        RecordKind::Approve,
        RecordKind::Reject,
        RecordKind::Grant,
        RecordKind::Revoke,
    ];
    let chunks: Vec<&[u8]> = data.split(|b| *b == 0).take(8).collect();
    let mut records = Vec::new();
    let mut prev = GENESIS.to_owned();
    for (i, chunk) in chunks.iter().enumerate() {
        let mut fields = chunk.split(|b| *b == b'|');
        let mut next = |absent_if_empty: bool| -> Option<String> {
            let bytes = fields.next()?;
            if absent_if_empty && bytes.is_empty() {
                return None;
            }
            Some(String::from_utf8_lossy(bytes).into_owned())
        };
        let mut record = AuditRecord {
            seq: i as u64 + 1,
            time: next(false).unwrap_or_default(),
            actor: next(true),
            capability: next(true),
            environment: next(true),
            risk: next(true),
            payload: next(false).unwrap_or_default(),
            decision: {
                // A kind CapFence writes, picked by the chunk's text.
                let text = next(false).unwrap_or_default();
                RecordKind::parse(&text).unwrap_or(KINDS[text.len() % KINDS.len()])
            },
            rule: next(true),
            reason: next(false).unwrap_or_default(),
            approval_id: next(true),
            policy_digest: next(true),
            prev_hash: String::new(),
            hash: String::new(),
        };
        record.prev_hash = prev.clone();
        record.hash = record.compute_hash();
        prev = record.hash.clone();
        records.push(record);
    }
    let mut verifier = Verifier::default();
    for record in &records {
        verifier
            .check(record)
            .unwrap_or_else(|f| panic!("a sealed chain must verify: {f}"));
    }
    assert!(verifier.finish().is_ok());

    // One edit anywhere is found.
    if let Some(first) = data.first() {
        let victim = usize::from(*first) % records.len().max(1);
        if let Some(record) = records.get_mut(victim) {
            let field = usize::from(data.get(1).copied().unwrap_or(0)) % 3;
            let target = match field {
                0 => &mut record.reason,
                1 => &mut record.payload,
                _ => &mut record.time,
            };
            target.push('x');
            let mut verifier = Verifier::default();
            let faulted = records.iter().any(|r| verifier.check(r).is_err());
            assert!(faulted, "an edited record verified");
        }
    }

    // Claimed records straight from the input: any verdict, never a panic.
    let mut verifier = Verifier::with_head(&String::from_utf8_lossy(data));
    for (i, chunk) in chunks.iter().enumerate() {
        let mut parts = chunk.splitn(2, |b| *b == b'|');
        let hash = parts.next().unwrap_or_default();
        let rest = parts.next().unwrap_or_default();
        let view = capfence::audit::RecordView {
            seq: (i as u64 + 1) * u64::from(chunk.len() % 3 != 0),
            time: rest,
            actor: None,
            capability: Some(rest),
            environment: None,
            risk: None,
            payload: rest,
            decision: rest,
            rule: None,
            reason: rest,
            approval_id: None,
            policy_digest: None,
            prev_hash: hash,
            hash,
        };
        if verifier.check_view(&view).is_err() {
            break;
        }
    }
    let _ = verifier.finish();
}
