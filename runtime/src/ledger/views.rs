//! What an operator's screen shows of the tickets: each ticket as its chain
//! tells it (who signed, how many more, rejected, used, expired), with the
//! record that opened it.

use super::{Ledger, PolicyFacts, micros};
use crate::approvals::{self, Grant, GrantId, Ticket, TicketId, TicketStatus};
use crate::audit::AuditRecord;
use crate::store::{StoreError, Tx};

/// A ticket as the chain tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketView {
    /// The ticket's row: the event it holds (actor, capability, payload…).
    pub ticket: Ticket,
    /// Where it stands by the chain: pending, approved, rejected or used.
    pub status: TicketStatus,
    /// Pending past its expiry: it can no longer be approved.
    pub expired: bool,
    /// The distinct approvers who signed so far.
    pub approvals: Vec<String>,
    /// How many the rule needs.
    pub needed: u32,
    /// When it expires (µs since the epoch): the opening record's time
    /// plus the ticket lifetime.
    pub expires_at: i64,
    /// The chain record that opened it (its seq, hash, reason, and the
    /// payload as recorded).
    pub opened: AuditRecord,
}

impl Ledger {
    /// The newest `limit` tickets as their chains tell them. A ticket whose
    /// chain does not vouch for its row (a forged row) is left out.
    pub fn ticket_views(
        &self,
        policy: Option<&PolicyFacts>,
        limit: usize,
    ) -> Result<Vec<TicketView>, StoreError> {
        let rows: Vec<Ticket> = self.tickets()?.into_iter().take(limit).collect();
        let ttl = micros(self.inner.ticket_ttl);
        let now = self.inner.clock.now_micros();
        let mut views = Vec::with_capacity(rows.len());
        self.inner.store.transaction(&mut |tx| {
            views.clear();
            for ticket in &rows {
                if let Some(view) = view_of(tx, ticket, policy, ttl, now)? {
                    views.push(view);
                }
            }
            Ok(())
        })?;
        Ok(views)
    }

    /// One ticket as its chain tells it; `None` when there is no such
    /// ticket or its chain does not vouch for its row.
    pub fn ticket_view(
        &self,
        id: TicketId,
        policy: Option<&PolicyFacts>,
    ) -> Result<Option<TicketView>, StoreError> {
        let ttl = micros(self.inner.ticket_ttl);
        let now = self.inner.clock.now_micros();
        let mut view = None;
        self.inner.store.transaction(&mut |tx| {
            view = match tx.ticket(id.0)? {
                Some(ticket) => view_of(tx, &ticket, policy, ttl, now)?,
                None => None,
            };
            Ok(())
        })?;
        Ok(view)
    }
}

impl Ledger {
    /// Every grant as its chain tells it (scope, limits, uses, revocation
    /// and its verified signature), newest first. A grant whose chain does
    /// not vouch for its row (a forged row) is left out.
    pub fn grant_views(&self) -> Result<Vec<Grant>, StoreError> {
        let rows = self.grants()?;
        let mut views = Vec::with_capacity(rows.len());
        self.inner.store.transaction(&mut |tx| {
            views.clear();
            for row in &rows {
                let records = tx.records_citing(&GrantId(row.id).to_string())?;
                if let Ok(grant) = approvals::chain_grant(row.id, &records) {
                    views.push(grant);
                }
            }
            Ok(())
        })?;
        Ok(views)
    }
}

fn view_of(
    tx: &mut dyn Tx,
    ticket: &Ticket,
    policy: Option<&PolicyFacts>,
    ttl: i64,
    now: i64,
) -> Result<Option<TicketView>, StoreError> {
    let label = TicketId(ticket.id).to_string();
    let mut records = tx.records_citing(&label)?;
    let Some(opened) = records.first() else {
        return Ok(None);
    };
    let digest = opened.policy_digest.clone().unwrap_or_default();
    let rule = match policy {
        Some(p) if p.digest == digest => ticket.rule.as_deref().and_then(|r| p.rule(r)).cloned(),
        _ => tx
            .note(&approvals::requirements_key(&digest))?
            .and_then(|n| approvals::parse_requirements(&n))
            .and_then(|facts| {
                facts
                    .into_iter()
                    .find(|f| Some(f.id.as_ref()) == ticket.rule.as_deref())
            }),
    };
    let Ok(chain) = approvals::chain_ticket(&records, rule.as_ref()) else {
        return Ok(None);
    };
    if chain.key != ticket.event_key {
        return Ok(None);
    }
    let expires_at = chain.opened_at.saturating_add(ttl);
    let status = chain.standing();
    Ok(Some(TicketView {
        ticket: ticket.clone(),
        status,
        expired: status == TicketStatus::Pending && expires_at <= now,
        approvals: chain.approvals.clone(),
        needed: rule.as_ref().map_or(1, |r| r.approvals),
        expires_at,
        opened: records.swap_remove(0),
    }))
}
