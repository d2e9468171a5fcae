//! Human output: one line per ticket, grant, record or operator action.
//! Every line goes through the escaping print macros (or
//! `escape_for_terminal`), so no value from the ledger reaches the terminal
//! as a control character.

use capfence::approvals::{Grant, GrantId, Ticket, TicketId};
use capfence::audit::AuditRecord;
use capfence::clock::rfc3339;
use capfence::ledger::TicketOutcome;
use capfence_compiler::token::escape_for_terminal;

/// A ticket in `approvals list`.
pub fn ticket_line(t: &Ticket) -> String {
    format!(
        "  {:<6} {:<9} {:<16} {:<20} {:<11} risk {:<8} rule {:<20} {} expires {}{}",
        TicketId(t.id).to_string(),
        t.status.as_str(),
        t.actor.as_deref().unwrap_or("-"),
        t.capability,
        t.environment.as_deref().unwrap_or("-"),
        t.risk.as_deref().unwrap_or("-"),
        t.rule.as_deref().unwrap_or("-"),
        t.payload,
        rfc3339(t.expires_at),
        t.decided_by
            .as_ref()
            .map(|b| format!(" by {b}"))
            .unwrap_or_default()
    )
}

/// A grant in `approvals list`.
pub fn grant_line(g: &Grant) -> String {
    format!(
        "  {:<6} {:<16} {}.{} by {} until {}{}{}{}",
        GrantId(g.id).to_string(),
        g.actor,
        g.capability,
        g.environment,
        g.granted_by,
        rfc3339(g.expires_at),
        if g.caps.is_empty() {
            String::new()
        } else {
            format!(" max {}", capfence::approvals::caps_text(&g.caps))
        },
        g.uses_left
            .map(|u| format!(" uses {u}"))
            .unwrap_or_default(),
        g.revoked_by
            .as_ref()
            .map(|b| format!(" REVOKED by {b}"))
            .unwrap_or_default()
    )
}

/// A record in `audit log` (text form), escaped for the terminal.
pub fn record_line(r: &AuditRecord) -> String {
    escape_for_terminal(&format!(
        "{:>6} {} {:<16} {:<28} {:<11} {:<16} {} {}",
        r.seq,
        r.time,
        r.decision,
        r.capability.as_deref().unwrap_or("-"),
        r.environment.as_deref().unwrap_or("-"),
        r.actor.as_deref().unwrap_or("-"),
        r.approval_id.as_deref().unwrap_or("-"),
        r.reason
    ))
    .into_owned()
}

/// What `approvals approve|reject` did.
pub fn ticket_outcome(outcome: &TicketOutcome, approve: bool) -> String {
    let t = &outcome.ticket;
    let id = TicketId(t.id).to_string();
    let what = format!(
        "{} {} by {}",
        t.capability,
        t.payload,
        t.actor.as_deref().unwrap_or("?")
    );
    if !approve {
        let by = t.decided_by.clone().unwrap_or_default();
        format!("rejected {id} ({what}) by {by}")
    } else if t.status == capfence::TicketStatus::Approved {
        format!("approved {id} ({what}) by {}", outcome.approvals.join(", "))
    } else {
        let by = outcome
            .approvals
            .last()
            .cloned()
            .or_else(|| t.decided_by.clone())
            .unwrap_or_default();
        format!(
            "recorded {by}'s approval of {id} ({what}): {} of {} approvals, waiting for more",
            outcome.approvals.len(),
            outcome.needed
        )
    }
}
