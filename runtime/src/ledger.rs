//! The ledger: the audit chain and the approval state behind a [`Store`],
//! with group commit for decisions and one transaction per operator action.
//!
//! Group commit: concurrent `settle` calls queue their decisions; one caller
//! at a time becomes the leader, takes the whole queue and settles it in one
//! durable transaction, then hands every caller its verdict. No verdict is
//! handed out before the transaction holding its record has committed; if the
//! transaction fails, every verdict in it is a deny naming the fault.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use capfence_compiler::token;
use capfence_compiler::{Decision, DecisionKind, Event};

use crate::approvals::{
    self, Grant, GrantLimits, Ticket, TicketStatus, canonical_payload, grant_label, ticket_label,
};
use crate::audit::{AuditRecord, ChainFault, Verifier};
use crate::clock::{SharedClock, rfc3339};
use crate::store::{Store, StoreError, Tx};
use crate::verdict::Verdict;

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

/// A failure to verify the chain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The chain is broken.
    #[error(transparent)]
    Chain(#[from] ChainFault),
    /// The chain is intact, but the approvals do not replay: a record that
    /// does not follow from its ticket's or grant's earlier records, or a
    /// ticket or grant row the chain does not vouch for.
    #[error("{0}")]
    Approval(String),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A decision waiting to be settled, with everything that does not need the
/// transaction computed by its own thread beforehand.
struct Job {
    event: Event,
    decision: Decision,
    digest: String,
    capability: Option<String>,
    payload: String,
    /// For `require_approval`: the key binding tickets to this exact event.
    event_key: Option<String>,
    /// For `require_approval`: the fields the deciding rule compares as numbers.
    tested: Vec<String>,
}

/// A caller's place in the group commit.
enum Turn {
    /// Its job is queued or being committed.
    Wait,
    /// It is the next leader: its job heads the queue.
    Lead,
    /// Its job was committed (or failed).
    Done(Result<Verdict, StoreError>),
}

struct Waiter {
    turn: Mutex<Turn>,
    wake: Condvar,
}

impl Waiter {
    fn set(&self, turn: Turn) {
        if let Ok(mut t) = self.turn.lock() {
            *t = turn;
        }
        self.wake.notify_one();
    }
}

#[derive(Default)]
struct Queue {
    pending: Vec<(Job, Arc<Waiter>)>,
    /// Whether a leader is gathering or committing.
    leader: bool,
    /// The size of the last batch: how many callers were recently active.
    last_batch: usize,
}

/// How long a leader waits for the callers of the last batch to come back
/// before it commits what it has.
const GATHER: Duration = Duration::from_micros(200);

struct Inner {
    store: Arc<dyn Store>,
    clock: SharedClock,
    ticket_ttl: Duration,
    queue: Mutex<Queue>,
    /// The gathering leader waits here for more jobs.
    gather: Condvar,
}

/// The audit chain and approval state; a cheap, cloneable handle.
#[derive(Clone)]
pub struct Ledger {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

fn micros(duration: Duration) -> i64 {
    i64::try_from(duration.as_micros()).unwrap_or(i64::MAX)
}

impl Ledger {
    /// A ledger over `store`.
    pub fn new(store: Arc<dyn Store>, clock: SharedClock, ticket_ttl: Duration) -> Ledger {
        Ledger {
            inner: Arc::new(Inner {
                store,
                clock,
                ticket_ttl,
                queue: Mutex::new(Queue::default()),
                gather: Condvar::new(),
            }),
        }
    }

    /// Settles a decision (approvals for `require_approval`) and records it;
    /// returns only when the record is durable, or the fault that kept it
    /// from being written (then nothing of the decision was kept).
    pub(crate) fn settle(
        &self,
        event: Event,
        decision: Decision,
        digest: &str,
        tested: Vec<String>,
    ) -> Result<Verdict, StoreError> {
        let poisoned = || StoreError::Io("audit queue lock poisoned".to_owned());
        let event_key = (decision.kind == DecisionKind::RequireApproval)
            .then(|| approvals::event_key(&event, decision.rule.as_deref(), digest));
        let job = Job {
            capability: event.capability(),
            payload: canonical_payload(&event),
            event_key,
            tested,
            event,
            decision,
            digest: digest.to_owned(),
        };
        let me = Arc::new(Waiter {
            turn: Mutex::new(Turn::Wait),
            wake: Condvar::new(),
        });
        {
            let mut queue = self.inner.queue.lock().map_err(|_| poisoned())?;
            queue.pending.push((job, Arc::clone(&me)));
            if queue.leader {
                self.inner.gather.notify_one();
            } else {
                queue.leader = true;
                drop(queue);
                return self.lead(&me);
            }
        }
        let mut turn = me.turn.lock().map_err(|_| poisoned())?;
        while matches!(*turn, Turn::Wait) {
            turn = me.wake.wait(turn).map_err(|_| poisoned())?;
        }
        match std::mem::replace(&mut *turn, Turn::Wait) {
            Turn::Done(result) => result,
            _ => {
                drop(turn);
                self.lead(&me)
            }
        }
    }

    /// Leads one group commit: gathers jobs, commits them in one transaction,
    /// hands out the verdicts, and passes leadership to the next queued job.
    fn lead(&self, me: &Arc<Waiter>) -> Result<Verdict, StoreError> {
        let poisoned = || StoreError::Io("audit queue lock poisoned".to_owned());
        let mut queue = self.inner.queue.lock().map_err(|_| poisoned())?;
        // Gather: wait briefly until as many callers as last time have
        // submitted, so one fsync serves them all. Alone, there is no wait.
        let deadline = std::time::Instant::now() + GATHER;
        while queue.pending.len() < queue.last_batch {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                break;
            }
            queue = self
                .inner
                .gather
                .wait_timeout(queue, left)
                .map_err(|_| poisoned())?
                .0;
        }
        let batch = std::mem::take(&mut queue.pending);
        queue.last_batch = batch.len();
        drop(queue);

        let jobs: Vec<&Job> = batch.iter().map(|(job, _)| job).collect();
        let results = self.commit_batch(&jobs);
        let mut mine = Err(StoreError::Invalid(
            "the leader's job was not in its batch".to_owned(),
        ));
        for ((_, waiter), result) in batch.iter().zip(results) {
            if Arc::ptr_eq(waiter, me) {
                mine = result;
            } else {
                waiter.set(Turn::Done(result));
            }
        }
        let mut queue = self.inner.queue.lock().map_err(|_| poisoned())?;
        match queue.pending.first() {
            Some((_, next)) => next.set(Turn::Lead),
            None => queue.leader = false,
        }
        mine
    }

    fn commit_batch(&self, batch: &[&Job]) -> Vec<Result<Verdict, StoreError>> {
        let mut verdicts = Vec::with_capacity(batch.len());
        let ttl = micros(self.inner.ticket_ttl);
        let result = self.inner.store.transaction(&mut |tx| {
            verdicts.clear();
            for job in batch {
                let now = self.inner.clock.now_micros();
                let verdict = match job.decision.kind {
                    DecisionKind::RequireApproval => approvals::resolve(
                        tx,
                        &job.event,
                        &job.decision,
                        &job.tested,
                        job.event_key.as_deref().unwrap_or_default(),
                        &job.payload,
                        now,
                        ttl,
                    )?,
                    kind => Verdict {
                        authorized: kind == DecisionKind::Allow,
                        decision: kind,
                        reason: job.decision.reason.clone(),
                        rule: job.decision.rule.clone(),
                        approval_id: None,
                    },
                };
                let record = AuditRecord {
                    seq: 0,
                    time: rfc3339(now),
                    actor: job.event.actor.clone(),
                    capability: job.capability.clone(),
                    environment: job.event.environment.clone(),
                    risk: job.event.risk.clone(),
                    payload: job.payload.clone(),
                    decision: verdict.decision.as_str().to_owned(),
                    rule: verdict.rule.clone(),
                    reason: verdict.reason.clone(),
                    approval_id: verdict.approval_id.clone(),
                    policy_digest: Some(job.digest.clone()),
                    prev_hash: String::new(),
                    hash: String::new(),
                };
                append(tx, record)?;
                verdicts.push(verdict);
            }
            Ok(())
        });
        match result {
            Ok(()) if verdicts.len() == batch.len() => verdicts.into_iter().map(Ok).collect(),
            Ok(()) => batch
                .iter()
                .map(|_| Err(StoreError::Invalid("verdict count mismatch".to_owned())))
                .collect(),
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
        }
    }

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
            let standing = if chain.used_at.is_some() {
                Some(TicketStatus::Used)
            } else if chain.approved_by.is_some() {
                Some(TicketStatus::Approved)
            } else if chain.rejected_by.is_some() {
                Some(TicketStatus::Rejected)
            } else {
                None
            };
            if let Some(standing) = standing {
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

    /// Every ticket, newest first.
    pub fn tickets(&self) -> Result<Vec<Ticket>, StoreError> {
        self.inner.store.tickets()
    }

    /// Every grant, newest first.
    pub fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.inner.store.grants()
    }

    /// Re-computes the whole chain; with `head`, also requires that hash to be
    /// in it (detects a truncated tail). Returns the last (seq, hash).
    ///
    /// Reading and hashing run on two threads: this one copies rows out of the
    /// store in chunks, a second one re-encodes, hashes and links them.
    pub fn verify(&self, head: Option<&str>) -> Result<(u64, String), VerifyError> {
        let verifier = head.map_or_else(Verifier::default, Verifier::with_head);
        let stop = std::sync::atomic::AtomicBool::new(false);
        let (scanned, checked) = std::thread::scope(|scope| {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<Chunk>(4);
            let stop = &stop;
            let checker = scope.spawn(move || {
                let mut verifier = verifier;
                let mut cited = Cited::default();
                for chunk in receiver {
                    for record in &chunk.records {
                        let view = chunk.view(record);
                        if let Err(fault) = verifier.check_view(&view) {
                            stop.store(true, std::sync::atomic::Ordering::Relaxed);
                            return Err(fault);
                        }
                        if let Some(id) = view.approval_id {
                            cited.push(id, owned(&view));
                        }
                    }
                }
                Ok((verifier, cited))
            });
            let mut chunk = Chunk::default();
            let scanned = self.inner.store.scan_views(&mut |view| {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return false;
                }
                chunk.push(view);
                if chunk.records.len() >= Chunk::RECORDS {
                    return sender.send(std::mem::take(&mut chunk)).is_ok();
                }
                true
            });
            if !chunk.records.is_empty() {
                let _ = sender.send(chunk);
            }
            drop(sender);
            (scanned, checker.join())
        });
        let (verifier, cited) = checked
            .map_err(|_| StoreError::Invalid("the verifying thread stopped".to_owned()))??;
        scanned?;
        let head = verifier.finish()?;
        self.replay_approvals(&cited)?;
        Ok(head)
    }

    /// Replays approval semantics over the records that cite a ticket or a
    /// grant, then holds every ticket and grant row to what the chain says.
    fn replay_approvals(&self, cited: &Cited) -> Result<(), VerifyError> {
        let fault = |text: String| Err(VerifyError::Approval(text));
        let mut tickets = std::collections::HashMap::new();
        let mut grants = std::collections::HashMap::new();
        for (label, records) in &cited.order {
            if let Some(id) = approvals::parse_label(label, 'T').filter(|_| label.starts_with('T'))
            {
                match approvals::chain_ticket(records) {
                    Ok(t) => {
                        tickets.insert(id, t);
                    }
                    Err(why) => return fault(format!("ticket {label}: {why}")),
                }
            } else if let Some(id) =
                approvals::parse_label(label, 'G').filter(|_| label.starts_with('G'))
            {
                match approvals::chain_grant(id, records) {
                    Ok(g) => {
                        grants.insert(id, g);
                    }
                    Err(why) => return fault(format!("grant {label}: {why}")),
                }
            } else {
                let seq = records.first().map_or(0, |r| r.seq);
                return fault(format!(
                    "record {seq} cites `{label}`, which is no ticket or grant"
                ));
            }
        }
        let mut rows = self.inner.store.tickets()?;
        rows.sort_by_key(|t| t.id);
        for row in rows {
            let label = ticket_label(row.id);
            let Some(chain) = tickets.get(&row.id) else {
                return fault(format!(
                    "ticket {label}: the chain never opened it (a row written outside CapFence)"
                ));
            };
            let said = if chain.used_at.is_some() {
                TicketStatus::Used
            } else if chain.approved_by.is_some() {
                TicketStatus::Approved
            } else if chain.rejected_by.is_some() {
                TicketStatus::Rejected
            } else {
                TicketStatus::Pending
            };
            if row.status != said {
                return fault(format!(
                    "ticket {label}: its row says {}, but the chain says {}",
                    row.status.as_str(),
                    said.as_str()
                ));
            }
            if row.event_key != chain.key {
                return fault(format!(
                    "ticket {label}: its row is bound to another event than the chain's"
                ));
            }
        }
        let mut rows = self.inner.store.grants()?;
        rows.sort_by_key(|g| g.id);
        for row in rows {
            let label = grant_label(row.id);
            let Some(chain) = grants.get(&row.id) else {
                return fault(format!(
                    "grant {label}: the chain never granted it (a row written outside CapFence)"
                ));
            };
            let same = row.actor == chain.actor
                && row.capability == chain.capability
                && row.environment == chain.environment
                && row.expires_at == chain.expires_at
                && row.caps == chain.caps
                && row.uses_left == chain.uses_left
                && row.revoked_by.is_some() == chain.revoked_by.is_some();
            if !same {
                return fault(format!(
                    "grant {label}: its row differs from the chain (scope, expiry, caps, uses or \
                     revocation)"
                ));
            }
        }
        Ok(())
    }

    /// The last record's (seq, hash), without verifying.
    pub fn head(&self) -> Result<(u64, String), StoreError> {
        let mut head = None;
        self.inner.store.transaction(&mut |tx| {
            head = Some(tx.head()?);
            Ok(())
        })?;
        head.ok_or_else(|| StoreError::Io("no head".to_owned()))
    }

    /// Every record, in order.
    pub fn records(&self) -> Result<Vec<AuditRecord>, StoreError> {
        let mut records = Vec::new();
        self.inner.store.scan(&mut |r| {
            records.push(r);
            true
        })?;
        Ok(records)
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

/// Seals `record` onto the chain's head and appends it.
fn append(tx: &mut dyn Tx, mut record: AuditRecord) -> Result<(), StoreError> {
    let (seq, prev) = tx.head()?;
    record.seq = seq + 1;
    record.seal(&prev);
    tx.append(&record)
}

/// The records that cite a ticket or grant, grouped by it, in order of the
/// first citation.
#[derive(Default)]
struct Cited {
    order: Vec<(String, Vec<AuditRecord>)>,
    index: std::collections::HashMap<String, usize>,
}

impl Cited {
    fn push(&mut self, id: &[u8], record: AuditRecord) {
        let id = String::from_utf8_lossy(id).into_owned();
        match self.index.get(&id) {
            Some(&at) => {
                if let Some((_, list)) = self.order.get_mut(at) {
                    list.push(record);
                }
            }
            None => {
                self.index.insert(id.clone(), self.order.len());
                self.order.push((id, vec![record]));
            }
        }
    }
}

/// A borrowed record, owned.
fn owned(view: &crate::audit::RecordView<'_>) -> AuditRecord {
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    let opt = |b: Option<&[u8]>| b.map(text);
    AuditRecord {
        seq: view.seq,
        time: text(view.time),
        actor: opt(view.actor),
        capability: opt(view.capability),
        environment: opt(view.environment),
        risk: opt(view.risk),
        payload: text(view.payload),
        decision: text(view.decision),
        rule: opt(view.rule),
        reason: text(view.reason),
        approval_id: opt(view.approval_id),
        policy_digest: opt(view.policy_digest),
        prev_hash: text(view.prev_hash),
        hash: text(view.hash),
    }
}

/// Where each of a record's 13 text fields lies in a chunk, if present.
type Spans = [Option<(usize, usize)>; 13];

/// Rows copied out of the store for the checking thread: every field's bytes
/// back to back, and where each field lies.
#[derive(Default)]
struct Chunk {
    bytes: Vec<u8>,
    records: Vec<(u64, Spans)>,
}

impl Chunk {
    const RECORDS: usize = 1024;

    fn push(&mut self, view: &crate::audit::RecordView<'_>) {
        let fields = [
            Some(view.time),
            view.actor,
            view.capability,
            view.environment,
            view.risk,
            Some(view.payload),
            Some(view.decision),
            view.rule,
            Some(view.reason),
            view.approval_id,
            view.policy_digest,
            Some(view.prev_hash),
            Some(view.hash),
        ];
        let spans = fields.map(|field| {
            field.map(|bytes| {
                let start = self.bytes.len();
                self.bytes.extend_from_slice(bytes);
                (start, bytes.len())
            })
        });
        self.records.push((view.seq, spans));
    }

    fn view(&self, record: &(u64, Spans)) -> crate::audit::RecordView<'_> {
        let (seq, spans) = record;
        let field = |i: usize| -> Option<&[u8]> {
            let (start, len) = spans.get(i).copied().flatten()?;
            self.bytes.get(start..start + len)
        };
        let text = |i: usize| field(i).unwrap_or_default();
        crate::audit::RecordView {
            seq: *seq,
            time: text(0),
            actor: field(1),
            capability: field(2),
            environment: field(3),
            risk: field(4),
            payload: text(5),
            decision: text(6),
            rule: field(7),
            reason: text(8),
            approval_id: field(9),
            policy_digest: field(10),
            prev_hash: text(11),
            hash: text(12),
        }
    }
}
