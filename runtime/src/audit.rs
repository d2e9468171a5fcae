//! The audit chain: records, their canonical encoding, hashing and verification.
//!
//! `hash = SHA-256(prev_hash ‖ canonical(record))`, where `prev_hash` is the
//! previous record's hash as 64 lowercase hex characters (64 zeros for the
//! first record) and `canonical` is specified in docs/audit-format.md. The
//! encoding never depends on map order or float formatting: payloads are
//! canonical JSON with sorted keys and exact decimals.

use std::fmt;

use capfence_compiler::DecisionKind;
use sha2::{Digest, Sha256};

/// The previous hash of the first record.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The first line of every canonical encoding; names the format version.
pub const FORMAT: &str = "capfence-audit-v1";

/// What a record records: a decision, or an operator action. Its text is the
/// record's `decision` field (docs/audit-format.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// A decision on an event: `allow`, `require_approval` or `deny`.
    Decision(DecisionKind),
    /// An operator approved a ticket: `approve`.
    Approve,
    /// An operator rejected a ticket: `reject`.
    Reject,
    /// An operator granted a standing capability: `grant`.
    Grant,
    /// An operator revoked a grant: `revoke`.
    Revoke,
    /// A policy became the active one: `activate` (its digest and text in
    /// the payload).
    Activate,
    /// A policy change was proposed: `propose`.
    Propose,
    /// An approver signed a proposed policy change: `sign`.
    Sign,
    /// What became of an authorized call: `outcome` (executed, with the
    /// rail's reference and the amount sent, or failed, with the error).
    Outcome,
}

impl RecordKind {
    /// `allow`.
    pub const ALLOW: RecordKind = RecordKind::Decision(DecisionKind::Allow);
    /// `require_approval`.
    pub const REQUIRE_APPROVAL: RecordKind = RecordKind::Decision(DecisionKind::RequireApproval);
    /// `deny`.
    pub const DENY: RecordKind = RecordKind::Decision(DecisionKind::Deny);

    /// The record's `decision` text.
    pub const fn as_str(self) -> &'static str {
        match self {
            RecordKind::Decision(kind) => kind.as_str(),
            RecordKind::Approve => "approve",
            RecordKind::Reject => "reject",
            RecordKind::Grant => "grant",
            RecordKind::Revoke => "revoke",
            RecordKind::Activate => "activate",
            RecordKind::Propose => "propose",
            RecordKind::Sign => "sign",
            RecordKind::Outcome => "outcome",
        }
    }

    /// Parses a record's `decision` text; `None` for anything CapFence does
    /// not write.
    pub fn parse(text: &str) -> Option<RecordKind> {
        Some(match text {
            "approve" => RecordKind::Approve,
            "reject" => RecordKind::Reject,
            "grant" => RecordKind::Grant,
            "revoke" => RecordKind::Revoke,
            "activate" => RecordKind::Activate,
            "propose" => RecordKind::Propose,
            "sign" => RecordKind::Sign,
            "outcome" => RecordKind::Outcome,
            other => RecordKind::Decision(DecisionKind::parse(other)?),
        })
    }
}

impl fmt::Display for RecordKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    pub decision: RecordKind,
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

/// A record with borrowed fields, as bytes: what hashing and verifying read,
/// without copying a row out of storage or re-validating its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// See [`AuditRecord::seq`].
    pub seq: u64,
    /// See [`AuditRecord::time`].
    pub time: &'a [u8],
    /// See [`AuditRecord::actor`].
    pub actor: Option<&'a [u8]>,
    /// See [`AuditRecord::capability`].
    pub capability: Option<&'a [u8]>,
    /// See [`AuditRecord::environment`].
    pub environment: Option<&'a [u8]>,
    /// See [`AuditRecord::risk`].
    pub risk: Option<&'a [u8]>,
    /// See [`AuditRecord::payload`].
    pub payload: &'a [u8],
    /// See [`AuditRecord::decision`].
    pub decision: &'a [u8],
    /// See [`AuditRecord::rule`].
    pub rule: Option<&'a [u8]>,
    /// See [`AuditRecord::reason`].
    pub reason: &'a [u8],
    /// See [`AuditRecord::approval_id`].
    pub approval_id: Option<&'a [u8]>,
    /// See [`AuditRecord::policy_digest`].
    pub policy_digest: Option<&'a [u8]>,
    /// See [`AuditRecord::prev_hash`].
    pub prev_hash: &'a [u8],
    /// See [`AuditRecord::hash`].
    pub hash: &'a [u8],
}

fn push_decimal(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        if let Some(d) = digits.get_mut(at) {
            *d = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || at == 0 {
            break;
        }
    }
    out.extend_from_slice(digits.get(at..).unwrap_or_default());
}

fn push_field(out: &mut Vec<u8>, name: &str, value: Option<&[u8]>) {
    out.extend_from_slice(name.as_bytes());
    out.push(b'=');
    match value {
        None => out.push(b'~'),
        Some(v) => {
            push_decimal(out, v.len() as u64);
            out.push(b':');
            out.extend_from_slice(v);
        }
    }
    out.push(b'\n');
}

impl RecordView<'_> {
    /// Appends the canonical encoding (docs/audit-format.md) to `out`.
    pub fn write_canonical(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(FORMAT.as_bytes());
        out.extend_from_slice(b"\nseq=");
        push_decimal(out, self.seq);
        out.push(b'\n');
        push_field(out, "time", Some(self.time));
        push_field(out, "actor", self.actor);
        push_field(out, "capability", self.capability);
        push_field(out, "environment", self.environment);
        push_field(out, "risk", self.risk);
        push_field(out, "payload", Some(self.payload));
        push_field(out, "decision", Some(self.decision));
        push_field(out, "rule", self.rule);
        push_field(out, "reason", Some(self.reason));
        push_field(out, "approval_id", self.approval_id);
        push_field(out, "policy_digest", self.policy_digest);
    }

    /// `SHA-256(prev_hash ‖ canonical)` as lowercase hex bytes; `scratch` is
    /// reused between calls.
    pub fn hash_hex(&self, scratch: &mut Vec<u8>) -> [u8; 64] {
        scratch.clear();
        scratch.extend_from_slice(self.prev_hash);
        self.write_canonical(scratch);
        let digest = Sha256::digest(scratch.as_slice());
        let mut out = [b'0'; 64];
        // 32 bytes always fill 64 hex digits; the error case cannot occur.
        let _ = hex::encode_to_slice(digest, &mut out);
        out
    }
}

impl AuditRecord {
    /// The record's fields, borrowed.
    pub fn view(&self) -> RecordView<'_> {
        fn opt(v: &Option<String>) -> Option<&[u8]> {
            v.as_deref().map(str::as_bytes)
        }
        RecordView {
            seq: self.seq,
            time: self.time.as_bytes(),
            actor: opt(&self.actor),
            capability: opt(&self.capability),
            environment: opt(&self.environment),
            risk: opt(&self.risk),
            payload: self.payload.as_bytes(),
            decision: self.decision.as_str().as_bytes(),
            rule: opt(&self.rule),
            reason: self.reason.as_bytes(),
            approval_id: opt(&self.approval_id),
            policy_digest: opt(&self.policy_digest),
            prev_hash: self.prev_hash.as_bytes(),
            hash: self.hash.as_bytes(),
        }
    }

    /// The canonical encoding of every field but the two hashes.
    ///
    /// One line per field, in a fixed order, `name=value`; a string value is
    /// written as its byte length, `:`, and its bytes (so no value can fake a
    /// field boundary); an absent value is `~`.
    pub fn canonical(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(256 + self.payload.len() + self.reason.len());
        self.view().write_canonical(&mut out);
        out
    }

    /// `SHA-256(prev_hash ‖ canonical)`, lowercase hex.
    pub fn compute_hash(&self) -> String {
        let hex = self.view().hash_hex(&mut Vec::with_capacity(512));
        String::from_utf8_lossy(&hex).into_owned()
    }

    /// Sets `prev_hash`, then `hash`. Crate-private: only the ledger seals
    /// the records it appends.
    pub(crate) fn seal(&mut self, prev_hash: &str) {
        self.prev_hash = prev_hash.to_owned();
        self.hash = self.compute_hash();
    }

    /// The record as one JSON object, as `capfence audit log --json` writes
    /// it (docs/audit-format.md, "JSON lines"): every chained field, plus
    /// `kind`, `ticket` and `grant`, with the payload as JSON (numbers
    /// exactly as recorded).
    pub fn to_json(&self) -> serde_json::Value {
        self.to_json_redacted(&[])
    }

    /// [`to_json`](Self::to_json) with each top-level payload field named in
    /// `redact` replaced by `"sha256:<hex>"`: of a string's UTF-8 bytes, of
    /// any other value's JSON text. `redacted` lists the fields replaced.
    pub fn to_json_redacted(&self, redact: &[String]) -> serde_json::Value {
        use serde_json::Value;
        use sha2::Digest as _;
        let mut redacted = Vec::new();
        let payload = match serde_json::from_str::<Value>(&self.payload) {
            Ok(Value::Object(mut fields)) => {
                for name in redact {
                    if let Some(value) = fields.get_mut(name.as_str()) {
                        let text = match &*value {
                            Value::String(s) => s.clone(),
                            other => other.to_string(),
                        };
                        *value = Value::String(format!(
                            "sha256:{}",
                            hex::encode(sha2::Sha256::digest(text.as_bytes()))
                        ));
                        redacted.push(name.clone());
                    }
                }
                Value::Object(fields)
            }
            Ok(other) => other,
            Err(_) => Value::String(self.payload.clone()),
        };
        let (kind, decision) = match self.decision {
            RecordKind::Decision(d) => ("decision", Some(d.as_str())),
            other => (other.as_str(), None),
        };
        let id = |prefix: &str| {
            self.approval_id
                .as_deref()
                .filter(|id| id.starts_with(prefix))
        };
        serde_json::json!({
            "seq": self.seq,
            "time": self.time,
            "kind": kind,
            "decision": decision.unwrap_or(self.decision.as_str()),
            "actor": self.actor,
            "capability": self.capability,
            "environment": self.environment,
            "risk": self.risk,
            "rule": self.rule,
            "reason": self.reason,
            "approval_id": self.approval_id,
            "ticket": id("T-"),
            "grant": id("G-"),
            "payload": payload,
            "redacted": redacted,
            "policy_digest": self.policy_digest,
            "prev_hash": self.prev_hash,
            "hash": self.hash,
        })
    }
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
    last_hash: Vec<u8>,
    expected_head: Option<Vec<u8>>,
    head_seen: bool,
    scratch: Vec<u8>,
}

impl Default for Verifier {
    fn default() -> Self {
        Verifier {
            last_seq: 0,
            last_hash: GENESIS.as_bytes().to_vec(),
            expected_head: None,
            head_seen: false,
            scratch: Vec::with_capacity(1024),
        }
    }
}

impl Verifier {
    /// A verifier that also requires `head` (a hash printed by `capfence audit
    /// head` earlier) to be in the chain: a chain cut back before it fails.
    pub fn with_head(head: &str) -> Verifier {
        Verifier {
            expected_head: Some(head.trim().to_ascii_lowercase().into_bytes()),
            head_seen: head.trim() == GENESIS,
            ..Verifier::default()
        }
    }

    /// Checks the next record.
    pub fn check(&mut self, record: &AuditRecord) -> Result<(), ChainFault> {
        self.check_view(&record.view())
    }

    /// Checks the next record, borrowed.
    pub fn check_view(&mut self, record: &RecordView<'_>) -> Result<(), ChainFault> {
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
        if record.prev_hash != self.last_hash.as_slice() {
            return Err(ChainFault::BrokenLink {
                seq: record.seq,
                previous: self.last_seq,
            });
        }
        if record.hash_hex(&mut self.scratch).as_slice() != record.hash {
            return Err(ChainFault::Edited { seq: record.seq });
        }
        self.last_seq = record.seq;
        self.last_hash.clear();
        self.last_hash.extend_from_slice(record.hash);
        if self.expected_head.as_deref() == Some(record.hash) {
            self.head_seen = true;
        }
        Ok(())
    }

    /// Ends the check: the last (seq, hash), or the head fault.
    pub fn finish(self) -> Result<(u64, String), ChainFault> {
        let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        match &self.expected_head {
            Some(expected) if !self.head_seen => Err(ChainFault::HeadMissing {
                last: self.last_seq,
                hash: text(&self.last_hash),
                expected: text(expected),
            }),
            _ => Ok((self.last_seq, text(&self.last_hash))),
        }
    }
}
