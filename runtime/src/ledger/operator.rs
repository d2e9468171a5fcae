//! Operator actions: approve, reject, grant, revoke. Each is one transaction
//! holding the change and its chain record; tickets and grants are judged by
//! what their chain records say, never by their rows alone.

use std::time::Duration;

use capfence_compiler::token;

use super::{Ledger, append, micros};
use crate::approvals::{self, Grant, GrantLimits, Ticket, TicketStatus, grant_label, ticket_label};
use crate::audit::AuditRecord;
use crate::clock::rfc3339;
use crate::store::{StoreError, Tx};

/// An operator action that could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// No ticket or grant with that id.
    #[error("no {0} with id {1}")]
    NotFound(&'static str, String),
    /// The ticket is not pending.
    #[error("ticket {0} is {1}, not pending")]
    NotPending(String, &'static str),
    /// The ticket has expired.
    #[error("ticket {0} has expired")]
    Expired(String),
    /// The grant was already revoked.
    #[error("grant {0} was already revoked by {1}")]
    AlreadyRevoked(String, String),
    /// A malformed argument.
    #[error("{0}")]
    Invalid(String),
    /// The store failed; nothing was done.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Ledger {
    /// Records `record` (as an operator action) after `action` succeeds, in one
    /// transaction.
    fn operator<T>(
        &self,
        action: impl FnMut(&mut dyn Tx, i64) -> Result<(T, AuditRecord), OperatorError>,
    ) -> Result<T, OperatorError> {
        let mut action = action;
        let mut outcome = None;
        let mut refused = None;
        let now = self.inner.clock.now_micros();
        self.inner.store.transaction(&mut |tx| {
            match action(tx, now) {
                Ok((value, mut record)) => {
                    record.time = rfc3339(now);
                    append(tx, record)?;
                    outcome = Some(value);
                }
                Err(OperatorError::Store(e)) => return Err(e),
                Err(e) => refused = Some(e),
            }
            Ok(())
        })?;
        match (outcome, refused) {
            (Some(value), _) => Ok(value),
            (None, Some(e)) => Err(e),
            (None, None) => Err(OperatorError::Invalid(
                "operator action did nothing".to_owned(),
            )),
        }
    }

    /// Approves a pending ticket; the next identical event consumes it.
    pub fn approve(&self, ticket: &str, by: &str) -> Result<Ticket, OperatorError> {
        self.decide_ticket(ticket, by, TicketStatus::Approved)
    }

    /// Rejects a pending ticket; the identical event is then denied until the ticket expires.
    pub fn reject(&self, ticket: &str, by: &str) -> Result<Ticket, OperatorError> {
        self.decide_ticket(ticket, by, TicketStatus::Rejected)
    }

    fn decide_ticket(
        &self,
        ticket: &str,
        by: &str,
        status: TicketStatus,
    ) -> Result<Ticket, OperatorError> {
        let by = operator_name(by)?;
        let id = approvals::parse_label(ticket, 'T')
            .ok_or_else(|| OperatorError::NotFound("ticket", ticket.to_owned()))?;
        let verb = if status == TicketStatus::Approved {
            "approve"
        } else {
            "reject"
        };
        let ttl = micros(self.inner.ticket_ttl);
        self.operator(|tx, now| {
            let mut t = tx
                .ticket(id)?
                .ok_or_else(|| OperatorError::NotFound("ticket", ticket_label(id)))?;
            // The chain, not the row, says where the ticket stands.
            let chain =
                approvals::chain_ticket(&tx.records_citing(&ticket_label(id))?).map_err(|why| {
                    OperatorError::Invalid(format!(
                        "ticket {} is not vouched for by the audit chain: {why}",
                        ticket_label(id)
                    ))
                })?;
            if chain.key != t.event_key {
                return Err(OperatorError::Invalid(format!(
                    "ticket {}'s row does not match the event its chain records opened it for",
                    ticket_label(id)
                )));
            }
            let standing = chain.standing();
            if standing != TicketStatus::Pending {
                return Err(OperatorError::NotPending(
                    ticket_label(id),
                    standing.as_str(),
                ));
            }
            if chain.opened_at.saturating_add(ttl) <= now {
                return Err(OperatorError::Expired(ticket_label(id)));
            }
            tx.update_ticket(id, status, Some(&by))?;
            t.status = status;
            t.decided_by = Some(by.clone());
            let record = operator_record(
                &by,
                verb,
                Some(t.environment.clone().unwrap_or_default()),
                t.payload.clone(),
                t.rule.clone(),
                format!(
                    "ticket {} for {} by {} {}d by {by}",
                    ticket_label(id),
                    t.capability,
                    t.actor.as_deref().unwrap_or("?"),
                    verb
                ),
                ticket_label(id),
            );
            Ok((t, record))
        })
    }

    /// Grants `actor` passage through `require_approval` for `capability` in
    /// `environment` for `duration`, within `limits`. Never overrides deny.
    pub fn grant(
        &self,
        actor: &str,
        capability: &str,
        environment: &str,
        granted_by: &str,
        duration: Duration,
        limits: GrantLimits,
    ) -> Result<Grant, OperatorError> {
        let by = operator_name(granted_by)?;
        let capability = capability.to_ascii_lowercase();
        let environment = environment.to_ascii_lowercase();
        let segments = capability
            .split_once('.')
            .is_some_and(|(r, a)| token::is_segment(r) && token::is_segment(a));
        if !token::is_token(actor) || !token::is_token(&environment) || !segments {
            return Err(OperatorError::Invalid(format!(
                "a grant needs an actor and an environment that are plain tokens and a \
                 capability `resource.action` (got {actor:?}, {capability:?}, {environment:?})"
            )));
        }
        if duration.is_zero() {
            return Err(OperatorError::Invalid(
                "a grant needs a positive duration".to_owned(),
            ));
        }
        self.operator(|tx, now| {
            let mut grant = Grant {
                id: 0,
                actor: actor.to_owned(),
                capability: capability.clone(),
                environment: environment.clone(),
                granted_by: by.clone(),
                created_at: now,
                expires_at: now.saturating_add(micros(duration)),
                caps: limits.caps.clone(),
                uses_left: limits.uses,
                revoked_by: None,
            };
            grant.id = tx.insert_grant(&grant)?;
            let payload = serde_json::json!({
                "actor": grant.actor,
                "capability": grant.capability,
                "environment": grant.environment,
                "expires_at": rfc3339(grant.expires_at),
                "caps": approvals::caps_text(&grant.caps),
                "uses": grant.uses_left,
            });
            let record = operator_record(
                &by,
                "grant",
                Some(environment.clone()),
                payload.to_string(),
                None,
                format!(
                    "grant {} of {capability}.{environment} to {actor} by {by} until {}",
                    grant_label(grant.id),
                    rfc3339(grant.expires_at)
                ),
                grant_label(grant.id),
            );
            Ok((grant, record))
        })
    }

    /// Revokes a grant.
    pub fn revoke(&self, grant: &str, by: &str) -> Result<Grant, OperatorError> {
        let by = operator_name(by)?;
        let id = approvals::parse_label(grant, 'G')
            .ok_or_else(|| OperatorError::NotFound("grant", grant.to_owned()))?;
        self.operator(|tx, _now| {
            if tx.grant(id)?.is_none() {
                return Err(OperatorError::NotFound("grant", grant_label(id)));
            }
            let mut g = approvals::chain_grant(id, &tx.records_citing(&grant_label(id))?).map_err(
                |why| {
                    OperatorError::Invalid(format!(
                        "grant {} is not vouched for by the audit chain: {why}",
                        grant_label(id)
                    ))
                },
            )?;
            if let Some(previous) = &g.revoked_by {
                return Err(OperatorError::AlreadyRevoked(
                    grant_label(id),
                    previous.clone(),
                ));
            }
            tx.update_grant(id, g.uses_left, Some(&by))?;
            g.revoked_by = Some(by.clone());
            let record = operator_record(
                &by,
                "revoke",
                Some(g.environment.clone()),
                "{}".to_owned(),
                None,
                format!(
                    "grant {} of {}.{} to {} revoked by {by}",
                    grant_label(id),
                    g.capability,
                    g.environment,
                    g.actor
                ),
                grant_label(id),
            );
            Ok((g, record))
        })
    }
}

fn operator_name(by: &str) -> Result<String, OperatorError> {
    let by = by.trim();
    if by.is_empty() {
        return Err(OperatorError::Invalid(
            "an operator action needs the operator's name (--by)".to_owned(),
        ));
    }
    Ok(by.to_owned())
}

fn operator_record(
    by: &str,
    verb: &str,
    environment: Option<String>,
    payload: String,
    rule: Option<String>,
    reason: String,
    approval_id: String,
) -> AuditRecord {
    AuditRecord {
        seq: 0,
        time: String::new(),
        actor: Some(by.to_owned()),
        capability: Some(format!("capfence.approvals.{verb}")),
        environment,
        risk: None,
        payload,
        decision: verb.to_owned(),
        rule,
        reason,
        approval_id: Some(approval_id),
        policy_digest: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}
