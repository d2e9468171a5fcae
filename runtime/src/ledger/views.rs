//! What an operator's screen shows of the tickets: each ticket as its chain
//! tells it (who signed, how many more, rejected, used, expired), with the
//! record that opened it.

use super::{Ledger, PolicyFacts, micros};
use crate::approvals::{self, Ticket, TicketId, TicketStatus};
use crate::store::StoreError;

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
    /// The reason the opening decision gave (the rule, window totals).
    pub reason: String,
    /// The record that opened it.
    pub opened_seq: u64,
    /// Its hash.
    pub opened_hash: String,
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
                let label = TicketId(ticket.id).to_string();
                let records = tx.records_citing(&label)?;
                let Some(opened) = records.first() else {
                    continue;
                };
                let digest = opened.policy_digest.clone().unwrap_or_default();
                let rule = match policy {
                    Some(p) if p.digest == digest => {
                        ticket.rule.as_deref().and_then(|r| p.rule(r)).cloned()
                    }
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
                    continue;
                };
                if chain.key != ticket.event_key {
                    continue;
                }
                let expires_at = chain.opened_at.saturating_add(ttl);
                let status = chain.standing();
                views.push(TicketView {
                    ticket: ticket.clone(),
                    status,
                    expired: status == TicketStatus::Pending && expires_at <= now,
                    approvals: chain.approvals.clone(),
                    needed: rule.as_ref().map_or(1, |r| r.approvals),
                    expires_at,
                    reason: opened.reason.clone(),
                    opened_seq: opened.seq,
                    opened_hash: opened.hash.clone(),
                });
            }
            Ok(())
        })?;
        Ok(views)
    }
}
