//! Which policy the ledger holds active: an `activate` chain record holds
//! each activated policy's digest and full text; a note beside the chain
//! (`policy.active`: `SEQ DIGEST`) names the latest one so every decision's
//! transaction can compare its runtime's policy with it in one read.
//! `verify` holds the note to the chain.
//!
//! A fresh ledger activates the first policy it is opened with (trust on
//! first use, recorded as such); after that only an operator action
//! activates another.

use std::collections::BTreeMap;

use capfence_compiler::Policy;
use capfence_compiler::event::{Value, write_object};

use super::operator::{Invalid, OperatorError, operator_name};
use super::{Ledger, append};
use crate::audit::{AuditRecord, RecordKind};
use crate::clock::rfc3339;
use crate::store::{StoreError, Tx};

/// The note naming the active policy.
pub(crate) const ACTIVE_NOTE: &str = "policy.active";

/// Who activates the first policy of a fresh ledger.
pub const FIRST_USE: &str = "capfence:first-use";

/// The policy a ledger holds active: the activation record's seq and the
/// policy's digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivePolicy {
    /// The `activate` record.
    pub seq: u64,
    /// The policy's SHA-256, lowercase hex.
    pub digest: String,
}

impl ActivePolicy {
    fn note(&self) -> String {
        format!("{} {}", self.seq, self.digest)
    }

    /// Reads the note; `None` for anything else.
    pub(crate) fn parse(note: &str) -> Option<ActivePolicy> {
        let (seq, digest) = note.split_once(' ')?;
        let digest_ok = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
        Some(ActivePolicy {
            seq: seq.parse().ok()?,
            digest: digest_ok.then(|| digest.to_owned())?,
        })
    }
}

/// One activation, as the chain records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Activation {
    /// The record.
    pub seq: u64,
    /// When (RFC 3339 UTC).
    pub time: String,
    /// Who activated it ([`FIRST_USE`] for a fresh ledger's first policy).
    pub by: String,
    /// The policy's digest.
    pub digest: String,
    /// The policy's text.
    pub text: String,
    /// Why, in words.
    pub reason: String,
}

impl Activation {
    fn from_record(record: &AuditRecord) -> Option<Activation> {
        if record.decision != RecordKind::Activate {
            return None;
        }
        let payload: serde_json::Value = serde_json::from_str(&record.payload).ok()?;
        Some(Activation {
            seq: record.seq,
            time: record.time.clone(),
            by: record.actor.clone().unwrap_or_default(),
            digest: payload.get("digest")?.as_str()?.to_owned(),
            text: payload.get("text")?.as_str()?.to_owned(),
            reason: record.reason.clone(),
        })
    }
}

/// The `activate` record of `digest`'s `text`, by `by`, citing the
/// proposal it carries out (if any).
fn activation_record(
    digest: &str,
    text: &str,
    by: &str,
    reason: String,
    proposal: Option<&str>,
) -> AuditRecord {
    let mut payload = BTreeMap::new();
    payload.insert("digest".to_owned(), Value::String(digest.to_owned()));
    payload.insert("text".to_owned(), Value::String(text.to_owned()));
    let mut canonical = String::new();
    write_object(&payload, &mut canonical);
    AuditRecord {
        seq: 0,
        time: String::new(),
        actor: Some(by.to_owned()),
        capability: Some("capfence.policy.activate".to_owned()),
        environment: None,
        risk: None,
        payload: canonical,
        decision: RecordKind::Activate,
        rule: None,
        reason,
        approval_id: proposal.map(str::to_owned),
        policy_digest: Some(digest.to_owned()),
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// Reads the active policy inside a transaction; `None` while none is.
/// The note is held to the chain on every read: it must name an
/// `activate` record of the policy it names (one read by seq), or the read
/// fails (and every decision of the transaction is denied).
pub(crate) fn active_in(tx: &mut dyn Tx) -> Result<Option<ActivePolicy>, StoreError> {
    let Some(active) = raw_active_in(tx)? else {
        return Ok(None);
    };
    match tx.record_at(active.seq)? {
        Some(r)
            if r.decision == RecordKind::Activate
                && r.policy_digest.as_deref() == Some(active.digest.as_str()) =>
        {
            Ok(Some(active))
        }
        _ => Err(StoreError::Invalid(
            format!(
                "the active-policy note names record {}, which is not the activation of policy {}",
                active.seq, active.digest
            )
            .into(),
        )),
    }
}

/// The note as it stands, unchecked (for `verify`, which names what is
/// wrong with it).
pub(crate) fn raw_active_in(tx: &mut dyn Tx) -> Result<Option<ActivePolicy>, StoreError> {
    match tx.note(ACTIVE_NOTE)? {
        None => Ok(None),
        Some(note) => ActivePolicy::parse(&note).map(Some).ok_or_else(|| {
            StoreError::Invalid(
                format!("the active-policy note {note:?} is not `SEQ DIGEST`").into(),
            )
        }),
    }
}

/// The text of the policy the `activate` record at `seq` activated, read
/// from the chain (never from a note).
pub(crate) fn text_of(tx: &mut dyn Tx, seq: u64) -> Result<Option<String>, StoreError> {
    Ok(tx
        .record_at(seq)?
        .as_ref()
        .and_then(Activation::from_record)
        .map(|a| a.text))
}

/// Appends the activation and moves the note to it.
pub(crate) fn activate_in(
    tx: &mut dyn Tx,
    now: i64,
    digest: &str,
    text: &str,
    by: &str,
    reason: String,
    proposal: Option<&str>,
) -> Result<ActivePolicy, StoreError> {
    let mut record = activation_record(digest, text, by, reason, proposal);
    record.time = rfc3339(now);
    append(tx, record)?;
    let (seq, _) = tx.head()?;
    let active = ActivePolicy {
        seq,
        digest: digest.to_owned(),
    };
    tx.set_note(ACTIVE_NOTE, &active.note())?;
    Ok(active)
}

/// Activates `digest`'s `text` on first use, inside a transaction that
/// found no active policy.
pub(crate) fn activate_first_in(
    tx: &mut dyn Tx,
    now: i64,
    digest: &str,
    text: &str,
) -> Result<ActivePolicy, StoreError> {
    activate_in(
        tx,
        now,
        digest,
        text,
        FIRST_USE,
        "the first policy this ledger was opened with (trust on first use)".to_owned(),
        None,
    )
}

impl Ledger {
    /// The policy the ledger holds active, if any.
    pub fn active_policy(&self) -> Result<Option<ActivePolicy>, StoreError> {
        let mut found = None;
        self.inner.store.transaction(&mut |tx| {
            found = active_in(tx)?;
            Ok(())
        })?;
        Ok(found)
    }

    /// Activates `digest`'s policy (`text`) if the ledger has none active
    /// yet (a fresh ledger, or one written before policies were recorded),
    /// recorded as activated on first use; else leaves the ledger as it is.
    /// Returns the active policy either way.
    pub fn activate_first(&self, digest: &str, text: &str) -> Result<ActivePolicy, StoreError> {
        let mut active = None;
        self.inner.store.transaction(&mut |tx| {
            active = Some(match active_in(tx)? {
                Some(found) => found,
                None => {
                    let now = tx.ledger_time(self.inner.clock.now_micros())?;
                    activate_first_in(tx, now, digest, text)?
                }
            });
            Ok(())
        })?;
        active.ok_or_else(|| StoreError::Invalid("no active policy after activation".into()))
    }

    /// Every activation in chain order, the first first.
    pub fn policy_history(&self) -> Result<Vec<Activation>, StoreError> {
        let mut found = Vec::new();
        self.inner.store.scan(&mut |record| {
            if let Some(a) = Activation::from_record(&record) {
                found.push(a);
            }
            true
        })?;
        Ok(found)
    }

    /// Activates `policy` by an operator's name: only where the active
    /// policy lists no approvers (an unauthenticated ledger; under one that
    /// lists approvers a change must be proposed and signed). Refused when
    /// the policy is already active.
    pub fn activate_unsigned(
        &self,
        policy: &Policy,
        by: &str,
    ) -> Result<Activation, OperatorError> {
        operator_name(by)?;
        let mut done = None;
        let mut refused = None;
        self.inner.store.transaction(&mut |tx| {
            let active = active_in(tx)?;
            let current = match &active {
                Some(a) => text_of(tx, a.seq)?,
                None => None,
            };
            if let Some(a) = &active {
                if a.digest == policy.digest {
                    refused = Some(Invalid::AlreadyActive(policy.digest.clone()));
                    return Ok(());
                }
                let signed = current
                    .and_then(|text| Policy::parse(&text, "the active policy").ok())
                    .is_none_or(|p| !p.approvers.is_empty());
                if signed {
                    refused = Some(Invalid::PolicyChangeNeedsSignatures(a.digest.clone()));
                    return Ok(());
                }
            }
            let now = tx.ledger_time(self.inner.clock.now_micros())?;
            let reason = match &active {
                Some(a) => format!(
                    "activated by {by} in place of {} (the active policy lists no approvers: \
                     unauthenticated)",
                    a.digest
                ),
                None => format!("activated by {by}"),
            };
            let made = activate_in(
                tx,
                now,
                &policy.digest,
                &policy.source,
                by,
                reason.clone(),
                None,
            )?;
            done = Some(Activation {
                seq: made.seq,
                time: rfc3339(now),
                by: by.to_owned(),
                digest: made.digest,
                text: policy.source.clone(),
                reason,
            });
            Ok(())
        })?;
        match (done, refused) {
            (Some(a), _) => Ok(a),
            (None, Some(e)) => Err(e.into()),
            (None, None) => Err(Invalid::NothingDone.into()),
        }
    }
}
