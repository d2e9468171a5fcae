//! Approvals: single-use tickets bound to one exact event, and time-bounded
//! grants for (actor, capability, environment). Neither ever overrides a deny:
//! they are consulted only when the policy says `require_approval`.
//!
//! This module holds the types and the pure functions: ticket keys, grant
//! caps, and the replay of a ticket's or grant's chain records. It knows
//! nothing of storage; settling a decision against the store lives in
//! `ledger/queue.rs`.

use capfence_compiler::Event;
use capfence_compiler::event::write_object;
use capfence_compiler::policy::{RuleFacts, Tier, is_field_name};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::audit::AuditRecord;
use crate::clock::parse_rfc3339;

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

/// Parses [`caps_text`]; `None` for anything else.
pub fn parse_caps(text: &str) -> Option<Vec<(String, Decimal)>> {
    if text.is_empty() {
        return Some(Vec::new());
    }
    text.split(';')
        .map(|part| {
            let (field, max) = part.split_once('=')?;
            let max = capfence_compiler::number::parse_exact(max)?;
            is_field_name(field).then(|| (field.to_owned(), max))
        })
        .collect()
}

/// Checks a grant's caps against the policy: every capped field must be
/// compared as a number by some `require_approval` rule covering
/// `capability`, or the cap could never hold (or, worse, be read from a
/// field the policy does not look at). The error names the field.
pub fn check_caps(
    facts: &[RuleFacts],
    capability: &str,
    caps: &[(String, Decimal)],
) -> Result<(), String> {
    let Some((resource, action)) = capability.split_once('.') else {
        return Err(format!("`{capability}` is not `resource.action`"));
    };
    for (field, _) in caps {
        if !is_field_name(field) {
            return Err(format!("`{field}` is not a payload field name"));
        }
        let tested = facts.iter().any(|f| {
            f.tier == Tier::RequireApproval
                && f.covers(resource, action)
                && f.numbers.iter().any(|n| n == field)
        });
        if !tested {
            let fields: Vec<&str> = facts
                .iter()
                .filter(|f| f.tier == Tier::RequireApproval && f.covers(resource, action))
                .flat_map(|f| f.numbers.iter().map(String::as_str))
                .collect();
            return Err(format!(
                "no require_approval rule for {capability} compares `{field}`, so a cap on it \
                 would cap nothing (capped fields can be: {})",
                if fields.is_empty() {
                    "none".to_owned()
                } else {
                    fields.join(", ")
                }
            ));
        }
    }
    Ok(())
}

impl Grant {
    /// Whether the grant covers, now, an event decided by a rule that
    /// compares `tested` as numbers: every cap must name a tested field
    /// whose value in the event is a number no greater than the cap.
    pub fn usable(&self, now: i64, event: &Event, tested: &[String]) -> bool {
        self.revoked_by.is_none()
            && self.expires_at > now
            && self.uses_left != Some(0)
            && self.caps.iter().all(|(field, max)| {
                tested.iter().any(|t| t == field)
                    && event
                        .payload
                        .get(field)
                        .and_then(|v| v.as_number())
                        .is_some_and(|v| v <= *max)
            })
    }
}

/// Formats a ticket id: `T-7`.
pub fn ticket_label(id: u64) -> String {
    format!("T-{id}")
}

/// Formats a grant id: `G-3`.
pub fn grant_label(id: u64) -> String {
    format!("G-{id}")
}

/// Parses `T-7`, `t-7` or `7` (with `prefix` `T`).
pub fn parse_label(text: &str, prefix: char) -> Option<u64> {
    let t = text.trim();
    let digits = t
        .strip_prefix(prefix)
        .or_else(|| t.strip_prefix(prefix.to_ascii_lowercase()))
        .and_then(|r| r.strip_prefix('-'))
        .unwrap_or(t);
    digits.parse().ok()
}

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
        event.risk.as_deref(),
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

/// A ticket as its chain records tell it (the rows are only an index).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainTicket {
    /// The key of the event it was opened for.
    pub key: String,
    /// When it was opened (µs since the epoch).
    pub opened_at: i64,
    /// The operator who approved it.
    pub approved_by: Option<String>,
    /// The operator who rejected it.
    pub rejected_by: Option<String>,
    /// The seq of the record that consumed it.
    pub used_at: Option<u64>,
}

impl ChainTicket {
    /// Where the ticket stands by its chain records.
    pub fn standing(&self) -> TicketStatus {
        if self.used_at.is_some() {
            TicketStatus::Used
        } else if self.approved_by.is_some() {
            TicketStatus::Approved
        } else if self.rejected_by.is_some() {
            TicketStatus::Rejected
        } else {
            TicketStatus::Pending
        }
    }
}

/// Replays the records citing one ticket, in seq order. The first must open
/// it (`require_approval`); then at most one approve or reject; an `allow`
/// only after an approve, for the same key, once; a `deny` only after a
/// reject; `require_approval` again only for the same key before a decision.
/// `Err` names the first record that does not fit.
pub fn chain_ticket(records: &[AuditRecord]) -> Result<ChainTicket, String> {
    let Some((open, rest)) = records.split_first() else {
        return Err("no record opened it".to_owned());
    };
    if open.decision != "require_approval" {
        return Err(format!(
            "record {} ({}) cites it before any record opened it",
            open.seq, open.decision
        ));
    }
    let mut t = ChainTicket {
        key: record_key(open),
        opened_at: parse_rfc3339(&open.time)
            .ok_or_else(|| format!("record {} has an unreadable time", open.seq))?,
        approved_by: None,
        rejected_by: None,
        used_at: None,
    };
    for r in rest {
        let decided = t.approved_by.is_some() || t.rejected_by.is_some();
        let fits = match r.decision.as_str() {
            "require_approval" => !decided && record_key(r) == t.key,
            "approve" if !decided => {
                t.approved_by = Some(r.actor.clone().unwrap_or_default());
                true
            }
            "reject" if !decided => {
                t.rejected_by = Some(r.actor.clone().unwrap_or_default());
                true
            }
            "allow" if t.approved_by.is_some() && t.used_at.is_none() && record_key(r) == t.key => {
                t.used_at = Some(r.seq);
                true
            }
            "deny" => t.rejected_by.is_some() && record_key(r) == t.key,
            _ => false,
        };
        if !fits {
            return Err(format!(
                "record {} ({}) does not follow from the ticket's earlier records",
                r.seq, r.decision
            ));
        }
    }
    Ok(t)
}

/// A grant as its chain records tell it: the grant record's scope and limits,
/// the uses the chain shows, and its revocation. `Err` names the first record
/// that does not fit.
pub fn chain_grant(id: u64, records: &[AuditRecord]) -> Result<Grant, String> {
    let Some((open, rest)) = records.split_first() else {
        return Err("no record granted it".to_owned());
    };
    if open.decision != "grant" {
        return Err(format!(
            "record {} ({}) cites it before any record granted it",
            open.seq, open.decision
        ));
    }
    let bad = |what: &str| format!("record {} (grant) has {what}", open.seq);
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
    };
    for r in rest {
        let fits = match r.decision.as_str() {
            "allow" => {
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
            "revoke" if grant.revoked_by.is_none() => {
                grant.revoked_by = Some(r.actor.clone().unwrap_or_default());
                true
            }
            _ => false,
        };
        if !fits {
            return Err(format!(
                "record {} ({}) does not follow from the grant's earlier records",
                r.seq, r.decision
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
