//! Signed policy changes: a change away from the active policy is proposed
//! (`propose`, the new text and the digest it changes), signed by approvers
//! the **active** policy names for policy changes (`sign`, one record per
//! signature), and activated once enough have signed and its delay has
//! passed (`activate`, citing the proposal). A change that only tightens
//! (see [`capfence_compiler::analysis::loosenings`]) needs one signature and
//! no delay. Every step cites the proposal's id (`P-1`) and is replayed by
//! `verify`.

use std::collections::BTreeMap;

use capfence_compiler::Policy;
use capfence_compiler::analysis::{DiffReport, loosenings};
use capfence_compiler::event::{Value, write_object};

use super::operator::{Approval, Invalid, OperatorError, Refusal};
use super::policy::{activate_in, active_in, text_of};
use super::{Activation, Ledger, append};
use crate::audit::{AuditRecord, RecordKind};
use crate::clock::rfc3339;
use crate::signing::{self, OperatorKey};
use crate::store::{StoreError, Tx};

/// A proposal's label: `P-<n>`.
pub fn proposal_label(id: u64) -> String {
    format!("P-{id}")
}

fn parse_label(text: &str) -> Option<u64> {
    let n = text
        .strip_prefix("P-")
        .or_else(|| text.strip_prefix("p-"))?;
    n.parse().ok().filter(|n| *n > 0)
}

/// A proposed policy change, as its chain records say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proposal {
    /// Its number (`P-<id>`).
    pub id: u64,
    /// The `propose` record.
    pub seq: u64,
    /// When it was proposed (µs since the epoch).
    pub proposed_at: i64,
    /// Who proposed it.
    pub by: String,
    /// The proposed policy's digest.
    pub digest: String,
    /// The proposed policy's text.
    pub text: String,
    /// The digest of the policy it changes (active when proposed).
    pub base: String,
    /// How it loosens the base policy (empty: it only tightens).
    pub loosens: Vec<String>,
    /// Who has signed it, in order.
    pub signers: Vec<String>,
    /// The `activate` record, once activated.
    pub activated: Option<u64>,
}

/// The statement a signer of a policy change signs.
pub fn statement(label: &str, digest: &str, base: &str, signer: &str) -> Vec<u8> {
    signing::statement(
        "policy-change",
        &[
            ("proposal", label),
            ("digest", digest),
            ("active", base),
            ("signer", signer),
        ],
    )
}

fn canonical(fields: &[(&str, Value)]) -> String {
    let map: BTreeMap<String, Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    let mut out = String::new();
    write_object(&map, &mut out);
    out
}

fn record(
    kind: RecordKind,
    verb: &str,
    by: &str,
    payload: String,
    reason: String,
    label: &str,
    digest: &str,
) -> AuditRecord {
    AuditRecord {
        seq: 0,
        time: String::new(),
        actor: Some(by.to_owned()),
        capability: Some(format!("capfence.policy.{verb}")),
        environment: None,
        risk: None,
        payload,
        decision: kind,
        rule: None,
        reason,
        approval_id: Some(label.to_owned()),
        policy_digest: Some(digest.to_owned()),
        prev_hash: String::new(),
        hash: String::new(),
    }
}

/// Reads a proposal from the records citing it (first the `propose`).
/// Signatures are taken as recorded; [`check_signatures`] checks them.
pub(crate) fn from_records(id: u64, records: &[AuditRecord]) -> Option<Proposal> {
    let (first, rest) = records.split_first()?;
    if first.decision != RecordKind::Propose {
        return None;
    }
    let payload: serde_json::Value = serde_json::from_str(&first.payload).ok()?;
    let text = |k: &str| payload.get(k)?.as_str().map(str::to_owned);
    let mut proposal = Proposal {
        id,
        seq: first.seq,
        proposed_at: capfence_compiler::time::parse_time(&first.time)?,
        by: first.actor.clone().unwrap_or_default(),
        digest: text("digest")?,
        text: text("text")?,
        base: text("base")?,
        loosens: payload
            .get("loosens")?
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        signers: Vec::new(),
        activated: None,
    };
    for r in rest {
        match r.decision {
            RecordKind::Sign => proposal.signers.push(r.actor.clone().unwrap_or_default()),
            RecordKind::Activate => proposal.activated = Some(r.seq),
            _ => {}
        }
    }
    Some(proposal)
}

/// The distinct signers among `records`' `sign` records whose signature
/// verifies under `base` (the policy the proposal changes) and who may sign
/// its changes. An invalid signature is an error naming its record.
pub(crate) fn check_signatures(
    proposal: &Proposal,
    base: &Policy,
    records: &[AuditRecord],
) -> Result<Vec<String>, String> {
    let label = proposal_label(proposal.id);
    let mut valid: Vec<String> = Vec::new();
    for r in records.iter().filter(|r| r.decision == RecordKind::Sign) {
        let signer = r.actor.clone().unwrap_or_default();
        let payload: serde_json::Value = serde_json::from_str(&r.payload)
            .map_err(|_| format!("record {}: its payload is not JSON", r.seq))?;
        let signature = payload
            .get("signature")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default();
        let key = base
            .approvers
            .iter()
            .find(|a| a.name == signer)
            .filter(|_| base.changes.may_sign(base, &signer))
            .ok_or_else(|| {
                format!(
                    "record {}: `{signer}` may not sign changes of policy {}",
                    r.seq, proposal.base
                )
            })?;
        let message = statement(&label, &proposal.digest, &proposal.base, &signer);
        if !signing::verify(&key.key, &message, signature) {
            return Err(format!(
                "record {}: `{signer}`'s signature of {label} does not verify",
                r.seq
            ));
        }
        if !valid.contains(&signer) {
            valid.push(signer);
        }
    }
    Ok(valid)
}

/// What a proposal needs from its base policy: signatures and delay (µs).
pub(crate) fn needs(proposal: &Proposal, base: &Policy) -> (u32, i64) {
    if proposal.loosens.is_empty() {
        (1, 0)
    } else {
        let delay = i64::try_from(base.changes.delay_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000);
        (base.changes.quorum(), delay)
    }
}

/// The outcome of a proposal: the proposal, the exact diff against the
/// active policy, and how it loosens it.
#[derive(Debug, Clone)]
pub struct Proposed {
    /// The proposal as recorded.
    pub proposal: Proposal,
    /// The exact diff (`None` when too complex to compare).
    pub diff: Option<DiffReport>,
}

impl Ledger {
    fn active_text(&self, tx: &mut dyn Tx) -> Result<Option<(String, String)>, StoreError> {
        match active_in(tx)? {
            None => Ok(None),
            Some(a) => Ok(text_of(tx, a.seq)?.map(|t| (a.digest, t))),
        }
    }

    fn next_proposal(tx: &mut dyn Tx) -> Result<u64, StoreError> {
        let last = tx
            .note("policy.proposals")?
            .and_then(|n| n.parse::<u64>().ok())
            .unwrap_or(0);
        tx.set_note("policy.proposals", &(last + 1).to_string())?;
        Ok(last + 1)
    }

    /// Proposes `policy` in place of the active one, by `by` (a name, recorded;
    /// proposing needs no signature, activating does).
    pub fn propose(&self, policy: &Policy, by: &str) -> Result<Proposed, OperatorError> {
        super::operator::operator_name(by)?;
        let mut done = None;
        let mut refused = None;
        self.inner.store.transaction(&mut |tx| {
            let Some((base, base_text)) = self.active_text(tx)? else {
                refused = Some(Invalid::NoActivePolicy);
                return Ok(());
            };
            if base == policy.digest {
                refused = Some(Invalid::AlreadyActive(base));
                return Ok(());
            }
            let Ok(active) = Policy::parse(&base_text, "the active policy") else {
                return Err(StoreError::Invalid(
                    "the active policy recorded in the ledger does not load".into(),
                ));
            };
            let diff = DiffReport::new(&active, policy).ok();
            let loosens = loosenings(&active, policy, diff.as_ref());
            let id = Self::next_proposal(tx)?;
            let label = proposal_label(id);
            let now = tx.ledger_time(self.inner.clock.now_micros())?;
            let payload = canonical(&[
                ("base", Value::String(base.clone())),
                ("digest", Value::String(policy.digest.clone())),
                ("text", Value::String(policy.source.clone())),
                (
                    "loosens",
                    Value::List(loosens.iter().cloned().map(Value::String).collect()),
                ),
            ]);
            let reason = if loosens.is_empty() {
                format!("{label} proposed by {by}: it only tightens policy {base}")
            } else {
                format!(
                    "{label} proposed by {by}: it loosens policy {base} in {} way(s)",
                    loosens.len()
                )
            };
            let mut r = record(
                RecordKind::Propose,
                "propose",
                by,
                payload,
                reason,
                &label,
                &policy.digest,
            );
            r.time = rfc3339(now);
            append(tx, r)?;
            let (seq, _) = tx.head()?;
            done = Some(Proposed {
                proposal: Proposal {
                    id,
                    seq,
                    proposed_at: now,
                    by: by.to_owned(),
                    digest: policy.digest.clone(),
                    text: policy.source.clone(),
                    base,
                    loosens,
                    signers: Vec::new(),
                    activated: None,
                },
                diff,
            });
            Ok(())
        })?;
        match (done, refused) {
            (Some(p), _) => Ok(p),
            (None, Some(e)) => Err(e.into()),
            (None, None) => Err(Invalid::NothingDone.into()),
        }
    }

    /// A proposal and the records citing it, read in a transaction.
    fn proposal_in(
        tx: &mut dyn Tx,
        label: &str,
    ) -> Result<Result<(Proposal, Vec<AuditRecord>), OperatorError>, StoreError> {
        let not_found = || OperatorError::NotFound {
            kind: Approval::Proposal,
            id: label.to_owned(),
        };
        let Some(id) = parse_label(label) else {
            return Ok(Err(not_found()));
        };
        let records = tx.records_citing(&proposal_label(id))?;
        Ok(from_records(id, &records)
            .map(|p| (p, records))
            .ok_or_else(not_found))
    }

    /// Every proposal, in order.
    pub fn proposals(&self) -> Result<Vec<Proposal>, StoreError> {
        let mut by_label: BTreeMap<u64, Vec<AuditRecord>> = BTreeMap::new();
        self.inner.store.scan(&mut |r| {
            if let Some(id) = r.approval_id.as_deref().and_then(parse_label) {
                by_label.entry(id).or_default().push(r);
            }
            true
        })?;
        Ok(by_label
            .iter()
            .filter_map(|(id, records)| from_records(*id, records))
            .collect())
    }

    /// Signs proposal `label` with `key`: the key must be one the active
    /// policy lists and may sign its changes; the proposal must still change
    /// the active policy.
    pub fn sign_proposal(&self, label: &str, key: &OperatorKey) -> Result<Proposal, OperatorError> {
        let mut done = None;
        let mut refused = None;
        self.inner.store.transaction(&mut |tx| {
            let (mut proposal, _, base) = match self.open_proposal(tx, label)? {
                Ok(found) => found,
                Err(e) => {
                    refused = Some(e);
                    return Ok(());
                }
            };
            let label = proposal_label(proposal.id);
            let public = key.public_key();
            let Some(listed) = base.approvers.iter().find(|a| a.key == public) else {
                refused = Some(OperatorError::Refused(Refusal::UnknownKey {
                    key: key.name().to_owned(),
                    public,
                }));
                return Ok(());
            };
            if !base.changes.may_sign(&base, &listed.name) {
                refused = Some(Invalid::MayNotSignPolicyChanges(listed.name.clone()).into());
                return Ok(());
            }
            if proposal.signers.contains(&listed.name) {
                refused = Some(
                    Invalid::AlreadySigned {
                        signer: listed.name.clone(),
                        proposal: label.clone(),
                    }
                    .into(),
                );
                return Ok(());
            }
            let signature = key.sign(&statement(
                &label,
                &proposal.digest,
                &proposal.base,
                &listed.name,
            ));
            let now = tx.ledger_time(self.inner.clock.now_micros())?;
            let mut r = record(
                RecordKind::Sign,
                "sign",
                &listed.name,
                canonical(&[("signature", Value::String(signature))]),
                format!("{} signed {label}", listed.name),
                &label,
                &proposal.digest,
            );
            r.time = rfc3339(now);
            append(tx, r)?;
            proposal.signers.push(listed.name.clone());
            done = Some(proposal);
            Ok(())
        })?;
        match (done, refused) {
            (Some(p), _) => Ok(p),
            (None, Some(e)) => Err(e),
            (None, None) => Err(Invalid::NothingDone.into()),
        }
    }

    /// Proposal `label`, the records citing it and the policy it changes
    /// (the active one), or why it cannot be signed or activated now.
    #[allow(clippy::type_complexity)]
    fn open_proposal(
        &self,
        tx: &mut dyn Tx,
        label: &str,
    ) -> Result<Result<(Proposal, Vec<AuditRecord>, Policy), OperatorError>, StoreError> {
        let (proposal, records) = match Self::proposal_in(tx, label)? {
            Ok(found) => found,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(e) = self.stale(tx, &proposal)? {
            return Ok(Err(e));
        }
        let Some((_, base_text)) = self.active_text(tx)? else {
            return Ok(Err(Invalid::NoActivePolicy.into()));
        };
        let base = Policy::parse(&base_text, "the active policy").map_err(|_| {
            StoreError::Invalid("the active policy recorded in the ledger does not load".into())
        })?;
        Ok(Ok((proposal, records, base)))
    }

    /// Why `proposal` can no longer be signed or activated, if so.
    fn stale(
        &self,
        tx: &mut dyn Tx,
        proposal: &Proposal,
    ) -> Result<Option<OperatorError>, StoreError> {
        let label = proposal_label(proposal.id);
        if proposal.activated.is_some() {
            return Ok(Some(Invalid::ProposalDone(label).into()));
        }
        let active = active_in(tx)?;
        if active.as_ref().map(|a| a.digest.as_str()) != Some(proposal.base.as_str()) {
            return Ok(Some(
                Invalid::ProposalStale {
                    proposal: label,
                    base: proposal.base.clone(),
                }
                .into(),
            ));
        }
        Ok(None)
    }

    /// Activates proposal `label` once the active policy's requirements are
    /// met: enough distinct valid signatures of approvers it names for policy
    /// changes, and its delay passed (a change that only tightens: one
    /// signature, no delay).
    pub fn activate_proposal(&self, label: &str) -> Result<Activation, OperatorError> {
        let mut done = None;
        let mut refused = None;
        self.inner.store.transaction(&mut |tx| {
            let (proposal, records, base) = match self.open_proposal(tx, label)? {
                Ok(found) => found,
                Err(e) => {
                    refused = Some(e);
                    return Ok(());
                }
            };
            let label = proposal_label(proposal.id);
            let signers = match check_signatures(&proposal, &base, &records) {
                Ok(s) => s,
                Err(why) => {
                    refused = Some(
                        Invalid::Unvouched {
                            kind: Approval::Proposal,
                            id: label.clone(),
                            why,
                        }
                        .into(),
                    );
                    return Ok(());
                }
            };
            let (needed, delay) = needs(&proposal, &base);
            if (signers.len() as u32) < needed {
                refused = Some(
                    Invalid::ProposalUnsigned {
                        proposal: label.clone(),
                        have: signers.len(),
                        needed,
                    }
                    .into(),
                );
                return Ok(());
            }
            let now = tx.ledger_time(self.inner.clock.now_micros())?;
            let ready = proposal.proposed_at.saturating_add(delay);
            if now < ready {
                refused = Some(
                    Invalid::ProposalDelayed {
                        proposal: label.clone(),
                        until: rfc3339(ready),
                    }
                    .into(),
                );
                return Ok(());
            }
            let reason = format!(
                "{label} signed by {} ({} needed{}) in place of {}",
                signers.join(", "),
                needed,
                if proposal.loosens.is_empty() {
                    ": it only tightens"
                } else {
                    ""
                },
                proposal.base
            );
            let by = signers.join(",");
            let made = activate_in(
                tx,
                now,
                &proposal.digest,
                &proposal.text,
                &by,
                reason.clone(),
                Some(&label),
            )?;
            done = Some(Activation {
                seq: made.seq,
                time: rfc3339(now),
                by,
                digest: made.digest,
                text: proposal.text.clone(),
                reason,
            });
            Ok(())
        })?;
        match (done, refused) {
            (Some(a), _) => Ok(a),
            (None, Some(e)) => Err(e),
            (None, None) => Err(Invalid::NothingDone.into()),
        }
    }
}

/// How a policy would have decided the ledger's past calls: counts of
/// calls decided differently, by old → new decision, with examples.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Impact {
    /// Calls looked at (decisions since the cut-off).
    pub replayed: usize,
    /// Calls decided differently, by (old, new) decision.
    pub changed: BTreeMap<(String, String), usize>,
    /// Up to three examples per (old, new): the record's seq and capability.
    pub examples: BTreeMap<(String, String), Vec<(u64, String)>>,
    /// Calls a velocity window decided (their totals are not replayed).
    pub windowed: usize,
}

impl Ledger {
    /// Replays the decisions recorded at or after `since` (µs since the
    /// epoch) under `policy`. A call a velocity window covers is counted
    /// apart: the totals it was decided on are not replayed.
    pub fn replay_impact(&self, policy: &Policy, since: i64) -> Result<Impact, StoreError> {
        let windows = policy.windows();
        let mut impact = Impact::default();
        self.inner.store.scan(&mut |r| {
            let RecordKind::Decision(old) = r.decision else {
                return true;
            };
            if capfence_compiler::time::parse_time(&r.time).is_none_or(|t| t < since) {
                return true;
            }
            let Some(event) = event_of(&r) else {
                return true;
            };
            impact.replayed += 1;
            if windows.iter().any(|w| w.covers_event(&event)) {
                impact.windowed += 1;
                return true;
            }
            let new = policy.decide(&event).kind;
            if new != old {
                let key = (old.as_str().to_owned(), new.as_str().to_owned());
                *impact.changed.entry(key.clone()).or_default() += 1;
                let examples = impact.examples.entry(key).or_default();
                if examples.len() < 3 {
                    examples.push((r.seq, r.capability.clone().unwrap_or_default()));
                }
            }
            true
        })?;
        Ok(impact)
    }
}

/// The event a decision record was made on (the payload's text spliced
/// in as recorded, so its numbers stay exact).
fn event_of(r: &AuditRecord) -> Option<capfence_compiler::Event> {
    let text = |v: &Option<String>| serde_json::to_string(v).ok();
    let json = format!(
        r#"{{"actor":{},"capability":{},"environment":{},"risk":{},"payload":{}}}"#,
        text(&r.actor)?,
        text(&r.capability)?,
        text(&r.environment)?,
        text(&r.risk)?,
        r.payload
    );
    capfence_compiler::Event::from_json(&json).ok()
}
