//! The audit chain: records, their canonical encoding, hashing and verification.
//!
//! `hash = SHA-256(prev_hash ‖ canonical(record))`, where `prev_hash` is the
//! previous record's hash as 64 lowercase hex characters (64 zeros for the
//! first record) and `canonical` is specified in docs/audit-format.md. The
//! encoding never depends on map order or float formatting: payloads are
//! canonical JSON with sorted keys and exact decimals.

use sha2::{Digest, Sha256};

/// The previous hash of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The first line of every canonical encoding; names the format version.
pub const FORMAT: &str = "capfence-audit-v1";

/// One record of the chain: a decision, or an operator action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    /// 1, 2, 3, … without gaps.
    pub seq: u64,
    /// UTC time, RFC 3339 with microseconds.
    pub time: String,
    /// Who acted: the agent, or the operator for operator actions.
    pub actor: Option<String>,
    /// The capability decided (`payments.transfer`), or the operator action
    /// (`capfence.approvals.approve`).
    pub capability: Option<String>,
    /// The event's environment.
    pub environment: Option<String>,
    /// The event's risk.
    pub risk: Option<String>,
    /// The canonical JSON payload (`{}` when empty).
    pub payload: String,
    /// `allow`, `require_approval`, `deny`; or `approve`, `reject`, `grant`, `revoke`.
    pub decision: String,
    /// The deciding rule.
    pub rule: Option<String>,
    /// Why.
    pub reason: String,
    /// The ticket or grant involved.
    pub approval_id: Option<String>,
    /// The digest of the policy that decided (none for operator actions).
    pub policy_digest: Option<String>,
    /// The previous record's hash.
    pub prev_hash: String,
    /// This record's hash.
    pub hash: String,
}

impl AuditRecord {
    /// The canonical encoding of every field but the two hashes.
    ///
    /// One line per field, in a fixed order, `name=value`; a string value is
    /// written as its byte length, `:`, and its bytes (so no value can fake a
    /// field boundary); an absent value is `~`.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.payload.len() + self.reason.len());
        out.extend_from_slice(FORMAT.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(format!("seq={}\n", self.seq).as_bytes());
        let mut field = |name: &str, value: Option<&str>| {
            out.extend_from_slice(name.as_bytes());
            out.push(b'=');
            match value {
                None => out.push(b'~'),
                Some(v) => {
                    out.extend_from_slice(v.len().to_string().as_bytes());
                    out.push(b':');
                    out.extend_from_slice(v.as_bytes());
                }
            }
            out.push(b'\n');
        };
        field("time", Some(&self.time));
        field("actor", self.actor.as_deref());
        field("capability", self.capability.as_deref());
        field("environment", self.environment.as_deref());
        field("risk", self.risk.as_deref());
        field("payload", Some(&self.payload));
        field("decision", Some(&self.decision));
        field("rule", self.rule.as_deref());
        field("reason", Some(&self.reason));
        field("approval_id", self.approval_id.as_deref());
        field("policy_digest", self.policy_digest.as_deref());
        out
    }

    /// `SHA-256(prev_hash ‖ canonical)`, lowercase hex.
    pub fn compute_hash(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(self.prev_hash.as_bytes());
        hasher.update(self.canonical());
        hex(&hasher.finalize())
    }

    /// Sets `prev_hash`, then `hash`.
    pub fn seal(&mut self, prev_hash: &str) {
        self.prev_hash = prev_hash.to_owned();
        self.hash = self.compute_hash();
    }

    /// The record as one JSON object (for `capfence audit log --json`).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "seq": self.seq,
            "time": self.time,
            "actor": self.actor,
            "capability": self.capability,
            "environment": self.environment,
            "risk": self.risk,
            "payload": self.payload,
            "decision": self.decision,
            "rule": self.rule,
            "reason": self.reason,
            "approval_id": self.approval_id,
            "policy_digest": self.policy_digest,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        })
    }
}

/// Lowercase hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(
            DIGITS.get(usize::from(b >> 4)).copied().unwrap_or(b'0'),
        ));
        out.push(char::from(
            DIGITS.get(usize::from(b & 15)).copied().unwrap_or(b'0'),
        ));
    }
    out
}

/// What is wrong with a chain, at its first bad record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainFault {
    /// A sequence number is missing: records were deleted.
    #[error(
        "record {found}: expected seq {expected}; record(s) {expected}..{found} are missing (deleted)"
    )]
    Gap {
        /// The seq that should have come.
        expected: u64,
        /// The seq that came.
        found: u64,
    },
    /// A sequence number repeats or goes back: records were inserted or reordered.
    #[error(
        "record {found}: expected seq {expected}; the chain was reordered or a record inserted"
    )]
    OutOfOrder {
        /// The seq that should have come.
        expected: u64,
        /// The seq that came.
        found: u64,
    },
    /// `prev_hash` does not name the previous record.
    #[error(
        "record {seq}: prev_hash does not match the hash of record {previous} (a record before it was inserted, deleted, edited or reordered)"
    )]
    BrokenLink {
        /// The record.
        seq: u64,
        /// The one before it.
        previous: u64,
    },
    /// The record's content does not produce its hash.
    #[error("record {seq}: its content does not match its hash (edited)")]
    Edited {
        /// The record.
        seq: u64,
    },
    /// The expected head is not in the chain.
    #[error(
        "the chain ends at record {last} with hash {hash}, and the expected head {expected} is not in it (truncated or replaced)"
    )]
    HeadMissing {
        /// The last record's seq (0 for an empty chain).
        last: u64,
        /// The last record's hash.
        hash: String,
        /// The head that was expected.
        expected: String,
    },
}

/// Checks a chain record by record; feed records in seq order.
#[derive(Debug, Clone)]
pub struct Verifier {
    last_seq: u64,
    last_hash: String,
    expected_head: Option<String>,
    head_seen: bool,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            last_seq: 0,
            last_hash: GENESIS.to_owned(),
            expected_head: None,
            head_seen: false,
        }
    }
}

impl Verifier {
    /// A verifier that also requires `head` (a hash printed by `capfence audit
    /// head` earlier) to be in the chain: a chain cut back before it fails.
    pub fn with_head(head: &str) -> Verifier {
        Verifier {
            expected_head: Some(head.trim().to_ascii_lowercase()),
            head_seen: head.trim() == GENESIS,
            ..Verifier::default()
        }
    }

    /// Checks the next record.
    pub fn check(&mut self, record: &AuditRecord) -> Result<(), ChainFault> {
        let expected = self.last_seq + 1;
        if record.seq > expected {
            return Err(ChainFault::Gap {
                expected,
                found: record.seq,
            });
        }
        if record.seq < expected {
            return Err(ChainFault::OutOfOrder {
                expected,
                found: record.seq,
            });
        }
        if record.prev_hash != self.last_hash {
            return Err(ChainFault::BrokenLink {
                seq: record.seq,
                previous: self.last_seq,
            });
        }
        if record.compute_hash() != record.hash {
            return Err(ChainFault::Edited { seq: record.seq });
        }
        self.last_seq = record.seq;
        self.last_hash.clone_from(&record.hash);
        if self.expected_head.as_deref() == Some(record.hash.as_str()) {
            self.head_seen = true;
        }
        Ok(())
    }

    /// Ends the check: the last (seq, hash), or the head fault.
    pub fn finish(self) -> Result<(u64, String), ChainFault> {
        match self.expected_head {
            Some(expected) if !self.head_seen => Err(ChainFault::HeadMissing {
                last: self.last_seq,
                hash: self.last_hash,
                expected,
            }),
            _ => Ok((self.last_seq, self.last_hash)),
        }
    }
}
