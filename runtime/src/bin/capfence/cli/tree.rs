//! `audit checkpoint`, `audit cosign`, `audit prove` and the checkpoint
//! half of `verify`: the ledger's Merkle tree, as the library computes it.

#[allow(unused_imports)]
use capfence_compiler::{
    eprintln_escaped as eprintln, print_escaped as print, println_escaped as println,
};
use std::path::Path;
use std::process::ExitCode;

use capfence::checkpoint::{Checkpoint, CheckpointError, HoldFault};
use capfence::merkle;
use capfence::signing::OperatorKey;
use capfence::{Ledger, Policy};

use super::{Failure, Place};

fn read_checkpoint(file: &Path) -> Result<Checkpoint, Failure> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    Checkpoint::parse(&text).map_err(|e| format!("{}: {e}", file.display()))
}

fn load_key(file: &Path) -> Result<OperatorKey, Failure> {
    OperatorKey::load(file).map_err(|e| e.to_string())
}

/// `audit checkpoint --key FILE [--out FILE]`.
pub fn checkpoint(place: &Place, key: &Path, out: Option<&Path>) -> Result<ExitCode, Failure> {
    let key = load_key(key)?;
    let ledger = place.ledger(true)?;
    // Only a chain that verifies is worth a signature.
    if let Err(e) = ledger.verify(None) {
        eprintln!("refused: the ledger does not verify: {e}");
        return Ok(ExitCode::from(1));
    }
    let (origin, leaves) = ledger.tree().map_err(|e| e.to_string())?;
    let Some(origin) = origin else {
        eprintln!("refused: {}", CheckpointError::Empty);
        return Ok(ExitCode::from(1));
    };
    let size = leaves.len() as u64;
    let checkpoint = Checkpoint::signed(&origin, size, merkle::root(&leaves), &key);
    let text = checkpoint.render();
    match out {
        None => print!("{text}"),
        Some(file) => {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(file)
                .map_err(|e| format!("cannot create {}: {e}", file.display()))?;
            f.write_all(text.as_bytes())
                .and_then(|()| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
            eprintln!(
                "checkpoint of {size} records, root {}, signed by {}: {}",
                checkpoint.root_hex(),
                key.name(),
                file.display()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit cosign CHECKPOINT --key FILE`.
pub fn cosign(file: &Path, key: &Path) -> Result<ExitCode, Failure> {
    let key = load_key(key)?;
    let mut checkpoint = read_checkpoint(file)?;
    checkpoint.cosign(&key);
    let staged = file.with_extension("cosign.tmp");
    std::fs::write(&staged, checkpoint.render())
        .and_then(|()| std::fs::rename(&staged, file))
        .map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    eprintln!(
        "{} cosigned {} ({} records, root {})",
        key.name(),
        file.display(),
        checkpoint.size,
        checkpoint.root_hex()
    );
    Ok(ExitCode::SUCCESS)
}

/// `audit prove SEQ [--checkpoint FILE]`.
pub fn prove(place: &Place, seq: u64, checkpoint: Option<&Path>) -> Result<ExitCode, Failure> {
    let checkpoint = checkpoint.map(read_checkpoint).transpose()?;
    let ledger = place.ledger(true)?;
    let (_, leaves) = ledger.tree().map_err(|e| e.to_string())?;
    let size = checkpoint.as_ref().map_or(leaves.len() as u64, |c| c.size);
    let Some(tree) = usize::try_from(size).ok().and_then(|n| leaves.get(..n)) else {
        eprintln!(
            "refused: the checkpoint covers {size} records; the ledger holds {}",
            leaves.len()
        );
        return Ok(ExitCode::from(1));
    };
    let root = merkle::root(tree);
    if let Some(c) = &checkpoint
        && c.root != root
    {
        eprintln!(
            "refused: the ledger's first {size} records do not have the checkpoint's root {}",
            c.root_hex()
        );
        return Ok(ExitCode::from(1));
    }
    let index = seq.checked_sub(1);
    let found = index.and_then(|i| {
        let at = usize::try_from(i).ok()?;
        Some((i, tree.get(at)?, merkle::inclusion_proof(at, tree)?))
    });
    let Some((index, leaf, proof)) = found else {
        eprintln!("refused: record {seq} is not in a tree of {size} records");
        return Ok(ExitCode::from(1));
    };
    let json = serde_json::json!({
        "seq": seq,
        "leaf_index": index,
        "tree_size": size,
        "leaf_hash": merkle::to_hex(leaf),
        "proof": proof.iter().map(merkle::to_hex).collect::<Vec<_>>(),
        "root": merkle::to_hex(&root),
    });
    println!("{json}");
    Ok(ExitCode::SUCCESS)
}

/// Holds the ledger to the checkpoint in `file` (see
/// [`capfence::checkpoint::hold`]); prints who signed it. `Ok(Err(fault))`
/// is a finding.
pub fn hold_to(
    ledger: &Ledger,
    file: &Path,
    policy: &Policy,
) -> Result<Result<(), String>, Failure> {
    let checkpoint = read_checkpoint(file)?;
    let keys = checkpoint_keys(policy);
    let (size, root) = (checkpoint.size, checkpoint.root_hex());
    match capfence::checkpoint::hold(ledger, &checkpoint, &keys) {
        Ok(signers) => {
            println!(
                "checkpoint: consistent with {} (size {size}, root {root}, signed by {})",
                file.display(),
                signers.join(", ")
            );
            Ok(Ok(()))
        }
        Err(HoldFault::Store(e)) => Err(e.to_string()),
        Err(HoldFault::NoListedSigner) => Ok(Err(format!(
            "the checkpoint {} carries no signature by a key the policy lists",
            file.display()
        ))),
        Err(fault) => Ok(Err(fault.to_string())),
    }
}

/// The keys whose signatures on a checkpoint count: the policy's approvers
/// and witnesses (name, public key).
pub fn checkpoint_keys(policy: &Policy) -> Vec<(String, String)> {
    policy
        .approvers
        .iter()
        .chain(&policy.witnesses)
        .map(|a| (a.name.clone(), a.key.clone()))
        .collect()
}
