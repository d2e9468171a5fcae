//! Approvals: single-use tickets bound to one exact event, and time-bounded
//! grants for (actor, capability, environment). Neither ever overrides a deny:
//! they are consulted only when the policy says `require_approval`.

use capfence_compiler::event::write_object;
use capfence_compiler::policy::{RuleFacts, Tier};
use capfence_compiler::{Decision, DecisionKind, Event};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};

use crate::audit::hex;
use crate::store::{StoreError, Tx};
use crate::verdict::Verdict;

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

fn is_field_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
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
    let mut hasher = Sha256::new();
    hasher.update("capfence-ticket-v2\n");
    for part in [
        event.actor.as_deref(),
        event.capability().as_deref(),
        event.environment.as_deref(),
        event.risk.as_deref(),
        Some(canonical_payload(event).as_str()),
        rule,
        Some(digest),
    ] {
        match part {
            Some(p) => hasher.update(format!("{}:{p}\n", p.len())),
            None => hasher.update("~\n"),
        }
    }
    hex(&hasher.finalize())
}

/// Settles a `require_approval` decision, in this order: an approved ticket
/// for this exact event (consumed: authorized); a ticket for it that an
/// operator rejected (deny); an active grant (one use taken: authorized); the
/// event's pending ticket, created if there is none (require_approval).
#[allow(clippy::too_many_arguments)]
pub(crate) fn resolve(
    tx: &mut dyn Tx,
    event: &Event,
    decision: &Decision,
    tested: &[String],
    key: &str,
    payload: &str,
    now: i64,
    ticket_ttl_micros: i64,
) -> Result<Verdict, StoreError> {
    let capability = event.capability().unwrap_or_default();
    let mut pending_ticket = None;
    if let Some(ticket) = tx.latest_ticket(key, now)? {
        let label = ticket_label(ticket.id);
        let by = ticket.decided_by.clone().unwrap_or_default();
        match ticket.status {
            TicketStatus::Approved => {
                tx.update_ticket(ticket.id, TicketStatus::Used, None)?;
                return Ok(Verdict {
                    authorized: true,
                    decision: DecisionKind::Allow,
                    reason: format!("{} (approved by {by}, ticket {label})", decision.reason),
                    rule: decision.rule.clone(),
                    approval_id: Some(label),
                });
            }
            TicketStatus::Rejected => {
                return Ok(Verdict {
                    authorized: false,
                    decision: DecisionKind::Deny,
                    reason: format!("{} (rejected by {by}, ticket {label})", decision.reason),
                    rule: decision.rule.clone(),
                    approval_id: Some(label),
                });
            }
            TicketStatus::Pending => pending_ticket = Some(label),
            TicketStatus::Used => {}
        }
    }
    if let (Some(actor), Some(environment)) = (&event.actor, &event.environment) {
        for grant in tx.grants_for(actor, &capability, environment)? {
            if grant.usable(now, event, tested) {
                let uses_left = grant.uses_left.map(|u| u.saturating_sub(1));
                tx.update_grant(grant.id, uses_left, None)?;
                let label = grant_label(grant.id);
                return Ok(Verdict {
                    authorized: true,
                    decision: DecisionKind::Allow,
                    reason: format!(
                        "{} (satisfied by grant {label} from {})",
                        decision.reason, grant.granted_by
                    ),
                    rule: decision.rule.clone(),
                    approval_id: Some(label),
                });
            }
        }
    }
    if let Some(label) = pending_ticket {
        return Ok(pending(decision, label));
    }
    let id = tx.insert_ticket(&Ticket {
        id: 0,
        event_key: key.to_owned(),
        actor: event.actor.clone(),
        capability,
        environment: event.environment.clone(),
        risk: event.risk.clone(),
        payload: payload.to_owned(),
        rule: decision.rule.clone(),
        status: TicketStatus::Pending,
        created_at: now,
        expires_at: now.saturating_add(ticket_ttl_micros),
        decided_by: None,
    })?;
    Ok(pending(decision, ticket_label(id)))
}

fn pending(decision: &Decision, label: String) -> Verdict {
    Verdict {
        authorized: false,
        decision: DecisionKind::RequireApproval,
        reason: format!("{} (waiting for approval, ticket {label})", decision.reason),
        rule: decision.rule.clone(),
        approval_id: Some(label),
    }
}
