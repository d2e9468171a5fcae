//! A store in process memory: for tests and benchmarks, and for hosts that
//! ship the chain elsewhere. Nothing survives the process.

use std::collections::HashMap;
use std::sync::Mutex;

use super::{Store, StoreError, Tx};
use crate::approvals::{Grant, Ticket, TicketStatus};
use crate::audit::{AuditRecord, GENESIS};

#[derive(Debug, Default, Clone)]
struct State {
    records: Vec<AuditRecord>,
    /// Where the committed records that cite each approval id are, in
    /// `records` (kept for the committed state only, not for drafts).
    citing: HashMap<String, Vec<usize>>,
    tickets: Vec<Ticket>,
    grants: Vec<Grant>,
    notes: std::collections::BTreeMap<String, String>,
    windows: Vec<super::WindowRow>,
}

/// The in-memory store. Transactions are serialized by a mutex and applied
/// to a copy of the approval state, so a failed transaction keeps nothing.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<State>,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }
}

struct MemoryTx<'s> {
    state: &'s mut State,
    /// The records committed before this transaction.
    committed: &'s [AuditRecord],
    /// Where they cite each approval id.
    citing: &'s HashMap<String, Vec<usize>>,
    /// How many records of `state` repeat the committed head.
    repeated: usize,
}

fn id_of(len: usize) -> u64 {
    u64::try_from(len).unwrap_or(u64::MAX)
}

impl Tx for MemoryTx<'_> {
    fn head(&mut self) -> Result<(u64, String), StoreError> {
        Ok(self
            .state
            .records
            .last()
            .map_or_else(|| (0, GENESIS.to_owned()), |r| (r.seq, r.hash.clone())))
    }

    fn append(&mut self, record: &AuditRecord) -> Result<(), StoreError> {
        self.state.records.push(record.clone());
        Ok(())
    }

    fn records_citing(&mut self, approval_id: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let mut first = true;
        let committed = self
            .citing
            .get(approval_id)
            .into_iter()
            .flatten()
            .filter_map(|&at| self.committed.get(at));
        let drafted = self
            .state
            .records
            .iter()
            .skip(self.repeated)
            .filter(|r| r.approval_id.as_deref() == Some(approval_id));
        Ok(committed
            .chain(drafted)
            .filter(|r| {
                std::mem::take(&mut first)
                    || r.decision != crate::audit::RecordKind::REQUIRE_APPROVAL
            })
            .cloned()
            .collect())
    }

    fn record_at(&mut self, seq: u64) -> Result<Option<AuditRecord>, StoreError> {
        // The chain is in seq order: a binary search over the committed part.
        if let Ok(at) = self.committed.binary_search_by_key(&seq, |r| r.seq) {
            return Ok(self.committed.get(at).cloned());
        }
        Ok(self
            .state
            .records
            .iter()
            .skip(self.repeated)
            .find(|r| r.seq == seq)
            .cloned())
    }

    fn latest_ticket(&mut self, event_key: &str, now: i64) -> Result<Option<Ticket>, StoreError> {
        Ok(self
            .state
            .tickets
            .iter()
            .rev()
            .find(|t| {
                t.event_key == event_key && t.status != TicketStatus::Used && t.expires_at > now
            })
            .cloned())
    }

    fn ticket(&mut self, id: u64) -> Result<Option<Ticket>, StoreError> {
        Ok(self.state.tickets.iter().find(|t| t.id == id).cloned())
    }

    fn insert_ticket(&mut self, ticket: &Ticket) -> Result<u64, StoreError> {
        let id = id_of(self.state.tickets.len()) + 1;
        self.state.tickets.push(Ticket {
            id,
            ..ticket.clone()
        });
        Ok(id)
    }

    fn update_ticket(
        &mut self,
        id: u64,
        status: TicketStatus,
        decided_by: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(t) = self.state.tickets.iter_mut().find(|t| t.id == id) {
            t.status = status;
            if let Some(by) = decided_by {
                t.decided_by = Some(by.to_owned());
            }
        }
        Ok(())
    }

    fn grants_for(
        &mut self,
        actor: &str,
        capability: &str,
        environment: &str,
    ) -> Result<Vec<Grant>, StoreError> {
        Ok(self
            .state
            .grants
            .iter()
            .filter(|g| {
                g.actor == actor && g.capability == capability && g.environment == environment
            })
            .cloned()
            .collect())
    }

    fn grant(&mut self, id: u64) -> Result<Option<Grant>, StoreError> {
        Ok(self.state.grants.iter().find(|g| g.id == id).cloned())
    }

    fn insert_grant(&mut self, grant: &Grant) -> Result<u64, StoreError> {
        let id = id_of(self.state.grants.len()) + 1;
        self.state.grants.push(Grant {
            id,
            signed: None,
            ..grant.clone()
        });
        Ok(id)
    }

    fn update_grant(
        &mut self,
        id: u64,
        uses_left: Option<u32>,
        revoked_by: Option<&str>,
    ) -> Result<(), StoreError> {
        if let Some(g) = self.state.grants.iter_mut().find(|g| g.id == id) {
            g.uses_left = uses_left;
            if let Some(by) = revoked_by {
                g.revoked_by = Some(by.to_owned());
            }
        }
        Ok(())
    }

    fn window_total(
        &mut self,
        spec: &str,
        group: &str,
        after: i64,
    ) -> Result<super::WindowTotal, StoreError> {
        let mut counted = self
            .state
            .windows
            .iter()
            .filter(|w| w.spec == spec && w.group == group && w.at > after);
        let oldest = counted.clone().map(|w| w.at).min();
        let total = counted
            .try_fold(rust_decimal::Decimal::ZERO, |total, w| {
                total.checked_add(w.value)
            })
            .ok_or_else(|| {
                StoreError::Invalid(format!("window total of {spec} overflows").into())
            })?;
        Ok(super::WindowTotal { total, oldest })
    }

    fn adjust_window(
        &mut self,
        spec: &str,
        group: &str,
        at: i64,
        old: rust_decimal::Decimal,
        new: rust_decimal::Decimal,
    ) -> Result<bool, StoreError> {
        let overflow = || StoreError::Invalid(format!("window total of {spec} overflows").into());
        let delta = new.checked_sub(old).ok_or_else(overflow)?;
        let mut found = false;
        for w in self
            .state
            .windows
            .iter_mut()
            .filter(|w| w.spec == spec && w.group == group)
        {
            if !found && w.at >= at && w.value == old {
                found = true;
                w.value = new;
            }
            if found {
                w.running = w.running.checked_add(delta).ok_or_else(overflow)?;
            }
        }
        Ok(found)
    }

    fn add_to_window(
        &mut self,
        spec: &str,
        group: &str,
        at: i64,
        value: rust_decimal::Decimal,
    ) -> Result<(), StoreError> {
        let last = self
            .state
            .windows
            .iter()
            .rev()
            .find(|w| w.spec == spec && w.group == group);
        let (at, running) = match last {
            Some(w) => (at.max(w.at), w.running.checked_add(value)),
            None => (at, Some(value)),
        };
        let running = running.ok_or_else(|| {
            StoreError::Invalid(format!("window total of {spec} overflows").into())
        })?;
        self.state.windows.push(super::WindowRow {
            spec: spec.to_owned(),
            group: group.to_owned(),
            at,
            value,
            running,
        });
        Ok(())
    }

    fn note(&mut self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.state.notes.get(key).cloned())
    }

    fn set_note(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.state.notes.insert(key.to_owned(), value.to_owned());
        Ok(())
    }

    fn has_note_with_prefix(&mut self, prefix: &str) -> Result<bool, StoreError> {
        Ok(self.state.notes.keys().any(|k| k.starts_with(prefix)))
    }
}

impl crate::store::Writer for MemoryStore {
    fn transaction(
        &self,
        work: &mut dyn FnMut(&mut dyn Tx) -> Result<(), StoreError>,
    ) -> Result<(), StoreError> {
        let mut state = self
            .state
            .lock()
            .map_err(|_| StoreError::Io("memory store lock poisoned".to_owned().into()))?;
        let mut draft = State {
            records: Vec::new(),
            citing: HashMap::new(),
            tickets: state.tickets.clone(),
            grants: state.grants.clone(),
            notes: state.notes.clone(),
            windows: state.windows.clone(),
        };
        // Records are append-only: work on the tail and keep the head visible.
        let head = state.records.last().cloned();
        draft.records.extend(head);
        let kept = draft.records.len();
        work(&mut MemoryTx {
            state: &mut draft,
            committed: &state.records,
            citing: &state.citing,
            repeated: kept,
        })?;
        for record in draft.records.into_iter().skip(kept) {
            if let Some(id) = &record.approval_id {
                let at = state.records.len();
                state.citing.entry(id.clone()).or_default().push(at);
            }
            state.records.push(record);
        }
        state.tickets = draft.tickets;
        state.grants = draft.grants;
        state.notes = draft.notes;
        state.windows = draft.windows;
        Ok(())
    }
}

impl Store for MemoryStore {
    fn scan_after(
        &self,
        after: u64,
        visit: &mut dyn FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError> {
        let records = self
            .state
            .lock()
            .map_err(|_| StoreError::Io("memory store lock poisoned".to_owned().into()))?
            .records
            .clone();
        for record in records.into_iter().filter(|r| r.seq > after) {
            if !visit(record) {
                break;
            }
        }
        Ok(())
    }

    fn tickets(&self) -> Result<Vec<Ticket>, StoreError> {
        let state = self
            .state
            .lock()
            .map_err(|_| StoreError::Io("poisoned".to_owned().into()))?;
        Ok(state.tickets.iter().rev().cloned().collect())
    }

    fn rows(&self) -> Result<super::Rows, StoreError> {
        let state = self
            .state
            .lock()
            .map_err(|_| StoreError::Io("memory store lock poisoned".to_owned().into()))?;
        let mut heads: Vec<(String, String, u64, rust_decimal::Decimal)> = Vec::new();
        for w in &state.windows {
            match heads.iter_mut().find(|h| h.0 == w.spec && h.1 == w.group) {
                Some(h) => {
                    h.2 += 1;
                    h.3 = w.running;
                }
                None => heads.push((w.spec.clone(), w.group.clone(), 1, w.running)),
            }
        }
        Ok(super::Rows {
            head: state.records.last().map_or(0, |r| r.seq),
            tickets: state.tickets.clone(),
            grants: state.grants.clone(),
            windows: state.windows.clone(),
            window_heads: heads,
        })
    }

    fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        let state = self
            .state
            .lock()
            .map_err(|_| StoreError::Io("poisoned".to_owned().into()))?;
        Ok(state.grants.iter().rev().cloned().collect())
    }
}
