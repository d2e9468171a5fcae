//! Signed checkpoints of the ledger's Merkle tree catch a ledger rolled
//! back, cut or rewritten after them; proofs check out with an independent
//! implementation (tests/independent/checkpoint_check.py).

use std::path::Path;
use std::process::{Command, Output};

use capfence::ActionRuntime;
use capfence::signing::OperatorKey;

use super::{TempDir, copy_dir, sql};

fn ops1() -> OperatorKey {
    OperatorKey::from_seed("ops1", [1; 32]).unwrap()
}

fn witness() -> OperatorKey {
    OperatorKey::from_seed("witness1", [7; 32]).unwrap()
}

/// A small signed policy; the file, key files and state directory in `dir`.
fn setup(dir: &Path) -> (String, String) {
    let policy = dir.join("policy.yaml");
    std::fs::write(
        &policy,
        format!(
            "approvers:\n  ops1: {}\nwitnesses:\n  witness1: {}\nallow:\n  - capability: payments.transfer\n    amount_lte: 500\n",
            ops1().public_key(),
            witness().public_key()
        ),
    )
    .unwrap();
    let key = dir.join("ops1.key");
    ops1().write_new(&key).unwrap();
    witness().write_new(&dir.join("witness1.key")).unwrap();
    (
        policy.to_string_lossy().into_owned(),
        key.to_string_lossy().into_owned(),
    )
}

fn decide(state: &Path, policy: &str, count: usize) {
    let rt = ActionRuntime::builder(policy)
        .state_dir(state)
        .build()
        .unwrap();
    for i in 0..count {
        let amount = format!("{}", 10 + i);
        let event = super::transfer(&amount, "vendor-1");
        rt.execute(&event);
    }
}

fn capfence(state: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(state)
        .args(args)
        .output()
        .unwrap()
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// `audit checkpoint --key KEY --out OUT` on `state`: exits 0.
fn checkpoint(state: &Path, key: &str, out: &str) {
    let o = capfence(state, &["audit", "checkpoint", "--key", key, "--out", out]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_rolled_back_cut_or_rewritten_ledger_fails_its_checkpoint() {
    let dir = TempDir::new("checkpoint");
    let (policy, key) = setup(dir.path());
    let state = dir.path().join("state");
    decide(&state, &policy, 5);
    // The backup an attacker will restore: 6 records (the policy's
    // activation and 5 decisions).
    let backup = dir.path().join("backup");
    copy_dir(&state, &backup);
    decide(&state, &policy, 4);
    let cp = dir.path().join("cp9");
    let cp_text = cp.to_string_lossy().into_owned();
    checkpoint(&state, &key, &cp_text);
    let note = std::fs::read_to_string(&cp).unwrap();
    let lines: Vec<&str> = note.lines().collect();
    assert!(lines[0].starts_with("capfence.ledger/"), "{note}");
    // Nine decisions and the policy's activation.
    assert_eq!(lines[1], "10");
    assert_eq!(lines[3], "");
    assert!(lines[4].starts_with("\u{2014} ops1 "), "{note}");
    // Never overwrites.
    let again = capfence(
        &state,
        &["audit", "checkpoint", "--key", &key, "--out", &cp_text],
    );
    assert_eq!(again.status.code(), Some(2), "{}", text(&again));

    let verify = |state: &Path, cp: &str| {
        capfence(state, &["verify", "--policy", &policy, "--checkpoint", cp])
    };
    let o = verify(&state, &cp_text);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("consistent with"), "{}", text(&o));
    // The ledger grows: still consistent with the older checkpoint.
    decide(&state, &policy, 3);
    let o = verify(&state, &cp_text);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));

    // The restored backup: a valid, shorter chain. Plain verify is
    // content; the checkpoint is not.
    assert_eq!(capfence(&backup, &["verify"]).status.code(), Some(0));
    let o = verify(&backup, &cp_text);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("holds 6 records, fewer than the checkpoint's size 10"),
        "{}",
        text(&o)
    );

    // A cut tail: the last records deleted.
    sql(&state)
        .execute("DELETE FROM audit WHERE seq > 7", [])
        .unwrap();
    assert_eq!(capfence(&state, &["verify"]).status.code(), Some(0));
    let o = verify(&state, &cp_text);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("rolled back or cut"), "{}", text(&o));

    // A rewritten history (another ledger of 9+ records under the same
    // policy) is another ledger: its origin differs.
    let other = dir.path().join("other");
    decide(&other, &policy, 10);
    let o = verify(&other, &cp_text);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("is of ledger"), "{}", text(&o));
}

#[test]
fn only_a_checkpoint_signed_by_a_listed_key_counts() {
    let dir = TempDir::new("checkpoint-keys");
    let (policy, key) = setup(dir.path());
    let state = dir.path().join("state");
    decide(&state, &policy, 3);
    let cp = dir.path().join("cp");
    let cp_text = cp.to_string_lossy().into_owned();
    checkpoint(&state, &key, &cp_text);
    let note = std::fs::read_to_string(&cp).unwrap();
    let verify = |file: &str| {
        capfence(
            &state,
            &["verify", "--policy", &policy, "--checkpoint", file],
        )
    };

    // A forged root under ops1's signature line does not verify.
    let lines: Vec<&str> = note.lines().collect();
    let forged_root = capfence::merkle::leaf_hash(&[9; 32]);
    use base64::Engine as _;
    let forged = note.replace(
        lines[2],
        &base64::engine::general_purpose::STANDARD.encode(forged_root),
    );
    let forged_file = dir.path().join("forged");
    std::fs::write(&forged_file, forged).unwrap();
    let o = verify(forged_file.to_str().unwrap());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("signature by `ops1` does not verify"),
        "{}",
        text(&o)
    );

    // Signed by a key the policy does not list: no signature counts.
    let mallory = OperatorKey::from_seed("mallory", [66; 32]).unwrap();
    let (_, leaves) = ActionRuntime::builder(policy.as_str())
        .state_dir(&state)
        .build()
        .unwrap()
        .ledger()
        .tree()
        .unwrap();
    let parsed = capfence::checkpoint::Checkpoint::parse(&note).unwrap();
    let alien = capfence::checkpoint::Checkpoint::signed(
        &parsed.origin,
        leaves.len() as u64,
        capfence::merkle::root(&leaves),
        &mallory,
    );
    let alien_file = dir.path().join("alien");
    std::fs::write(&alien_file, alien.render()).unwrap();
    let o = verify(alien_file.to_str().unwrap());
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no signature by a key the policy lists"),
        "{}",
        text(&o)
    );

    // A witness cosigns: both names count.
    let witness_key = dir.path().join("witness1.key");
    let o = capfence(
        &state,
        &[
            "audit",
            "cosign",
            &cp_text,
            "--key",
            witness_key.to_str().unwrap(),
        ],
    );
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = verify(&cp_text);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("signed by ops1, witness1"),
        "{}",
        text(&o)
    );

    // Not a checkpoint at all: a usage error naming the file.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, "hello\n").unwrap();
    let o = verify(junk.to_str().unwrap());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not a checkpoint"), "{}", text(&o));
}

#[test]
fn proofs_check_out_with_an_independent_implementation() {
    let dir = TempDir::new("checkpoint-proofs");
    let (policy, key) = setup(dir.path());
    let state = dir.path().join("state");
    // The policy's activation and 10 decisions.
    decide(&state, &policy, 10);
    let cp = dir.path().join("cp");
    let cp_text = cp.to_string_lossy().into_owned();
    checkpoint(&state, &key, &cp_text);
    decide(&state, &policy, 6);
    let mut proofs = Vec::new();
    for seq in [1u64, 2, 6, 8, 11] {
        let o = capfence(
            &state,
            &["audit", "prove", &seq.to_string(), "--checkpoint", &cp_text],
        );
        assert_eq!(o.status.code(), Some(0), "{}", text(&o));
        let proof: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        assert_eq!(proof["seq"], seq);
        assert_eq!(proof["leaf_index"], seq - 1);
        assert_eq!(proof["tree_size"], 11);
        proofs.push(proof);
    }
    // Past the checkpoint's size: refused.
    let o = capfence(&state, &["audit", "prove", "12", "--checkpoint", &cp_text]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    // Without a checkpoint: against the whole ledger.
    let o = capfence(&state, &["audit", "prove", "17"]);
    let whole: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(whole["tree_size"], 17);

    let hashes: Vec<String> = sql(&state)
        .prepare("SELECT hash FROM audit ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let case = serde_json::json!({
        "checkpoint": std::fs::read_to_string(&cp).unwrap(),
        "keys": {"ops1": ops1().public_key()},
        "proofs": proofs,
        "chain_hashes": hashes,
    });
    let case_file = dir.path().join("case.json");
    std::fs::write(&case_file, case.to_string()).unwrap();
    let Some(python) = std::env::var_os("CAPFENCE_MCP_PYTHON") else {
        assert!(
            std::env::var_os("CI").is_none(),
            "CI must run the independent checkpoint check: set CAPFENCE_MCP_PYTHON"
        );
        eprintln!("skipped: the independent check needs CAPFENCE_MCP_PYTHON (with `cryptography`)");
        return;
    };
    let out = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/independent/checkpoint_check.py"
        ))
        .arg(&case_file)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("5 proofs verified"),
        "{}",
        text(&out)
    );
}

#[test]
fn the_sidecar_writes_a_checkpoint_every_n_records_and_each_verifies() {
    let dir = TempDir::new("checkpoint-every");
    let (policy, key) = setup(dir.path());
    let state = dir.path().join("state");
    let cps = dir.path().join("cps");
    let lines: String = (0..10)
        .map(|i| {
            format!(
                r#"{{"actor":"agent","capability":"payments.transfer","environment":"production","risk":"low","payload":{{"amount":{}}}}}"#,
                10 + i
            ) + "\n"
        })
        .collect();
    use std::io::Write as _;
    let mut child = Command::new(env!("CARGO_BIN_EXE_capfence"))
        .arg("--state")
        .arg(&state)
        .args([
            "decide",
            "--policy",
            &policy,
            "--checkpoint-every",
            "4",
            "--checkpoint-dir",
            cps.to_str().unwrap(),
            "--checkpoint-key",
            &key,
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(lines.as_bytes())
        .unwrap();
    assert!(child.wait_with_output().unwrap().status.success());
    // 11 records (the activation and 10 decisions): marks at 4 and 8.
    let mut written: Vec<String> = std::fs::read_dir(&cps)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    written.sort();
    assert!(written.len() >= 2, "{written:?}");
    for name in &written {
        let file = cps.join(name);
        let note =
            capfence::checkpoint::Checkpoint::parse(&std::fs::read_to_string(&file).unwrap())
                .unwrap();
        assert_eq!(name, &format!("checkpoint-{:012}", note.size));
        let o = capfence(
            &state,
            &[
                "verify",
                "--policy",
                &policy,
                "--checkpoint",
                file.to_str().unwrap(),
            ],
        );
        assert_eq!(o.status.code(), Some(0), "{name}: {}", text(&o));
    }
    // The incremental tree head agrees with the tree over every leaf.
    let rt = ActionRuntime::builder(policy.as_str())
        .state_dir(&state)
        .build()
        .unwrap();
    let (_, leaves) = rt.ledger().tree().unwrap();
    assert_eq!(
        rt.ledger().tree_head().unwrap(),
        (leaves.len() as u64, capfence::merkle::root(&leaves))
    );
    // A frontier note ahead of a cut chain is not trusted.
    sql(&state)
        .execute("DELETE FROM audit WHERE seq > 5", [])
        .unwrap();
    let (_, leaves) = rt.ledger().tree().unwrap();
    assert_eq!(
        rt.ledger().tree_head().unwrap(),
        (5, capfence::merkle::root(&leaves))
    );
}
