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

/// A reconciliation, for a terminal: each list with its entries, then a
/// summary line (rail and ledger text escaped).
pub fn reconciliation(report: &capfence::reconcile::Report) -> String {
    use std::fmt::Write as _;
    let e = |text: &str| escape_for_terminal(text).into_owned();
    let call = |c: &capfence::reconcile::Executed| {
        format!(
            "record {} (outcome record {}): reference {}, amount {}, to {}",
            c.seq,
            c.outcome_seq,
            c.reference.as_deref().map_or_else(|| "none".to_owned(), e),
            c.amount
                .map_or("unknown".to_owned(), |a| a.normalize().to_string()),
            c.destination
                .as_deref()
                .map_or_else(|| "unknown".to_owned(), e),
        )
    };
    let movement = |m: &capfence::reconcile::RailRow| {
        format!(
            "line {}: reference {}, amount {}, to {}, at {}",
            m.line,
            e(&m.reference),
            m.amount.normalize(),
            e(&m.destination),
            e(&m.time)
        )
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "movements on the rail with no executed call: {}",
        report.unauthorized.len()
    );
    for m in &report.unauthorized {
        let _ = writeln!(out, "  {}", movement(m));
    }
    let _ = writeln!(
        out,
        "executed calls with no movement on the rail: {}",
        report.missing.len()
    );
    for c in &report.missing {
        let _ = writeln!(out, "  {}", call(c));
    }
    let _ = writeln!(
        out,
        "movements that differ from their call: {}",
        report.mismatched.len()
    );
    for m in &report.mismatched {
        let _ = writeln!(
            out,
            "  {} differs: {}; {}",
            m.differs.join(" and "),
            movement(&m.movement),
            call(&m.call)
        );
    }
    let verdict = if report.is_clean() { "ok" } else { "FOUND" };
    let _ = writeln!(
        out,
        "{verdict}: {} movements, {} executed calls, {} matched",
        report.rail_rows, report.executed, report.matched
    );
    out
}
