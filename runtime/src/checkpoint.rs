//! Signed checkpoints of the ledger's Merkle tree, in the C2SP
//! tlog-checkpoint format (a signed note): the body is three lines, the
//! origin (which ledger), the tree size in decimal and the root in standard
//! base64; then an empty line and one signature line per signer,
//! `— NAME BASE64(key id ‖ Ed25519 signature of the body)`, the key id the
//! first four bytes of SHA-256(NAME ‖ "\n" ‖ 0x01 ‖ public key).
//!
//! A checkpoint kept away from the ledger (the operator's machine, a second
//! host, a witness) is what a rolled-back or cut ledger cannot match:
//! `verify --checkpoint` recomputes the root at the checkpoint's size.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use sha2::{Digest, Sha256};

use crate::merkle::{self, Hash};
use crate::signing::{self, OperatorKey};

/// The em dash and space that open a signature line.
const SIGNATURE_PREFIX: &str = "\u{2014} ";

/// Checkpoints larger than this are refused unread.
const MAX_CHECKPOINT_BYTES: usize = 64 * 1024;

/// A checkpoint that cannot be read or made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CheckpointError {
    /// Not the format.
    #[error("not a checkpoint: {0}")]
    Format(String),
    /// An empty ledger has nothing to commit to.
    #[error("the ledger has no records to checkpoint")]
    Empty,
    /// A signature line of a listed key that does not verify.
    #[error("the checkpoint's signature by `{0}` does not verify")]
    BadSignature(String),
}

/// One signature line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NoteSignature {
    /// The signer's name.
    pub name: String,
    /// The first four bytes of the key's hash.
    pub key_id: [u8; 4],
    /// The Ed25519 signature of the body.
    pub signature: Vec<u8>,
}

/// A checkpoint: which ledger, how many records, their tree's root, and
/// who signed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The ledger it is of (see [`origin_of`]).
    pub origin: String,
    /// The number of records it commits to.
    pub size: u64,
    /// The Merkle root of those records.
    pub root: Hash,
    /// The signature lines, in order.
    pub signatures: Vec<NoteSignature>,
}

/// The origin line of a ledger: named by its first record's chain hash, so
/// a checkpoint of one ledger never reads as another's.
pub fn origin_of(first_record_hash: &str) -> String {
    let short: String = first_record_hash.chars().take(32).collect();
    format!("capfence.ledger/{short}")
}

/// The key id of `name`'s Ed25519 `public` key bytes.
pub fn key_id(name: &str, public: &[u8; 32]) -> [u8; 4] {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([0x01]);
    h.update(public);
    let digest: [u8; 32] = h.finalize().into();
    let [a, b, c, d, ..] = digest;
    [a, b, c, d]
}

impl Checkpoint {
    /// A checkpoint of `size` records with `root`, signed by `key`.
    pub fn signed(origin: &str, size: u64, root: Hash, key: &OperatorKey) -> Checkpoint {
        let mut checkpoint = Checkpoint {
            origin: origin.to_owned(),
            size,
            root,
            signatures: Vec::new(),
        };
        checkpoint.cosign(key);
        checkpoint
    }

    /// The signed body: origin, size and root, each ending in a newline.
    pub fn body(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        )
    }

    /// Adds `key`'s signature (a witness's cosignature); a signer already
    /// on the note is replaced.
    pub fn cosign(&mut self, key: &OperatorKey) {
        let public = key_bytes(&key.public_key()).unwrap_or([0; 32]);
        let id = key_id(key.name(), &public);
        let signature = BASE64
            .decode(key.sign(self.body().as_bytes()))
            .unwrap_or_default();
        self.signatures
            .retain(|s| !(s.name == key.name() && s.key_id == id));
        self.signatures.push(NoteSignature {
            name: key.name().to_owned(),
            key_id: id,
            signature,
        });
    }

    /// The note as text.
    pub fn render(&self) -> String {
        let mut text = self.body();
        text.push('\n');
        for s in &self.signatures {
            let mut blob = s.key_id.to_vec();
            blob.extend_from_slice(&s.signature);
            text.push_str(&format!(
                "{SIGNATURE_PREFIX}{} {}\n",
                s.name,
                BASE64.encode(blob)
            ));
        }
        text
    }

    /// Reads a note. Strict: exactly the format, no extension lines, at
    /// least one signature line.
    pub fn parse(text: &str) -> Result<Checkpoint, CheckpointError> {
        let bad = |why: &str| CheckpointError::Format(why.to_owned());
        if text.len() > MAX_CHECKPOINT_BYTES {
            return Err(bad("longer than 64 KiB"));
        }
        let (body, signatures) = text
            .split_once("\n\n")
            .ok_or_else(|| bad("no empty line between the body and the signatures"))?;
        let lines: Vec<&str> = body.split('\n').collect();
        let [origin, size, root] = lines.as_slice() else {
            return Err(bad(
                "the body is not three lines (origin, size, root); extension lines are not read",
            ));
        };
        if origin.is_empty() || origin.chars().any(char::is_control) {
            return Err(bad("the origin line is empty or holds control characters"));
        }
        if size.is_empty() || !size.bytes().all(|b| b.is_ascii_digit()) || size.starts_with('0') {
            return Err(bad("the size line is not a positive decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| bad("the size is out of range"))?;
        let root: Hash = BASE64
            .decode(root)
            .ok()
            .and_then(|b| <Hash>::try_from(b.as_slice()).ok())
            .ok_or_else(|| bad("the root line is not 32 bytes in standard base64"))?;
        let Some(signatures) = signatures.strip_suffix('\n') else {
            return Err(bad("the last line does not end in a newline"));
        };
        let mut parsed = Vec::new();
        for line in signatures.split('\n') {
            let rest = line.strip_prefix(SIGNATURE_PREFIX).ok_or_else(|| {
                bad("a signature line does not start with an em dash and a space")
            })?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| bad("a signature line is not `— NAME SIGNATURE`"))?;
            if name.is_empty() || name.contains('+') || name.chars().any(char::is_whitespace) {
                return Err(bad("a signer's name is empty or holds `+` or a space"));
            }
            let blob = BASE64
                .decode(blob)
                .map_err(|_| bad("a signature is not standard base64"))?;
            if blob.len() != 4 + 64 {
                return Err(bad("a signature is not a key id and 64 signature bytes"));
            }
            let Some((id, signature)) = blob.split_first_chunk::<4>() else {
                return Err(bad("a signature is not a key id and 64 signature bytes"));
            };
            parsed.push(NoteSignature {
                name: name.to_owned(),
                key_id: *id,
                signature: signature.to_vec(),
            });
        }
        Ok(Checkpoint {
            origin: (*origin).to_owned(),
            size,
            root,
            signatures: parsed,
        })
    }

    /// The names among `keys` (name, `ed25519:…` public key) whose
    /// signature is on the note and verifies. A line naming a listed key
    /// whose signature does not verify is an error naming it: a forged
    /// line is not skipped as unknown. Lines of keys not listed are ignored,
    /// as the signed-note format asks.
    pub fn verified_by(&self, keys: &[(String, String)]) -> Result<Vec<String>, CheckpointError> {
        let body = self.body();
        let mut names = Vec::new();
        for s in &self.signatures {
            for (name, public) in keys {
                let Some(bytes) = key_bytes(public) else {
                    continue;
                };
                if *name != s.name || key_id(name, &bytes) != s.key_id {
                    continue;
                }
                if !signing::verify(public, body.as_bytes(), &BASE64.encode(&s.signature)) {
                    return Err(CheckpointError::BadSignature(name.clone()));
                }
                if !names.contains(name) {
                    names.push(name.clone());
                }
            }
        }
        Ok(names)
    }

    /// The root in lowercase hex.
    pub fn root_hex(&self) -> String {
        merkle::to_hex(&self.root)
    }
}

/// Why a ledger does not hold to a checkpoint.
#[derive(Debug, thiserror::Error)]
pub enum HoldFault {
    /// A signature of a listed key that does not verify.
    #[error(transparent)]
    Signature(#[from] CheckpointError),
    /// No signature by a key the policy lists.
    #[error("the checkpoint carries no signature by a key the policy lists")]
    NoListedSigner,
    /// The checkpoint is of another ledger.
    #[error(
        "the checkpoint (size {size}, root {root}) is of ledger {origin:?}, this ledger is {ours:?}"
    )]
    OtherLedger {
        /// The checkpoint's size.
        size: u64,
        /// The checkpoint's root, hex.
        root: String,
        /// The checkpoint's origin line.
        origin: String,
        /// This ledger's origin line (empty: no records).
        ours: String,
    },
    /// Fewer records than the checkpoint commits to.
    #[error(
        "the ledger holds {held} records, fewer than the checkpoint's size {size} (root {root}): \
         it was rolled back or cut"
    )]
    RolledBack {
        /// The records the ledger holds.
        held: u64,
        /// The checkpoint's size.
        size: u64,
        /// The checkpoint's root, hex.
        root: String,
    },
    /// The first `size` records hash to another root.
    #[error(
        "the ledger's first {size} records do not hash to the checkpoint's root {root}: its \
         history was rewritten (a fork)"
    )]
    Forked {
        /// The checkpoint's size.
        size: u64,
        /// The checkpoint's root, hex.
        root: String,
    },
    /// The consistency proof from the checkpoint's tree to the ledger's
    /// does not verify.
    #[error(
        "the ledger's tree of {held} records is not consistent with the checkpoint's (size \
         {size}, root {root})"
    )]
    Inconsistent {
        /// The records the ledger holds.
        held: u64,
        /// The checkpoint's size.
        size: u64,
        /// The checkpoint's root, hex.
        root: String,
    },
    /// The ledger could not be read.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Holds `ledger` to `checkpoint`: signed by one of `keys` (name, public
/// key: the policy's approvers and witnesses), of this ledger, and the
/// ledger still holds the checkpoint's records with its root at its size,
/// checked again by a consistency proof to the ledger's present tree. The
/// names that signed, or the fault.
pub fn hold(
    ledger: &crate::Ledger,
    checkpoint: &Checkpoint,
    keys: &[(String, String)],
) -> Result<Vec<String>, HoldFault> {
    let signers = checkpoint.verified_by(keys)?;
    if signers.is_empty() {
        return Err(HoldFault::NoListedSigner);
    }
    let (origin, leaves) = ledger.tree()?;
    let (size, root) = (checkpoint.size, checkpoint.root_hex());
    if origin.as_deref() != Some(checkpoint.origin.as_str()) {
        return Err(HoldFault::OtherLedger {
            size,
            root,
            origin: checkpoint.origin.clone(),
            ours: origin.unwrap_or_default(),
        });
    }
    let held = leaves.len() as u64;
    let Some(old) = usize::try_from(size).ok().and_then(|s| leaves.get(..s)) else {
        return Err(HoldFault::RolledBack { held, size, root });
    };
    if merkle::root(old) != checkpoint.root {
        return Err(HoldFault::Forked { size, root });
    }
    let new_root = merkle::root(&leaves);
    let proof = merkle::consistency_proof(old.len(), &leaves).unwrap_or_default();
    if !merkle::verify_consistency(size, held, &checkpoint.root, &new_root, &proof) {
        return Err(HoldFault::Inconsistent { held, size, root });
    }
    Ok(signers)
}

/// The newest checkpoint in `dir` (the largest `checkpoint-<size>`, as
/// [`Checkpoints`](crate::ledger::Checkpoints) names them): its path and
/// text. `None` when the directory holds none.
pub fn newest_in(dir: &std::path::Path) -> std::io::Result<Option<(std::path::PathBuf, String)>> {
    let mut best: Option<(u64, std::path::PathBuf)> = None;
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(size) = name
            .to_str()
            .and_then(|n| n.strip_prefix("checkpoint-"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        if best.as_ref().is_none_or(|(b, _)| size > *b) {
            best = Some((size, entry.path()));
        }
    }
    match best {
        Some((_, path)) => {
            let text = std::fs::read_to_string(&path)?;
            Ok(Some((path, text)))
        }
        None => Ok(None),
    }
}

fn key_bytes(public: &str) -> Option<[u8; 32]> {
    capfence_compiler::keys::public_key_bytes(public)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn note() -> (Checkpoint, OperatorKey) {
        let key = OperatorKey::from_seed("ops1", [1; 32]).unwrap();
        let root = crate::merkle::leaf_hash(&[5; 32]);
        (
            Checkpoint::signed("capfence.ledger/abc", 9, root, &key),
            key,
        )
    }

    #[test]
    fn a_note_round_trips_and_verifies_only_with_its_key() {
        let (cp, key) = note();
        let text = cp.render();
        let parsed = Checkpoint::parse(&text).unwrap();
        assert_eq!(parsed, cp);
        let listed = vec![("ops1".to_owned(), key.public_key())];
        assert_eq!(parsed.verified_by(&listed).unwrap(), ["ops1"]);
        let other = OperatorKey::from_seed("ops1", [2; 32]).unwrap();
        // Another key under the same name: its key id differs, so the line
        // is not taken as that key's.
        assert!(
            parsed
                .verified_by(&[("ops1".to_owned(), other.public_key())])
                .unwrap()
                .is_empty()
        );
        let mut forged = parsed.clone();
        forged.size = 10;
        assert_eq!(
            forged.verified_by(&listed),
            Err(CheckpointError::BadSignature("ops1".to_owned()))
        );
    }

    #[test]
    fn every_cut_or_edit_of_a_note_is_an_error_not_a_panic() {
        let (cp, key) = note();
        let text = cp.render();
        let listed = vec![("ops1".to_owned(), key.public_key())];
        for (at, _) in text.char_indices() {
            // Every proper prefix is refused.
            assert!(Checkpoint::parse(&text[..at]).is_err(), "prefix {at}");
            // Every one-character edit either fails to parse or fails to
            // verify (or is the same note).
            let mut edited = text.clone();
            let c = edited[at..].chars().next().unwrap();
            let swap = if c == 'A' { 'B' } else { 'A' };
            edited.replace_range(at..at + c.len_utf8(), &swap.to_string());
            if let Ok(parsed) = Checkpoint::parse(&edited) {
                let ok = parsed.verified_by(&listed).map(|v| !v.is_empty());
                assert!(
                    parsed == cp || ok != Ok(true),
                    "an edit at {at} still verifies: {edited:?}"
                );
            }
        }
        assert!(Checkpoint::parse(&"x".repeat(70_000)).is_err());
    }
}
