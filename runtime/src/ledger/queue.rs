//! Group commit: concurrent `settle` calls queue their decisions; one caller
//! at a time becomes the leader, takes the whole queue and settles it
//! (approvals included) in one durable transaction, then hands every caller
//! its verdict.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use capfence_compiler::facts::RuleFacts;
use capfence_compiler::{Decision, DecisionKind, Event};

use super::{Ledger, PolicyFacts, Windowed, append, micros};
use crate::approvals::{
    self, ChainTicket, GrantId, Ticket, TicketId, TicketStatus, canonical_payload, chain_grant,
    chain_ticket,
};
use crate::audit::{AuditRecord, RecordKind};
use crate::clock::rfc3339;
use crate::store::{StoreError, Tx};
use crate::verdict::{GrantDetail, TicketDetail, Verdict, VerdictDetail};

/// A decision waiting to be settled, with everything that does not need the
/// transaction computed by its own thread beforehand.
struct Job {
    event: Event,
    decision: Decision,
    digest: String,
    /// The policy's text: what a ledger with no active policy activates.
    source: Arc<str>,
    capability: Option<String>,
    payload: String,
    /// For `require_approval`: the key binding tickets to this exact event.
    event_key: Option<String>,
    /// The policy in force: the deciding rule's caps fields, quorum and
    /// eligible approvers.
    policy: Option<Arc<PolicyFacts>>,
    /// Set when a velocity window covers the event: it is decided inside the
    /// transaction, on its window totals.
    windowed: Option<Arc<Windowed>>,
}

/// A caller's place in the group commit.
enum Turn {
    /// Its job is queued or being committed.
    Wait,
    /// It is the next leader: its job heads the queue.
    Lead,
    /// Its job was committed (or failed). Boxed: a verdict with its detail
    /// is large, and most turns are waits.
    Done(Box<Result<Verdict, StoreError>>),
}

struct Waiter {
    turn: Mutex<Turn>,
    wake: Condvar,
    /// An async caller's waker (set while its turn is `Wait`).
    waker: Mutex<Option<std::task::Waker>>,
    /// An async caller: it has no thread to lead with; a committing thread
    /// of the blocking pool settles its job. (Only async callers read it.)
    #[cfg_attr(not(feature = "serve"), allow(dead_code))]
    asynchronous: bool,
}

impl Waiter {
    fn new(asynchronous: bool) -> Waiter {
        Waiter {
            turn: Mutex::new(Turn::Wait),
            wake: Condvar::new(),
            waker: Mutex::new(None),
            asynchronous,
        }
    }

    fn set(&self, turn: Turn) {
        if let Ok(mut t) = self.turn.lock() {
            *t = turn;
            // Woken under the turn's lock: a poll that saw `Wait` has its
            // waker stored by then (it stores it under the same lock).
            if let Some(waker) = self.waker.lock().ok().and_then(|mut w| w.take()) {
                waker.wake();
            }
        }
        self.wake.notify_one();
    }
}

/// An async caller's wait for its turn to change from `Wait`.
#[cfg(feature = "serve")]
struct NextTurn<'a>(&'a Waiter);

#[cfg(feature = "serve")]
impl std::future::Future for NextTurn<'_> {
    type Output = Turn;

    fn poll(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Turn> {
        let Ok(mut turn) = self.0.turn.lock() else {
            return std::task::Poll::Ready(Turn::Done(Box::new(Err(StoreError::Io(
                "audit queue lock poisoned".to_owned().into(),
            )))));
        };
        match std::mem::replace(&mut *turn, Turn::Wait) {
            Turn::Wait => {
                if let Ok(mut waker) = self.0.waker.lock() {
                    *waker = Some(cx.waker().clone());
                }
                std::task::Poll::Pending
            }
            other => std::task::Poll::Ready(other),
        }
    }
}

#[derive(Default)]
pub(super) struct Queue {
    pending: Vec<(Job, Arc<Waiter>)>,
    /// Whether a leader is gathering or committing.
    leader: bool,
    /// The size of the last batch: how many callers were recently active.
    last_batch: usize,
}

/// How long a leader waits for the callers of the last batch to come back
/// before it commits what it has.
const GATHER: Duration = Duration::from_micros(200);

impl Ledger {
    /// Settles a decision (approvals for `require_approval`) and records it;
    /// returns only when the record is durable, or the fault that kept it
    /// from being written (then nothing of the decision was kept).
    pub(crate) fn settle(
        &self,
        event: Event,
        decision: Decision,
        digest: &str,
        source: &Arc<str>,
        policy: Option<Arc<PolicyFacts>>,
        windowed: Option<Arc<Windowed>>,
    ) -> Result<Verdict, StoreError> {
        let (job, rule_part) = prepare(event, decision, digest, source, policy, windowed);
        let me = Arc::new(Waiter::new(false));
        with_rule_part(self.queue_and_wait(job, &me), rule_part)
    }

    /// [`settle`](Self::settle) for an async caller: it waits for its
    /// verdict without a thread of its own. When its turn is to lead, a
    /// thread of the blocking pool commits batch after batch while the
    /// queue's next job is an async caller's (no hop back to the executor
    /// and out again between batches), and hands the lead to a thread
    /// caller's job, or gives it up when the queue is empty.
    #[cfg(feature = "serve")]
    pub(crate) async fn settle_async(
        &self,
        event: Event,
        decision: Decision,
        digest: &str,
        source: &Arc<str>,
        policy: Option<Arc<PolicyFacts>>,
        windowed: Option<Arc<Windowed>>,
    ) -> Result<Verdict, StoreError> {
        let (job, rule_part) = prepare(event, decision, digest, source, policy, windowed);
        let me = Arc::new(Waiter::new(true));
        let mut turn = if self.enqueue(job, &me)? {
            Turn::Lead
        } else {
            NextTurn(&me).await
        };
        if matches!(turn, Turn::Lead) {
            let ledger = self.clone();
            // Not awaited: this caller's verdict comes like every other's.
            drop(tokio::task::spawn_blocking(move || ledger.lead_batches()));
            turn = NextTurn(&me).await;
        }
        let result = match turn {
            Turn::Done(result) => *result,
            _ => Err(StoreError::Invalid(
                "the group commit handed the lead twice".to_owned().into(),
            )),
        };
        with_rule_part(result, rule_part)
    }

    /// Queues `job` for `me`; true when `me` is to lead (no leader was
    /// gathering or committing). A gathering leader is woken only once as
    /// many jobs wait as it gathers for (each wake-up short of that would
    /// only have it look and sleep again: a context switch for nothing).
    fn enqueue(&self, job: Job, me: &Arc<Waiter>) -> Result<bool, StoreError> {
        let mut queue = self
            .inner
            .queue
            .lock()
            .map_err(|_| StoreError::Io("audit queue lock poisoned".to_owned().into()))?;
        queue.pending.push((job, Arc::clone(me)));
        if queue.leader {
            if queue.pending.len() >= queue.last_batch {
                self.inner.gather.notify_one();
            }
            Ok(false)
        } else {
            queue.leader = true;
            Ok(true)
        }
    }
}

/// A settled verdict with the rule's part of its detail (built in the
/// caller's thread) added.
fn with_rule_part(
    result: Result<Verdict, StoreError>,
    rule_part: Option<VerdictDetail>,
) -> Result<Verdict, StoreError> {
    result.map(|mut verdict| {
        if let Some(part) = rule_part {
            verdict.detail.add_rule_part(part);
        }
        verdict
    })
}

/// The job for a decision, and the rule's part of its verdict's detail.
fn prepare(
    event: Event,
    decision: Decision,
    digest: &str,
    source: &Arc<str>,
    policy: Option<Arc<PolicyFacts>>,
    windowed: Option<Arc<Windowed>>,
) -> (Job, Option<VerdictDetail>) {
    {
        let event_key = (decision.kind == DecisionKind::RequireApproval)
            .then(|| approvals::event_key(&event, decision.rule.as_deref(), digest));
        // The rule's part of the verdict's detail (its conditions, its
        // limits with this call's values) is built here, in the caller's
        // thread, not in the batch's transaction, where every decision waits
        // for the one before; the transaction adds only what it alone knows
        // (window totals, the ticket or grant). A call decided on its
        // windows gets its whole detail there.
        let rule_part = windowed.is_none().then(|| {
            let rule = policy
                .as_deref()
                .zip(decision.rule.as_deref())
                .and_then(|(p, id)| p.rule(id));
            VerdictDetail::of(&decision.cause, rule, &event, &[], &[], &|_| None)
        });
        let job = Job {
            capability: event.capability(),
            payload: canonical_payload(&event),
            event_key,
            policy,
            windowed,
            event,
            decision,
            digest: digest.to_owned(),
            source: Arc::clone(source),
        };
        (job, rule_part)
    }
}

impl Ledger {
    /// Queues `job` and waits for its verdict, leading a batch when it is
    /// this caller's turn.
    fn queue_and_wait(&self, job: Job, me: &Arc<Waiter>) -> Result<Verdict, StoreError> {
        let poisoned = || StoreError::Io("audit queue lock poisoned".to_owned().into());
        if self.enqueue(job, me)? {
            return self.lead(me);
        }
        let mut turn = me.turn.lock().map_err(|_| poisoned())?;
        while matches!(*turn, Turn::Wait) {
            turn = me.wake.wait(turn).map_err(|_| poisoned())?;
        }
        match std::mem::replace(&mut *turn, Turn::Wait) {
            Turn::Done(result) => *result,
            _ => {
                drop(turn);
                self.lead(me)
            }
        }
    }

    /// Leads one group commit: gathers jobs, commits them in one transaction,
    /// hands out the verdicts, and passes leadership to the next queued job.
    fn lead(&self, me: &Arc<Waiter>) -> Result<Verdict, StoreError> {
        let poisoned = || StoreError::Io("audit queue lock poisoned".to_owned().into());
        let (batch, results, head) = self.commit_gathered()?;
        let mut mine = Err(StoreError::Invalid(
            "the leader's job was not in its batch".to_owned().into(),
        ));
        for ((_, waiter), result) in batch.iter().zip(results) {
            if Arc::ptr_eq(waiter, me) {
                mine = result;
            } else {
                waiter.set(Turn::Done(Box::new(result)));
            }
        }
        let mut queue = self.inner.queue.lock().map_err(|_| poisoned())?;
        match queue.pending.first() {
            Some((_, next)) => next.set(Turn::Lead),
            None => queue.leader = false,
        }
        drop(queue);
        if let Some(head) = head {
            self.checkpoint_if_due(head);
        }
        mine
    }

    /// Leads for async callers, on a thread of the blocking pool: commits
    /// batch after batch, each caller's verdict handed to it, while the next
    /// queued job is an async caller's; then passes the lead to a thread
    /// caller's job (it leads on its own thread) or gives it up.
    #[cfg(feature = "serve")]
    fn lead_batches(&self) {
        loop {
            let Ok((batch, results, head)) = self.commit_gathered() else {
                return;
            };
            for ((_, waiter), result) in batch.iter().zip(results) {
                waiter.set(Turn::Done(Box::new(result)));
            }
            let go_on = match self.inner.queue.lock() {
                Ok(mut queue) => match queue.pending.first() {
                    Some((_, next)) if next.asynchronous => true,
                    Some((_, next)) => {
                        next.set(Turn::Lead);
                        false
                    }
                    None => {
                        queue.leader = false;
                        false
                    }
                },
                Err(_) => false,
            };
            if let Some(head) = head {
                self.checkpoint_if_due(head);
            }
            if !go_on {
                return;
            }
        }
    }

    /// Gathers the queued jobs (waiting briefly for as many callers as the
    /// last batch had) and commits them in one transaction: the batch, each
    /// job's verdict, and the chain's head after it.
    #[allow(clippy::type_complexity)]
    fn commit_gathered(
        &self,
    ) -> Result<
        (
            Vec<(Job, Arc<Waiter>)>,
            Vec<Result<Verdict, StoreError>>,
            Option<u64>,
        ),
        StoreError,
    > {
        let poisoned = || StoreError::Io("audit queue lock poisoned".to_owned().into());
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
        let started = std::time::Instant::now();
        let (results, head) = self.commit_batch(&jobs);
        if let Some(observe) = self.inner.commit_observer.get() {
            observe(started.elapsed(), jobs.len());
        }
        drop(jobs);
        Ok((batch, results, head))
    }

    /// Commits a batch: each job's verdict, and the chain's head after it
    /// (`None` when the transaction failed).
    fn commit_batch(&self, batch: &[&Job]) -> (Vec<Result<Verdict, StoreError>>, Option<u64>) {
        let mut verdicts = Vec::with_capacity(batch.len());
        let mut head = None;
        let ttl = micros(self.inner.ticket_ttl);
        let result = self.inner.store.transaction(&mut |tx| {
            verdicts.clear();
            // One read a batch: the policy the ledger holds active.
            let mut active = super::policy::active_in(tx)?;
            for job in batch {
                let now = tx.ledger_time(self.inner.clock.now_micros())?;
                if active.is_none() {
                    // A fresh ledger: the first policy to decide is its
                    // first, on the record before the decision.
                    active = Some(super::policy::activate_first_in(
                        tx,
                        now,
                        &job.digest,
                        &job.source,
                    )?);
                }
                let refused = not_active(active.as_ref(), &job.digest);
                let windowed = match (&job.windowed, &refused) {
                    (Some(w), None) => Some(decide_on_windows(tx, w, job, now)?),
                    _ => None,
                };
                let (decision, event_key) = match (&refused, &windowed) {
                    (Some(refusal), _) => (refusal, None),
                    (None, Some(on)) => (&on.decision, on.key.as_deref()),
                    (None, None) => (&job.decision, job.event_key.as_deref()),
                };
                let rule = job
                    .policy
                    .as_deref()
                    .zip(decision.rule.as_deref())
                    .and_then(|(p, id)| p.rule(id));
                let detail = match (&windowed, &job.windowed) {
                    (Some(on), Some(w)) => VerdictDetail::of(
                        &decision.cause,
                        rule,
                        &on.augmented,
                        &w.windows,
                        w.keys(),
                        &|win| {
                            w.index_of(win)
                                .and_then(|i| on.oldest.get(i).copied().flatten())
                        },
                    ),
                    // The rule's part is the caller's to add (`settle`):
                    // built in its own thread, not in this transaction.
                    _ => VerdictDetail::of(&decision.cause, None, &job.event, &[], &[], &|_| None),
                };
                let verdict = match decision.kind {
                    DecisionKind::RequireApproval => resolve(
                        tx,
                        &job.event,
                        decision,
                        job.policy.as_deref(),
                        event_key.unwrap_or_default(),
                        &job.payload,
                        now,
                        ttl,
                        detail,
                    )?,
                    kind => Verdict {
                        authorized: kind == DecisionKind::Allow,
                        decision: kind,
                        reason: decision.reason.clone(),
                        rule: decision.rule.clone(),
                        approval_id: None,
                        detail,
                        seq: None,
                    },
                };
                if let (Some(w), true) = (&job.windowed, verdict.authorized) {
                    count_in_windows(tx, w, &job.event, now)?;
                }
                let record = AuditRecord {
                    seq: 0,
                    time: rfc3339(now),
                    actor: job.event.actor.clone(),
                    capability: job.capability.clone(),
                    environment: job.event.environment.clone(),
                    risk: job.event.risk.as_ref().map(|r| r.as_str().to_owned()),
                    payload: job.payload.clone(),
                    decision: RecordKind::Decision(verdict.decision),
                    rule: verdict.rule.clone(),
                    reason: verdict.reason.clone(),
                    approval_id: verdict.approval_id.clone(),
                    policy_digest: Some(job.digest.clone()),
                    prev_hash: String::new(),
                    hash: String::new(),
                };
                let mut verdict = verdict;
                verdict.seq = Some(append(tx, record)?);
                verdicts.push(verdict);
            }
            head = Some(tx.head()?.0);
            Ok(())
        });
        let committed = result.is_ok();
        let results = match result {
            Ok(()) if verdicts.len() == batch.len() => verdicts.into_iter().map(Ok).collect(),
            Ok(()) => batch
                .iter()
                .map(|_| {
                    Err(StoreError::Invalid(
                        "verdict count mismatch".to_owned().into(),
                    ))
                })
                .collect(),
            Err(e) => batch.iter().map(|_| Err(e.clone())).collect(),
        };
        (results, head.filter(|_| committed))
    }
}

/// The deny of a call decided under `digest` when the ledger holds another
/// policy active (or none): `None` when `digest` is the active one.
fn not_active(active: Option<&super::ActivePolicy>, digest: &str) -> Option<Decision> {
    match active {
        Some(a) if a.digest == digest => None,
        Some(a) => Some(Decision::refused(format!(
            "denied: this runtime's policy {digest} is not the ledger's active policy {} \
             (activated at record {}); a policy change is an operator action (`capfence policy`)",
            a.digest, a.seq
        ))),
        None => Some(Decision::refused(format!(
            "denied: the ledger holds no active policy, so policy {digest} decides nothing"
        ))),
    }
}

/// A windowed call's decision, with what the windows held.
struct OnWindows {
    decision: Decision,
    /// For `require_approval`: the ticket key.
    key: Option<String>,
    /// The event with each window's total (this call included).
    augmented: Event,
    /// Each window's oldest counted call, in the order of the windows.
    oldest: Vec<Option<i64>>,
}

/// Decides a job whose capability a velocity window covers, inside the
/// transaction: reads each window's total of authorized calls in
/// `(now - window, now]` for the event's group, hands the totals (plus the
/// call's own part) to the decider, and names them in the reason of a
/// decision that holds or refuses the call.
fn decide_on_windows(
    tx: &mut dyn Tx,
    w: &Windowed,
    job: &Job,
    now: i64,
) -> Result<OnWindows, StoreError> {
    let mut fault = None;
    let mut oldest = vec![None; w.windows.len()];
    let augmented = capfence_compiler::window::augment_keyed(
        &job.event,
        &w.windows,
        w.keys(),
        &mut |win, group, seconds| {
            let after = now.saturating_sub(capfence_compiler::window::Window::micros_of(seconds));
            match tx.window_total(&w.key_of(win), group, after) {
                Ok(seen) => {
                    // The oldest call the whole window counts (a `new:`
                    // aggregate's cooling read is not its window).
                    if let Some(at) = seen.oldest.filter(|_| seconds == win.seconds)
                        && let Some(slot) = w.index_of(win).and_then(|i| oldest.get_mut(i))
                    {
                        *slot = Some(at);
                    }
                    seen.total
                }
                Err(e) => {
                    fault = Some(e);
                    rust_decimal::Decimal::ZERO
                }
            }
        },
    );
    if let Some(e) = fault {
        return Err(e);
    }
    let mut decision = w.decider.decide(&augmented);
    if decision.kind != DecisionKind::Allow
        && let Some(totals) =
            capfence_compiler::window::totals_text_keyed(&w.windows, w.keys(), &augmented)
    {
        decision.reason = format!("{} ({totals})", decision.reason);
    }
    let key = (decision.kind == DecisionKind::RequireApproval)
        .then(|| approvals::event_key(&job.event, decision.rule.as_deref(), &job.digest));
    Ok(OnWindows {
        decision,
        key,
        augmented,
        oldest,
    })
}

/// Counts an authorized call in every window that covers it.
fn count_in_windows(
    tx: &mut dyn Tx,
    w: &Windowed,
    event: &Event,
    now: i64,
) -> Result<(), StoreError> {
    for win in w.windows.iter().filter(|win| win.covers_event(event)) {
        if let (Some(group), Some(value)) = (win.group(event), win.contribution(event)) {
            tx.add_to_window(&w.key_of(win), &group, now, value)?;
        }
    }
    Ok(())
}

/// Settles a `require_approval` decision, in this order: an approved ticket
/// for this exact event (consumed: authorized); a ticket for it that an
/// operator rejected (deny); an active grant (one use taken: authorized); the
/// event's pending ticket, created if there is none (require_approval).
///
/// Where the deciding rule's approvals are signed, a ticket counts as
/// approved only when its chain holds valid signatures of the rule's quorum
/// of distinct eligible approvers, and a grant only when it was signed under
/// this policy by an approver eligible for the rule and the rule needs one.
#[allow(clippy::too_many_arguments)]
fn resolve(
    tx: &mut dyn Tx,
    event: &Event,
    decision: &Decision,
    policy: Option<&PolicyFacts>,
    key: &str,
    payload: &str,
    now: i64,
    ticket_ttl_micros: i64,
    mut detail: VerdictDetail,
) -> Result<Verdict, StoreError> {
    let capability = event.capability().unwrap_or_default();
    let rule = policy
        .zip(decision.rule.as_deref())
        .and_then(|(p, id)| p.rule(id));
    let quorum = rule.map_or(1, |r| r.approvals);
    let ticket_detail = |id: &str, state, expires_at: i64, decided_by: Vec<String>| {
        Some(TicketDetail {
            id: id.to_owned(),
            state,
            expires_at: Some(rfc3339(expires_at)),
            quorum,
            decided_by,
        })
    };
    let tested: &[capfence_compiler::facts::Name] =
        rule.map(|r| r.numbers.as_ref()).unwrap_or_default();
    let mut pending_ticket = None;
    if let Some(ticket) = tx.latest_ticket(key, now)? {
        let label = TicketId(ticket.id).to_string();
        // The row is an index; the chain decides. A pending row is taken as
        // it is (it can only hold the event, never let it through); any other
        // is read from the chain, and a row the chain does not vouch for
        // (forged, edited, restored) is ignored.
        let chain = if ticket.status == TicketStatus::Pending {
            None
        } else {
            chain_ticket(&tx.records_citing(&label)?, rule)
                .ok()
                .filter(|c| {
                    c.key == key
                        && c.opened_at.saturating_add(ticket_ttl_micros) > now
                        && c.signature_current(now)
                })
        };
        if ticket.status == TicketStatus::Pending {
            detail.ticket = ticket_detail(&label, "pending", ticket.expires_at, Vec::new());
            pending_ticket = Some(label.clone());
        }
        match chain {
            Some(c) if c.used_at.is_some() => {}
            Some(ChainTicket {
                rejected_by: Some(by),
                ..
            }) => {
                detail.ticket =
                    ticket_detail(&label, "rejected", ticket.expires_at, vec![by.clone()]);
                return Ok(Verdict {
                    authorized: false,
                    decision: DecisionKind::Deny,
                    reason: format!("{} (rejected by {by}, ticket {label})", decision.reason),
                    rule: decision.rule.clone(),
                    approval_id: Some(label),
                    detail,
                    seq: None,
                });
            }
            Some(c) if c.approved => {
                let by = c.approvals.join(", ");
                tx.update_ticket(ticket.id, TicketStatus::Used, None)?;
                detail.ticket = ticket_detail(&label, "approved", ticket.expires_at, c.approvals);
                return Ok(Verdict {
                    authorized: true,
                    decision: DecisionKind::Allow,
                    reason: format!("{} (approved by {by}, ticket {label})", decision.reason),
                    rule: decision.rule.clone(),
                    approval_id: Some(label),
                    detail,
                    seq: None,
                });
            }
            Some(c) => {
                detail.ticket = ticket_detail(&label, "pending", ticket.expires_at, c.approvals);
                pending_ticket = Some(label);
            }
            None => {}
        }
    }
    if let (Some(actor), Some(environment)) = (&event.actor, &event.environment) {
        for row in tx.grants_for(actor, &capability, environment)? {
            let label = GrantId(row.id).to_string();
            let Ok(grant) = chain_grant(row.id, &tx.records_citing(&label)?) else {
                continue;
            };
            let in_scope = grant.actor == *actor
                && grant.capability == capability
                && grant.environment == *environment;
            let signed_ok = match rule.filter(|r| r.signed()) {
                None => true,
                Some(r) => grant.signed.as_ref().is_some_and(|s| {
                    r.approvals == 1
                        && policy.is_some_and(|p| p.digest == s.policy_digest)
                        && r.approvers
                            .iter()
                            .any(|a| a.name == s.signer.as_str() && a.key == s.key.as_str())
                }),
            };
            if in_scope && signed_ok && grant.usable(now, event, tested) {
                let uses_left = grant.uses_left.map(|u| u.saturating_sub(1));
                tx.update_grant(grant.id, uses_left, None)?;
                detail.grant = Some(GrantDetail {
                    id: label.clone(),
                    granted_by: grant.granted_by.clone(),
                    uses_left,
                });
                return Ok(Verdict {
                    authorized: true,
                    decision: DecisionKind::Allow,
                    reason: format!(
                        "{} (satisfied by grant {label} from {})",
                        decision.reason, grant.granted_by
                    ),
                    rule: decision.rule.clone(),
                    approval_id: Some(label),
                    detail,
                    seq: None,
                });
            }
        }
    }
    if let Some(label) = pending_ticket {
        return Ok(pending(decision, label, detail));
    }
    if let Some(p) = policy.filter(|_| rule.is_some_and(RuleFacts::signed))
        && let Some(note) = &p.note
    {
        tx.set_note(&approvals::requirements_key(&p.digest), note)?;
    }
    let expires_at = now.saturating_add(ticket_ttl_micros);
    let id = tx.insert_ticket(&Ticket {
        id: 0,
        event_key: key.to_owned(),
        actor: event.actor.clone(),
        capability,
        environment: event.environment.clone(),
        risk: event.risk.as_ref().map(|r| r.as_str().to_owned()),
        payload: payload.to_owned(),
        rule: decision.rule.clone(),
        status: TicketStatus::Pending,
        created_at: now,
        expires_at,
        decided_by: None,
    })?;
    let label = TicketId(id).to_string();
    detail.ticket = ticket_detail(&label, "pending", expires_at, Vec::new());
    Ok(pending(decision, label, detail))
}

fn pending(decision: &Decision, label: String, detail: VerdictDetail) -> Verdict {
    Verdict {
        authorized: false,
        decision: DecisionKind::RequireApproval,
        reason: format!("{} (waiting for approval, ticket {label})", decision.reason),
        rule: decision.rule.clone(),
        approval_id: Some(label),
        detail,
        seq: None,
    }
}
