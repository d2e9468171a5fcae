//! Approvals: single-use tickets bound to one exact event, and time-bounded
//! grants for (actor, capability, environment). Neither ever overrides a deny:
//! they are consulted only when the policy says `require_approval`.
//!
//! This module holds the types and the pure functions: ticket keys, grant
//! caps, and the replay of a ticket's or grant's chain records. It knows
//! nothing of storage; settling a decision against the store lives in
//! `ledger/queue.rs`.

use capfence_compiler::Event;
use capfence_compiler::event::{EventRisk, write_object};
use capfence_compiler::facts::{Eligible, RuleFacts};
use capfence_compiler::load::is_field_name;
use capfence_compiler::policy::DecisionKind;
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::audit::{AuditRecord, RecordKind};
use crate::clock::parse_rfc3339;
use crate::signing;

/// Where a ticket stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TicketStatus {
    /// Waiting for an operator.
    Pending,
    /// Approved; the next identical event consumes it.
    Approved,
    /// Rejected by an operator.
    Rejected,
    /// Consumed by the event it was approved for.
    Used,
}

impl TicketStatus {
    /// The status as stored and shown.
    pub const fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Pending => "pending",
            TicketStatus::Approved => "approved",
            TicketStatus::Rejected => "rejected",
            TicketStatus::Used => "used",
        }
    }

    /// Parses a stored status.
    pub fn parse(text: &str) -> Option<TicketStatus> {
        [
            TicketStatus::Pending,
            TicketStatus::Approved,
            TicketStatus::Rejected,
            TicketStatus::Used,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// A request for a human decision on one exact event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ticket {
    /// Its number; shown as `T-<id>`.
    pub id: u64,
    /// SHA-256 of the canonical (actor, capability, environment, risk,
    /// payload, deciding rule, policy digest): see [`event_key`].
    pub event_key: String,
    /// The event's actor.
    pub actor: Option<String>,
    /// The event's capability.
    pub capability: String,
    /// The event's environment.
    pub environment: Option<String>,
    /// The event's risk.
    pub risk: Option<String>,
    /// The canonical payload.
    pub payload: String,
    /// The require_approval rule that asked for it.
    pub rule: Option<String>,
    /// Where it stands.
    pub status: TicketStatus,
    /// When it was created (µs since the epoch).
    pub created_at: i64,
    /// When it stops counting, pending or approved (µs since the epoch).
    pub expires_at: i64,
    /// The operator who approved or rejected it.
    pub decided_by: Option<String>,
}

/// A standing permission to pass `require_approval` for (actor, capability,
/// environment) until it expires, optionally capped in named payload fields
/// and in uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Its number; shown as `G-<id>`.
    pub id: u64,
    /// The actor it is for (exact).
    pub actor: String,
    /// The capability (`payments.transfer`).
    pub capability: String,
    /// The environment (`production`).
    pub environment: String,
    /// The operator who gave it.
    pub granted_by: String,
    /// When (µs since the epoch).
    pub created_at: i64,
    /// Until when (µs since the epoch).
    pub expires_at: i64,
    /// Caps: each payload field with the largest value the grant covers.
    pub caps: Vec<(String, Decimal)>,
    /// Uses left, if capped.
    pub uses_left: Option<u32>,
    /// The operator who revoked it.
    pub revoked_by: Option<String>,
    /// Who signed it, if it was signed (read from the chain; rows carry none).
    pub signed: Option<GrantSignature>,
}

/// The signature on a grant, verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantSignature {
    /// The approver's name.
    pub signer: String,
    /// The approver's public key (`ed25519:…`).
    pub key: String,
    /// The policy digest the grant was signed under.
    pub policy_digest: String,
}

/// Limits on a grant beyond its duration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantLimits {
    /// Caps on payload fields (`amount` ≤ 1000, say). A cap holds only where
    /// the deciding rule itself compares that field as a number and the
    /// event's value is at most the cap: a field the rule does not test
    /// never satisfies it. At grant time every capped field must be tested
    /// by some `require_approval` rule of the capability.
    pub caps: Vec<(String, Decimal)>,
    /// How many decisions it may satisfy.
    pub uses: Option<u32>,
}

impl GrantLimits {
    /// A cap on `field`.
    pub fn cap(mut self, field: &str, max: Decimal) -> GrantLimits {
        self.caps.push((field.to_owned(), max));
        self
    }
}

/// The caps as stored and shown: `amount=1000;total=5` (fields sorted).
pub fn caps_text(caps: &[(String, Decimal)]) -> String {
    let mut parts: Vec<String> = caps
        .iter()
        .map(|(field, max)| format!("{field}={}", max.normalize()))
        .collect();
    parts.sort();
    parts.join(";")
}

/// One cap as an operator writes it: `FIELD=VALUE`, VALUE an exact decimal
/// (`amount=1000`). `None` for anything else.
pub fn parse_cap(text: &str) -> Option<(String, Decimal)> {
    let (field, max) = text.split_once('=')?;
    let max = capfence_compiler::number::parse_exact(max)?;
    is_field_name(field).then(|| (field.to_owned(), max))
}

/// A grant's scope as an operator writes it: `resource.action` with the
/// environment given apart, or `resource.action.environment`. `None` when
/// no environment is named (the names themselves are checked by the grant).
pub fn parse_scope(capability: &str, environment: Option<&str>) -> Option<(String, String)> {
    match environment {
        Some(env) => Some((capability.to_owned(), env.to_owned())),
        None if capability.matches('.').count() == 2 => capability
            .rsplit_once('.')
            .map(|(c, e)| (c.to_owned(), e.to_owned())),
        None => None,
    }
}

/// Parses [`caps_text`]; `None` for anything else.
pub fn parse_caps(text: &str) -> Option<Vec<(String, Decimal)>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(';').map(parse_cap).collect()
}

/// Why a grant's caps do not fit the policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// The capability is not `resource.action`.
    #[error("`{0}` is not `resource.action`")]
    NotACapability(String),
    /// A capped name that is not a payload field name.
    #[error("`{0}` is not a payload field name")]
    NotAField(String),
    /// No `require_approval` rule of the capability compares the field.
    #[error(
        "no require_approval rule for {capability} compares `{field}`, so a cap on it would cap \
         nothing (capped fields can be: {})",
        if cappable.is_empty() { "none".to_owned() } else { cappable.join(", ") }
    )]
    NotCompared {
        /// The capability.
        capability: String,
        /// The capped field.
        field: String,
        /// The fields its rules compare as numbers.
        cappable: Vec<String>,
    },
}

/// Checks a grant's caps against the policy: every capped field must be
/// compared as a number by some `require_approval` rule covering
/// `capability`, or the cap could never hold (or, worse, be read from a
/// field the policy does not look at). The error names the field.
pub fn check_caps(
    facts: &[RuleFacts],
    capability: &str,
    caps: &[(String, Decimal)],
) -> Result<(), CapError> {
    let Some((resource, action)) = capability.split_once('.') else {
        return Err(CapError::NotACapability(capability.to_owned()));
    };
    for (field, _) in caps {
        if !is_field_name(field) {
            return Err(CapError::NotAField(field.clone()));
        }
        let tested = facts.iter().any(|f| {
            f.tier == DecisionKind::RequireApproval
                && f.covers(resource, action)
                && f.numbers.iter().any(|n| n == field)
        });
        if !tested {
            let fields: Vec<&str> = facts
                .iter()
                .filter(|f| f.tier == DecisionKind::RequireApproval && f.covers(resource, action))
                .flat_map(|f| f.numbers.iter().map(AsRef::as_ref))
                .collect();
            return Err(CapError::NotCompared {
                capability: capability.to_owned(),
                field: field.clone(),
                cappable: fields.into_iter().map(str::to_owned).collect(),
            });
        }
    }
    Ok(())
}

impl Grant {
    /// Whether the grant covers, now, an event decided by a rule that
    /// compares `tested` as numbers: every cap must name a tested field
    /// whose value in the event is a number no greater than the cap.
    pub fn usable(&self, now: i64, event: &Event, tested: &[impl AsRef<str>]) -> bool {
        self.revoked_by.is_none()
            && self.expires_at > now
            && self.uses_left != Some(0)
            && self.caps.iter().all(|(field, max)| {
                tested.iter().any(|t| t.as_ref() == field)
                    && event
                        .payload
                        .get(field)
                        .and_then(|v| v.as_number())
                        .is_some_and(|v| v <= *max)
            })
    }
}

/// The note key under which a ledger keeps a policy's signing requirements.
pub fn requirements_key(digest: &str) -> String {
    format!("approvers:{digest}")
}

/// A policy's signing requirements as a ledger note: for each
/// require_approval rule whose approvals are signed, its id, quorum and
/// eligible approvers. `None` when the policy lists no approvers.
pub fn requirements_note(facts: &[RuleFacts]) -> Option<String> {
    let rules: Vec<serde_json::Value> = facts
        .iter()
        .filter(|f| f.tier == DecisionKind::RequireApproval && f.signed())
        .map(|f| {
            // Approvers as [name, key] pairs: the note's format.
            let approvers: Vec<[&str; 2]> = f
                .approvers
                .iter()
                .map(|a| [a.name.as_ref(), a.key.as_ref()])
                .collect();
            serde_json::json!({
                "id": f.id,
                "approvals": f.approvals,
                "approvers": approvers,
            })
        })
        .collect();
    (!rules.is_empty()).then(|| serde_json::json!({ "rules": rules }).to_string())
}

/// Reads [`requirements_note`] back (only the fields it holds); `None` if it
/// is not one.
pub fn parse_requirements(text: &str) -> Option<Vec<RuleFacts>> {
    let body: serde_json::Value = serde_json::from_str(text).ok()?;
    body.get("rules")?
        .as_array()?
        .iter()
        .map(|rule| {
            let approvers = rule
                .get("approvers")?
                .as_array()?
                .iter()
                .map(|pair| {
                    let name = pair.get(0)?.as_str()?;
                    let key = pair.get(1)?.as_str()?;
                    Some(Eligible {
                        name: name.to_owned().into(),
                        key: key.to_owned().into(),
                    })
                })
                .collect::<Option<Vec<_>>>()?;
            Some(RuleFacts {
                id: rule.get("id")?.as_str()?.to_owned().into(),
                tier: DecisionKind::RequireApproval,
                resource: None,
                action: None,
                numbers: Vec::new().into(),
                approvals: u32::try_from(rule.get("approvals")?.as_u64()?).ok()?,
                approvers: approvers.into(),
                conditions: Vec::new().into(),
                limits: Vec::new().into(),
            })
        })
        .collect()
}

macro_rules! label_id {
    ($name:ident, $prefix:literal, $what:literal) => {
        #[doc = concat!("A ", $what, "'s id: `", $prefix, "-7` in text (records, the CLI, verdicts).")]
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub u64);

        impl $name {
            #[doc = concat!("Parses what an operator types: `", $prefix, "-7`, its lowercase form, or `7`.")]
            pub fn parse(text: &str) -> Option<$name> {
                let t = text.trim();
                let digits = t
                    .strip_prefix($prefix)
                    .or_else(|| t.strip_prefix(&$prefix.to_ascii_lowercase()))
                    .and_then(|r| r.strip_prefix('-'))
                    .unwrap_or(t);
                Self::digits(digits)
            }

            #[doc = concat!("Parses a label as records write it, exactly `", $prefix, "-<digits>` (no sign, no leading zero).")]
            pub fn from_label(text: &str) -> Option<$name> {
                let id = Self::digits(text.strip_prefix(concat!($prefix, "-"))?)?;
                (id.to_string() == text).then_some(id)
            }

            fn digits(text: &str) -> Option<$name> {
                if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                text.parse().ok().map($name)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, concat!($prefix, "-{}"), self.0)
            }
        }
    };
}

label_id!(TicketId, "T", "ticket");
label_id!(GrantId, "G", "grant");

/// The canonical payload of an event: sorted keys, exact decimals.
pub fn canonical_payload(event: &Event) -> String {
    let mut out = String::new();
    write_object(&event.payload, &mut out);
    out
}

/// The key that binds a ticket to one exact event, the rule that asked for
/// it and the policy that rule belongs to: SHA-256 over the actor,
/// capability, environment, risk, canonical payload, deciding rule id and
/// policy digest (docs/audit-format.md). A ticket approved for one of these
/// never lets a different one through.
pub fn event_key(event: &Event, rule: Option<&str>, digest: &str) -> String {
    key_of(
        event.actor.as_deref(),
        event.capability().as_deref(),
        event.environment.as_deref(),
        event.risk.as_ref().map(EventRisk::as_str),
        &canonical_payload(event),
        rule,
        digest,
    )
}

/// The ticket key of a chain record: the same parts, read from the record.
pub fn record_key(record: &AuditRecord) -> String {
    key_of(
        record.actor.as_deref(),
        record.capability.as_deref(),
        record.environment.as_deref(),
        record.risk.as_deref(),
        &record.payload,
        record.rule.as_deref(),
        record.policy_digest.as_deref().unwrap_or_default(),
    )
}

/// Whether two records hold the same event under the same rule and policy:
/// the fields [`record_key`] hashes.
fn same_event(a: &AuditRecord, b: &AuditRecord) -> bool {
    a.actor == b.actor
        && a.capability == b.capability
        && a.environment == b.environment
        && a.risk == b.risk
        && a.payload == b.payload
        && a.rule == b.rule
        && a.policy_digest == b.policy_digest
}

fn key_of(
    actor: Option<&str>,
    capability: Option<&str>,
    environment: Option<&str>,
    risk: Option<&str>,
    payload: &str,
    rule: Option<&str>,
    digest: &str,
) -> String {
    let mut hasher = Sha256::new();
    hasher.update("capfence-ticket-v2\n");
    for part in [
        actor,
        capability,
        environment,
        risk,
        Some(payload),
        rule,
        Some(digest),
    ] {
        match part {
            Some(p) => hasher.update(format!("{}:{p}\n", p.len())),
            None => hasher.update("~\n"),
        }
    }
    hex::encode(hasher.finalize())
}

/// A record that does not fit its ticket's or grant's earlier records, or
/// whose signature fails.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {seq} ({}): {message}", decision.map_or("none", RecordKind::as_str))]
pub struct ReplayFault {
    /// The record's seq (0: none opened it).
    pub seq: u64,
    /// The record's kind (`None`: no record).
    pub decision: Option<RecordKind>,
    /// What is wrong.
    pub message: String,
}

fn fault(record: &AuditRecord, message: impl Into<String>) -> ReplayFault {
    ReplayFault {
        seq: record.seq,
        decision: Some(record.decision),
        message: message.into(),
    }
}

/// What a signature names beside the signature itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The approver's name.
    pub signer: String,
    /// The approver's public key.
    pub key: String,
    /// The quorum the approver signed for (tickets).
    pub quorum: u32,
    /// The expiry the approver signed (tickets), µs since the epoch.
    pub expires_at: Option<i64>,
}

/// The statement an approver signs to approve or reject a ticket: the
/// action, the ticket, the event it is bound to, the chain record that
/// opened it, the policy, the quorum and the expiry, and the signer's name.
#[allow(clippy::too_many_arguments)]
pub fn ticket_statement(
    verb: &str,
    label: &str,
    event_key: &str,
    opened_hash: &str,
    policy_digest: &str,
    quorum: u32,
    expires_at: &str,
    signer: &str,
) -> Vec<u8> {
    signing::statement(
        "ticket",
        &[
            ("action", verb),
            ("ticket", label),
            ("event_key", event_key),
            ("opened", opened_hash),
            ("policy", policy_digest),
            ("quorum", &quorum.to_string()),
            ("expires_at", expires_at),
            ("signer", signer),
        ],
    )
}

/// The statement an approver signs to grant: the grant's id, scope, caps,
/// use limit, expiry, the policy and the signer's name.
#[allow(clippy::too_many_arguments)]
pub fn grant_statement(
    label: &str,
    actor: &str,
    capability: &str,
    environment: &str,
    caps: &str,
    uses: Option<u32>,
    expires_at: &str,
    policy_digest: &str,
    signer: &str,
) -> Vec<u8> {
    let uses = uses.map_or_else(|| "unlimited".to_owned(), |u| u.to_string());
    signing::statement(
        "grant",
        &[
            ("action", "grant"),
            ("grant", label),
            ("actor", actor),
            ("capability", capability),
            ("environment", environment),
            ("caps", caps),
            ("uses", &uses),
            ("expires_at", expires_at),
            ("policy", policy_digest),
            ("signer", signer),
        ],
    )
}

/// The statement an approver signs to revoke a grant: the grant, the chain
/// record that granted it, the policy and the signer's name.
pub fn revoke_statement(
    label: &str,
    granted_hash: &str,
    policy_digest: &str,
    signer: &str,
) -> Vec<u8> {
    signing::statement(
        "grant",
        &[
            ("action", "revoke"),
            ("grant", label),
            ("granted", granted_hash),
            ("policy", policy_digest),
            ("signer", signer),
        ],
    )
}

/// Reads and checks the signature of an operator record. A record is signed
/// exactly when it names a policy digest; then its payload must hold
/// `signer`, `key` and `signature`, and the signature must verify over
/// `statement(signer, quorum, expires_at)`. `Ok(None)`: not signed.
fn signature_of(
    record: &AuditRecord,
    statement: impl Fn(&str, u32, &str) -> Vec<u8>,
) -> Result<Option<Signed>, ReplayFault> {
    if record.policy_digest.is_none() {
        return Ok(None);
    }
    let body: serde_json::Value = serde_json::from_str(&record.payload)
        .map_err(|_| fault(record, "its signature block is unreadable"))?;
    let text = |key: &str| body.get(key).and_then(serde_json::Value::as_str);
    let (Some(signer), Some(key), Some(signature)) =
        (text("signer"), text("key"), text("signature"))
    else {
        return Err(fault(record, "it names a policy but carries no signature"));
    };
    let quorum = match body.get("quorum") {
        None => 1,
        Some(v) => v
            .as_u64()
            .and_then(|q| u32::try_from(q).ok())
            .ok_or_else(|| fault(record, "its signed quorum is unreadable"))?,
    };
    let expires_text = text("expires_at").unwrap_or_default();
    let expires_at = match text("expires_at") {
        None => None,
        Some(t) => {
            Some(parse_rfc3339(t).ok_or_else(|| fault(record, "its signed expiry is unreadable"))?)
        }
    };
    if !signing::verify(key, &statement(signer, quorum, expires_text), signature) {
        return Err(fault(
            record,
            format!("the signature by `{signer}` does not verify"),
        ));
    }
    Ok(Some(Signed {
        signer: signer.to_owned(),
        key: key.to_owned(),
        quorum,
        expires_at,
    }))
}

/// A ticket as its chain records tell it (the rows are only an index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTicket {
    /// The key of the event it was opened for.
    pub key: String,
    /// When it was opened (µs since the epoch).
    pub opened_at: i64,
    /// The hash of the record that opened it.
    pub opened_hash: String,
    /// The policy digest of the record that opened it.
    pub policy_digest: String,
    /// The distinct approvers so far, in order.
    pub approvals: Vec<String>,
    /// Whether enough of them approved.
    pub approved: bool,
    /// The operator who rejected it.
    pub rejected_by: Option<String>,
    /// The seq of the record that consumed it.
    pub used_at: Option<u64>,
    /// The earliest expiry an approver signed (µs since the epoch).
    pub signed_expiry: Option<i64>,
}

impl ChainTicket {
    /// Where the ticket stands by its chain records.
    pub fn standing(&self) -> TicketStatus {
        if self.used_at.is_some() {
            TicketStatus::Used
        } else if self.approved {
            TicketStatus::Approved
        } else if self.rejected_by.is_some() {
            TicketStatus::Rejected
        } else {
            TicketStatus::Pending
        }
    }

    /// The approvers, joined (`ops1, ops2`), once approved.
    pub fn approved_by(&self) -> Option<String> {
        self.approved.then(|| self.approvals.join(", "))
    }

    /// Whether a signed expiry still holds at `now`.
    pub fn signature_current(&self, now: i64) -> bool {
        self.signed_expiry.is_none_or(|at| at > now)
    }
}

/// Replays the records citing one ticket, in seq order. The first must open
/// it (`require_approval`); then approvals until the quorum is met, or one
/// reject; an `allow` only after the quorum, for the same key, once; a
/// `deny` only after a reject; `require_approval` again only for the same
/// key before a decision.
///
/// Every signed record's signature must verify. With `rule` (the facts of
/// the rule that opened the ticket, from the policy in force) and a rule
/// whose approvals are signed, every approve and reject must be signed by an
/// approver eligible for the rule, for the rule's quorum; the quorum counts
/// distinct approvers. Without `rule` (`verify`, which has no policy), the
/// quorum is the one the approvers signed.
pub fn chain_ticket(
    records: &[AuditRecord],
    rule: Option<&RuleFacts>,
) -> Result<ChainTicket, ReplayFault> {
    let Some((open, rest)) = records.split_first() else {
        return Err(ReplayFault {
            seq: 0,
            decision: None,
            message: "no record opened it".to_owned(),
        });
    };
    if open.decision != RecordKind::REQUIRE_APPROVAL {
        return Err(fault(open, "it cites a ticket before any record opened it"));
    }
    let mut t = ChainTicket {
        key: record_key(open),
        opened_at: parse_rfc3339(&open.time)
            .ok_or_else(|| fault(open, "its time is unreadable"))?,
        opened_hash: open.hash.clone(),
        policy_digest: open.policy_digest.clone().unwrap_or_default(),
        approvals: Vec::new(),
        approved: false,
        rejected_by: None,
        used_at: None,
        signed_expiry: None,
    };
    let label = open.approval_id.clone().unwrap_or_default();
    for r in rest {
        let decided = t.approved || t.rejected_by.is_some();
        let fits = match r.decision {
            // The key is a function of these fields: a record equal to the
            // opening one in them has its key, unhashed.
            RecordKind::REQUIRE_APPROVAL => {
                !decided && (same_event(r, open) || record_key(r) == t.key)
            }
            verb @ (RecordKind::Approve | RecordKind::Reject) if !decided => {
                let signed = if r.policy_digest.is_some() {
                    if r.policy_digest.as_deref() != Some(t.policy_digest.as_str()) {
                        return Err(fault(
                            r,
                            "it is signed under another policy than the one that opened the ticket",
                        ));
                    }
                    signature_of(r, |signer, quorum, expires| {
                        ticket_statement(
                            verb.as_str(),
                            &label,
                            &t.key,
                            &t.opened_hash,
                            &t.policy_digest,
                            quorum,
                            expires,
                            signer,
                        )
                    })?
                } else {
                    None
                };
                let needed = match (rule.filter(|f| f.signed()), &signed) {
                    (Some(f), Some(s)) => {
                        if !f
                            .approvers
                            .iter()
                            .any(|a| a.name == s.signer.as_str() && a.key == s.key.as_str())
                        {
                            return Err(fault(
                                r,
                                format!("`{}` may not sign for rule {}", s.signer, f.id),
                            ));
                        }
                        if s.quorum != f.approvals {
                            return Err(fault(
                                r,
                                format!(
                                    "`{}` signed for a quorum of {}, but rule {} needs {}",
                                    s.signer, s.quorum, f.id, f.approvals
                                ),
                            ));
                        }
                        f.approvals
                    }
                    (Some(f), None) => {
                        return Err(fault(
                            r,
                            format!("it is not signed, but rule {} needs signed approvals", f.id),
                        ));
                    }
                    (None, Some(s)) => s.quorum,
                    (None, None) => 1,
                };
                let name = signed
                    .as_ref()
                    .map_or_else(|| r.actor.clone().unwrap_or_default(), |s| s.signer.clone());
                if let Some(at) = signed.as_ref().and_then(|s| s.expires_at) {
                    t.signed_expiry = Some(t.signed_expiry.map_or(at, |e| e.min(at)));
                }
                if verb == RecordKind::Approve {
                    if !t.approvals.contains(&name) {
                        t.approvals.push(name);
                    }
                    t.approved = t.approvals.len() >= usize::try_from(needed).unwrap_or(usize::MAX);
                } else {
                    t.rejected_by = Some(name);
                }
                true
            }
            RecordKind::ALLOW if t.approved && t.used_at.is_none() && record_key(r) == t.key => {
                t.used_at = Some(r.seq);
                true
            }
            RecordKind::DENY => t.rejected_by.is_some() && record_key(r) == t.key,
            _ => false,
        };
        if !fits {
            return Err(fault(
                r,
                "it does not follow from the ticket's earlier records",
            ));
        }
    }
    Ok(t)
}

/// A grant as its chain records tell it: the grant record's scope and limits,
/// its verified signature, the uses the chain shows, and its revocation.
/// `Err` names the first record that does not fit or whose signature fails.
pub fn chain_grant(id: u64, records: &[AuditRecord]) -> Result<Grant, ReplayFault> {
    let Some((open, rest)) = records.split_first() else {
        return Err(ReplayFault {
            seq: 0,
            decision: None,
            message: "no record granted it".to_owned(),
        });
    };
    if open.decision != RecordKind::Grant {
        return Err(fault(open, "it cites a grant before any record granted it"));
    }
    let bad = |what: &str| fault(open, format!("it has {what}"));
    let body: serde_json::Value =
        serde_json::from_str(&open.payload).map_err(|_| bad("an unreadable payload"))?;
    let text = |key: &str| body.get(key).and_then(serde_json::Value::as_str);
    let uses = match body.get("uses") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            v.as_u64()
                .and_then(|u| u32::try_from(u).ok())
                .ok_or_else(|| bad("a bad use limit"))?,
        ),
    };
    let label = GrantId(id).to_string();
    let mut grant = Grant {
        id,
        actor: text("actor").ok_or_else(|| bad("no actor"))?.to_owned(),
        capability: text("capability")
            .ok_or_else(|| bad("no capability"))?
            .to_owned(),
        environment: text("environment")
            .ok_or_else(|| bad("no environment"))?
            .to_owned(),
        granted_by: open.actor.clone().unwrap_or_default(),
        created_at: parse_rfc3339(&open.time).ok_or_else(|| bad("an unreadable time"))?,
        expires_at: text("expires_at")
            .and_then(parse_rfc3339)
            .ok_or_else(|| bad("an unreadable expiry"))?,
        caps: text("caps")
            .and_then(parse_caps)
            .ok_or_else(|| bad("unreadable caps"))?,
        uses_left: uses,
        revoked_by: None,
        signed: None,
    };
    let digest = open.policy_digest.clone().unwrap_or_default();
    let expires_text = text("expires_at").unwrap_or_default();
    let caps_text = text("caps").unwrap_or_default();
    grant.signed = signature_of(open, |signer, _, _| {
        grant_statement(
            &label,
            &grant.actor,
            &grant.capability,
            &grant.environment,
            caps_text,
            grant.uses_left,
            expires_text,
            &digest,
            signer,
        )
    })?
    .map(|s| GrantSignature {
        signer: s.signer,
        key: s.key,
        policy_digest: digest.clone(),
    });
    if let Some(s) = &grant.signed {
        grant.granted_by = s.signer.clone();
    }
    for r in rest {
        let fits = match r.decision {
            RecordKind::ALLOW => {
                let at = parse_rfc3339(&r.time).unwrap_or(i64::MAX);
                let in_scope = r.actor.as_deref() == Some(grant.actor.as_str())
                    && r.capability.as_deref() == Some(grant.capability.as_str())
                    && r.environment.as_deref() == Some(grant.environment.as_str());
                let usable = grant.revoked_by.is_none()
                    && at < grant.expires_at
                    && grant.uses_left != Some(0)
                    && caps_hold(&grant.caps, &r.payload);
                if in_scope && usable {
                    grant.uses_left = grant.uses_left.map(|u| u.saturating_sub(1));
                }
                in_scope && usable
            }
            RecordKind::Revoke if grant.revoked_by.is_none() => {
                let signed = signature_of(r, |signer, _, _| {
                    revoke_statement(
                        &label,
                        &open.hash,
                        r.policy_digest.as_deref().unwrap_or_default(),
                        signer,
                    )
                })?;
                grant.revoked_by =
                    Some(signed.map_or_else(|| r.actor.clone().unwrap_or_default(), |s| s.signer));
                true
            }
            _ => false,
        };
        if !fits {
            return Err(fault(
                r,
                "it does not follow from the grant's earlier records",
            ));
        }
    }
    Ok(grant)
}

/// Whether a recorded canonical payload is within every cap.
fn caps_hold(caps: &[(String, Decimal)], payload: &str) -> bool {
    if caps.is_empty() {
        return true;
    }
    let Ok(event) = Event::from_json(&format!("{{\"payload\":{payload}}}")) else {
        return false;
    };
    caps.iter().all(|(field, max)| {
        event
            .payload
            .get(field)
            .and_then(|v| v.as_number())
            .is_some_and(|v| v <= *max)
    })
}

#[cfg(test)]
mod id_tests {
    use super::{GrantId, TicketId};

    #[test]
    fn operators_type_ids_loosely_and_records_hold_them_exactly() {
        for typed in ["T-7", "t-7", "7", " T-7 "] {
            assert_eq!(TicketId::parse(typed), Some(TicketId(7)), "{typed}");
        }
        for bad in ["", "T-", "T-+7", "T--7", "G-7", "T-7x", "T-١"] {
            assert_eq!(TicketId::parse(bad), None, "{bad}");
        }
        assert_eq!(TicketId(7).to_string(), "T-7");
        assert_eq!(GrantId(3).to_string(), "G-3");
        assert_eq!(TicketId::from_label("T-7"), Some(TicketId(7)));
        // A record's label is exact: no other spelling names the same id.
        for loose in ["t-7", "7", "T-07", " T-7", "T-+7", "G-7"] {
            assert_eq!(TicketId::from_label(loose), None, "{loose}");
        }
        assert_eq!(GrantId::from_label("G-3"), Some(GrantId(3)));
        assert_eq!(GrantId::from_label("T-3"), None);
    }
}
