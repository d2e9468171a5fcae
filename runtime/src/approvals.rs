//! Approvals: single-use tickets bound to one exact event, and time-bounded
//! grants for (actor, capability, environment). Neither ever overrides a deny:
//! they are consulted only when the policy says `require_approval`.

use capfence_compiler::event::write_object;
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
    /// SHA-256 of the canonical (actor, capability, environment, payload).
    pub event_key: String,
    /// The event's actor.
    pub actor: Option<String>,
    /// The event's capability.
    pub capability: String,
    /// The event's environment.
    pub environment: Option<String>,
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
/// environment) until it expires, optionally capped in amount and uses.
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
    /// The largest `amount` it covers, if capped.
    pub max_amount: Option<Decimal>,
    /// Uses left, if capped.
    pub uses_left: Option<u32>,
    /// The operator who revoked it.
    pub revoked_by: Option<String>,
}

/// Limits on a grant beyond its duration.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GrantLimits {
    /// The largest payload `amount` the grant covers; events without a numeric
    /// amount are not covered.
    pub max_amount: Option<Decimal>,
    /// How many decisions it may satisfy.
    pub uses: Option<u32>,
}

impl Grant {
    /// Whether the grant covers an event with this amount now.
    pub fn usable(&self, now: i64, amount: Option<Decimal>) -> bool {
        self.revoked_by.is_none()
            && self.expires_at > now
            && self.uses_left != Some(0)
            && self
                .max_amount
                .is_none_or(|max| amount.is_some_and(|a| a <= max))
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

/// The key that binds a ticket to one exact event.
pub fn event_key(event: &Event) -> String {
    let mut hasher = Sha256::new();
    for part in [
        event.actor.as_deref(),
        event.capability().as_deref(),
        event.environment.as_deref(),
        Some(canonical_payload(event).as_str()),
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
pub(crate) fn resolve(
    tx: &mut dyn Tx,
    event: &Event,
    decision: &Decision,
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
        let amount = event.payload.get("amount").and_then(|v| v.as_number());
        for grant in tx.grants_for(actor, &capability, environment)? {
            if grant.usable(now, amount) {
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
