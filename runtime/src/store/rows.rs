//! What both SQL stores do to a row once its columns are read: integers to
//! ids, a ticket's status, a grant's caps and uses, a record's kind, each
//! refused with a message naming the row when it is not what CapFence
//! writes. Each store reads the columns its own driver's way; the meaning
//! of the values is decided here, once.

use crate::approvals::{Grant, Ticket, TicketStatus};
use crate::audit::RecordKind;

use super::StoreError;

/// A seq or id as stored (SQL integers are signed).
pub(crate) fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Invalid(format!("{v} is out of range").into()))
}

/// A stored seq or id; negative is invalid data.
pub(crate) fn from_i64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Invalid(format!("negative id {v}").into()))
}

/// A record's `decision` column.
pub(crate) fn record_kind(text: &str) -> Result<RecordKind, StoreError> {
    RecordKind::parse(text).ok_or_else(|| {
        StoreError::Invalid(
            format!("audit row: {text:?} is neither a decision nor an operator action").into(),
        )
    })
}

/// A ticket row's columns, in the store's column order.
pub(crate) struct TicketColumns {
    pub id: i64,
    pub status: String,
    /// The ticket with every other field read (its id and status are set
    /// by [`finish`](Self::finish)).
    pub ticket: Ticket,
}

impl TicketColumns {
    /// The ticket, its id and status checked.
    pub(crate) fn finish(self) -> Result<Ticket, StoreError> {
        let TicketColumns {
            id,
            status,
            mut ticket,
        } = self;
        ticket.id = from_i64(id)?;
        ticket.status = TicketStatus::parse(&status).ok_or_else(|| {
            StoreError::Invalid(format!("ticket {id} has status {status:?}").into())
        })?;
        Ok(ticket)
    }
}

/// A grant row's columns, in the store's column order.
pub(crate) struct GrantColumns {
    pub id: i64,
    pub actor: String,
    pub capability: String,
    pub environment: String,
    pub granted_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub caps: String,
    pub uses: Option<i64>,
    pub revoked_by: Option<String>,
}

impl GrantColumns {
    /// The grant, its id, caps and uses checked.
    pub(crate) fn finish(self) -> Result<Grant, StoreError> {
        let id = self.id;
        let caps = crate::approvals::parse_caps(&self.caps).ok_or_else(|| {
            StoreError::Invalid(format!("grant {id} has caps {:?}", self.caps).into())
        })?;
        let uses_left = self
            .uses
            .map(|u| {
                u32::try_from(u)
                    .map_err(|_| StoreError::Invalid(format!("grant {id} has {u} uses").into()))
            })
            .transpose()?;
        Ok(Grant {
            id: from_i64(id)?,
            actor: self.actor,
            capability: self.capability,
            environment: self.environment,
            granted_by: self.granted_by,
            created_at: self.created_at,
            expires_at: self.expires_at,
            caps,
            uses_left,
            revoked_by: self.revoked_by,
            signed: None,
        })
    }
}
