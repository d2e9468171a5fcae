//! `verify`: the hash chain re-computed on a second thread, then the
//! approval semantics replayed and every ticket and grant row held to the chain.

use super::{Ledger, VerifyError};
use crate::approvals::{self, GrantId, TicketId};
use crate::audit::{AuditRecord, RecordKind, Verifier};
use crate::store::{Rows, StoreError};
use capfence_compiler::DecisionKind;

/// A record stamped earlier than a record before it: a host's clock stepped
/// back, or hosts' clocks disagree. Not a fault of the chain (the order is
/// the chain's); windows count such records as if stamped at the latest
/// time before them, so a cap only gets stricter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TimeReversal {
    /// The record whose time runs backward.
    pub seq: u64,
    /// Its time.
    pub time: String,
    /// The record before it with the latest time.
    pub latest_seq: u64,
    /// That time.
    pub latest_time: String,
}

impl std::fmt::Display for TimeReversal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "recorded time runs backward at record {}: {} is before {} (record {})",
            self.seq, self.time, self.latest_time, self.latest_seq
        )
    }
}

impl Ledger {
    /// Every record stamped earlier than one before it, in seq order.
    pub fn time_reversals(&self) -> Result<Vec<TimeReversal>, StoreError> {
        let mut found = Vec::new();
        let mut latest: Option<(u64, i64, String)> = None;
        let mut fault = None;
        self.inner.store.scan_views(&mut |view| {
            let text = String::from_utf8_lossy(view.time).into_owned();
            let Some(at) = capfence_compiler::time::parse_rfc3339(&text) else {
                fault = Some(StoreError::Invalid(
                    format!("record {}: time {text:?} is not RFC 3339", view.seq).into(),
                ));
                return false;
            };
            match &latest {
                Some((seq, t, shown)) if at < *t => found.push(TimeReversal {
                    seq: view.seq,
                    time: text,
                    latest_seq: *seq,
                    latest_time: shown.clone(),
                }),
                _ => latest = Some((view.seq, at, text)),
            }
            true
        })?;
        fault.map_or(Ok(found), Err)
    }

    /// Re-computes the whole chain; with `head`, also requires that hash to be
    /// in it (detects a truncated tail). Returns the last (seq, hash).
    ///
    /// Reading and hashing run on two threads: this one copies rows out of the
    /// store in chunks, a second one re-encodes, hashes and links them.
    pub fn verify(&self, head: Option<&str>) -> Result<(u64, String), VerifyError> {
        // The rows first, in one snapshot with the head seq they match: the
        // chain read afterwards holds at least that much, and decisions made
        // meanwhile are not rows "written outside CapFence".
        let rows = self.inner.store.rows()?;
        let verifier = head.map_or_else(Verifier::default, Verifier::with_head);
        let stop = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (sender, receiver) = std::sync::mpsc::sync_channel::<Scanned>(4);
            let stop = &stop;
            let rows = &rows;
            // The checking thread also replays what the chain says and frees
            // the records it copied: freed where they were made.
            let checker = scope.spawn(move || {
                let (verifier, cited, policies) = match check_chunks(receiver, verifier, stop) {
                    Ok(checked) => checked,
                    Err(fault) => {
                        stop.store(true, std::sync::atomic::Ordering::Relaxed);
                        return Err(fault);
                    }
                };
                let head = verifier.finish()?;
                // The chain is whole; now what it says about policies.
                if let Some(fault) = policies.fault {
                    return Err(fault);
                }
                self.hold_active_note(&policies, head.0)?;
                self.replay_approvals(&cited, rows, &policies)?;
                Ok(head)
            });
            let mut chunk = Chunk::default();
            let scanned = self.inner.store.scan_views(&mut |view| {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    return false;
                }
                chunk.push(view);
                if chunk.records.len() >= Chunk::RECORDS {
                    return sender
                        .send(Scanned::Chunk(std::mem::take(&mut chunk)))
                        .is_ok();
                }
                true
            });
            if !chunk.records.is_empty() {
                let _ = sender.send(Scanned::Chunk(chunk));
            }
            let _ = sender.send(Scanned::End(scanned));
            drop(sender);
            checker.join().map_err(|_| {
                VerifyError::from(StoreError::Invalid(
                    "the verifying thread stopped".to_owned().into(),
                ))
            })?
        })
    }

    /// Holds the active-policy note to the chain: it must name the last
    /// `activate` record (read up to `head`) and its digest.
    fn hold_active_note(&self, policies: &Policies, head: u64) -> Result<(), VerifyError> {
        // Read as it stands, and the record it names (which may be newer
        // than the chain read, if a policy was activated meanwhile).
        let mut read = None;
        self.inner.store.transaction(&mut |tx| {
            let note = super::policy::raw_active_in(tx)?;
            let named = match &note {
                Some(n) if n.seq > head => tx.record_at(n.seq)?,
                _ => None,
            };
            read = Some((note, named));
            Ok(())
        })?;
        let (note, named) = read.unwrap_or((None, None));
        let last = policies.active.as_ref();
        match (note, last) {
            (None, None) => Ok(()),
            (Some(n), _) if n.seq > head => match named {
                Some(r)
                    if r.decision == RecordKind::Activate
                        && r.policy_digest.as_deref() == Some(n.digest.as_str()) =>
                {
                    Ok(())
                }
                _ => Err(VerifyError::Record(format!(
                    "the active-policy note names record {} and policy {}, but that record is \
                     no activation of it",
                    n.seq, n.digest
                ))),
            },
            (Some(n), Some((seq, digest))) if n.seq == *seq && n.digest == *digest => Ok(()),
            (Some(n), Some((seq, digest))) => Err(VerifyError::Record(format!(
                "the active-policy note names record {} and policy {}, but the chain's last \
                 activation is record {seq} of policy {digest}",
                n.seq, n.digest
            ))),
            (Some(n), None) => Err(VerifyError::Record(format!(
                "the active-policy note names record {} and policy {}, but the chain holds no \
                 activation",
                n.seq, n.digest
            ))),
            (None, Some((seq, digest))) => Err(VerifyError::Record(format!(
                "the chain activated policy {digest} at record {seq}, but the active-policy \
                 note is gone"
            ))),
        }
    }

    /// Replays approval semantics over the records that cite a ticket or a
    /// grant, then holds every ticket and grant row to what the chain said
    /// at the rows' snapshot (`rows.head`).
    fn replay_approvals(
        &self,
        cited: &Cited,
        rows: &Rows,
        policies: &Policies,
    ) -> Result<(), VerifyError> {
        let fault = |text: String| Err(VerifyError::Approval(text));
        let mut tickets = std::collections::HashMap::new();
        let mut grants = std::collections::HashMap::new();
        let mut outcomes: Vec<(u64, &Vec<AuditRecord>)> = Vec::new();
        // Every ticket and grant is replayed; the fault reported is the one
        // at the lowest seq, so the first bad record is the one named.
        let mut first: Option<(u64, String)> = None;
        let mut note = |seq: u64, text: String| {
            if first.as_ref().is_none_or(|(at, _)| seq < *at) {
                first = Some((seq, text));
            }
        };
        for (label, records) in &cited.order {
            // Every record is replayed; the rows are held to the records up
            // to their snapshot.
            let known = records
                .get(..records.partition_point(|r| r.seq <= rows.head))
                .unwrap_or_default();
            let whole = known.len() == records.len();
            if let Some(id) = TicketId::from_label(label).map(|t| t.0) {
                match approvals::chain_ticket(records, None) {
                    Ok(t) if whole => {
                        tickets.insert(id, t);
                    }
                    Ok(_) if known.is_empty() => {}
                    Ok(_) => {
                        if let Ok(t) = approvals::chain_ticket(known, None) {
                            tickets.insert(id, t);
                        }
                    }
                    Err(why) => note(why.seq, format!("ticket {label}: {why}")),
                }
            } else if let Some(id) = GrantId::from_label(label).map(|g| g.0) {
                match approvals::chain_grant(id, records) {
                    Ok(g) if whole => {
                        grants.insert(id, g);
                    }
                    Ok(_) if known.is_empty() => {}
                    Ok(_) => {
                        if let Ok(g) = approvals::chain_grant(id, known) {
                            grants.insert(id, g);
                        }
                    }
                    Err(why) => note(why.seq, format!("grant {label}: {why}")),
                }
            } else if label.starts_with("P-") {
                if let Err((seq, why)) = policies.replay_proposal(label, records) {
                    note(seq, format!("{label}: {why}"));
                }
            } else if let Some(decision) = super::decision_of(label) {
                match outcome_fault(decision, records) {
                    Some((seq, why)) => note(seq, why),
                    None => outcomes.push((decision, records)),
                }
            } else {
                let seq = records.first().map_or(0, |r| r.seq);
                note(
                    seq,
                    format!("record {seq} cites `{label}`, which is no ticket or grant"),
                );
            }
        }
        // Each outcome's call: an authorized one of the same actor and
        // capability, before it.
        let mut calls = Vec::with_capacity(outcomes.len());
        self.inner.store.transaction(&mut |tx| {
            calls.clear();
            for (decision, _) in &outcomes {
                calls.push(tx.record_at(*decision)?);
            }
            Ok(())
        })?;
        for ((decision, records), call) in outcomes.iter().zip(&calls) {
            let Some(outcome) = records.first() else {
                continue;
            };
            let fits = call.as_ref().is_some_and(|c| {
                c.decision == RecordKind::ALLOW
                    && c.seq < outcome.seq
                    && c.actor == outcome.actor
                    && c.capability == outcome.capability
                    && c.environment == outcome.environment
            });
            if !fits {
                note(
                    outcome.seq,
                    format!(
                        "record {} is an outcome of record {decision}, which is no authorized \
                         call of the same actor and capability before it",
                        outcome.seq
                    ),
                );
            }
        }
        if let Some((_, text)) = first {
            return fault(text);
        }
        let mut ticket_rows: Vec<&crate::approvals::Ticket> = rows.tickets.iter().collect();
        ticket_rows.sort_by_key(|t| t.id);
        for row in ticket_rows {
            let label = TicketId(row.id).to_string();
            let Some(chain) = tickets.get(&row.id) else {
                return fault(format!(
                    "ticket {label}: the chain never opened it (a row written outside CapFence)"
                ));
            };
            let said = chain.standing();
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
        let mut grant_rows: Vec<&crate::approvals::Grant> = rows.grants.iter().collect();
        grant_rows.sort_by_key(|g| g.id);
        for row in grant_rows {
            let label = GrantId(row.id).to_string();
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
}

/// What is wrong with the records citing decision `decision` (`D-<seq>`):
/// they must be one outcome record, readable. The fault's seq and text.
fn outcome_fault(decision: u64, records: &[AuditRecord]) -> Option<(u64, String)> {
    let first = records.first()?;
    if let Some(second) = records.get(1) {
        return Some((
            second.seq,
            format!(
                "record {} is a second outcome of record {decision} (record {} was its outcome)",
                second.seq, first.seq
            ),
        ));
    }
    if first.decision != RecordKind::Outcome {
        return Some((
            first.seq,
            format!("record {} cites D-{decision} but is no outcome", first.seq),
        ));
    }
    super::Outcome::of_record(first)
        .err()
        .map(|why| (first.seq, why))
}

/// The records that cite a ticket or grant, grouped by it, in order of the
/// first citation.
#[derive(Default)]
struct Cited {
    order: Vec<(String, Vec<AuditRecord>)>,
    index: std::collections::HashMap<String, usize>,
}

impl Cited {
    /// Whether `view` (a `require_approval` citing ticket `id`) holds the
    /// event of the ticket's opening record, and every record cited so far
    /// is a `require_approval`: the ticket is undecided, and the record fits
    /// its replay without changing it.
    fn recites_undecided_ticket(&self, id: &[u8], view: &crate::audit::RecordView<'_>) -> bool {
        let Ok(id) = std::str::from_utf8(id) else {
            return false;
        };
        if TicketId::from_label(id).is_none() {
            return false;
        }
        let Some((_, records)) = self.index.get(id).and_then(|&at| self.order.get(at)) else {
            return false;
        };
        let (Some(open), Some(last)) = (records.first(), records.last()) else {
            return false;
        };
        let same = |a: Option<&[u8]>, b: &Option<String>| a == b.as_deref().map(str::as_bytes);
        open.decision == RecordKind::REQUIRE_APPROVAL
            && last.decision == RecordKind::REQUIRE_APPROVAL
            && same(view.actor, &open.actor)
            && same(view.capability, &open.capability)
            && same(view.environment, &open.environment)
            && same(view.risk, &open.risk)
            && view.payload == open.payload.as_bytes()
            && same(view.rule, &open.rule)
            && same(view.policy_digest, &open.policy_digest)
    }

    fn push(&mut self, id: &[u8], record: AuditRecord) {
        let id = String::from_utf8_lossy(id);
        match self.index.get(id.as_ref()) {
            Some(&at) => {
                if let Some((_, list)) = self.order.get_mut(at) {
                    list.push(record);
                }
            }
            None => {
                let id = id.into_owned();
                self.index.insert(id.clone(), self.order.len());
                self.order.push((id, vec![record]));
            }
        }
    }
}

/// What the reading thread sends the checking one: rows, then how the
/// reading ended.
enum Scanned {
    Chunk(Chunk),
    End(Result<(), StoreError>),
}

/// Checks every record the reading thread sends: hashes and links, kinds,
/// the policies in force; copies the records that cite a ticket, grant,
/// proposal or decision. A fault of the chain comes first, then a fault of
/// the reading.
fn check_chunks(
    receiver: std::sync::mpsc::Receiver<Scanned>,
    mut verifier: Verifier,
    stop: &std::sync::atomic::AtomicBool,
) -> Result<(Verifier, Cited, Policies), VerifyError> {
    let mut cited = Cited::default();
    let mut policies = Policies::default();
    let mut ended = Err(StoreError::Invalid(
        "the reading thread stopped".to_owned().into(),
    ));
    for message in receiver {
        let chunk = match message {
            Scanned::Chunk(chunk) => chunk,
            Scanned::End(result) => {
                ended = result;
                break;
            }
        };
        for record in &chunk.records {
            let view = chunk.view(record);
            verifier.check_view(&view)?;
            // Every record is one CapFence could have written.
            let kind = kind_of(&view)?;
            // Most records are decisions that cite nothing: checked on
            // their bytes, never copied.
            if view.approval_id.is_none()
                && !matches!(kind, RecordKind::Activate | RecordKind::Outcome)
            {
                policies.observe_kind(view.seq, kind, view.policy_digest);
                continue;
            }
            // A held call asked again, the same event while its ticket is
            // still undecided: the replay could only find that it fits and
            // changes nothing. Not copied (its policy is still observed).
            if kind == RecordKind::REQUIRE_APPROVAL
                && view
                    .approval_id
                    .is_some_and(|id| cited.recites_undecided_ticket(id, &view))
            {
                policies.observe_kind(view.seq, kind, view.policy_digest);
                continue;
            }
            let record = owned(&view, kind);
            policies.observe(&record);
            if record.decision == RecordKind::Outcome
                && record
                    .approval_id
                    .as_deref()
                    .and_then(super::decision_of)
                    .is_none()
            {
                return Err(VerifyError::Record(format!(
                    "record {} is an outcome that cites no decision (`D-<seq>`)",
                    record.seq
                )));
            }
            if let Some(id) = view.approval_id {
                cited.push(id, record);
            }
        }
        if stop.load(std::sync::atomic::Ordering::Relaxed) {
            break;
        }
    }
    ended?;
    Ok((verifier, cited, policies))
}

/// A record's kind; `Err` names a `decision` that is neither a decision nor
/// an operator action (nothing CapFence writes).
fn kind_of(view: &crate::audit::RecordView<'_>) -> Result<RecordKind, VerifyError> {
    std::str::from_utf8(view.decision)
        .ok()
        .and_then(RecordKind::parse)
        .ok_or_else(|| {
            VerifyError::Record(format!(
                "record {}: its decision {:?} is neither a decision nor an operator action",
                view.seq,
                String::from_utf8_lossy(view.decision)
            ))
        })
}

/// A borrowed record of kind `decision`, owned.
fn owned(view: &crate::audit::RecordView<'_>, decision: RecordKind) -> AuditRecord {
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
        decision,
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

/// A multiset of window contributions: (window, group, value) → count.
type Contributions = std::collections::BTreeMap<(String, String, rust_decimal::Decimal), u64>;

impl Ledger {
    /// Holds the velocity window rows to the chain, for a policy with these
    /// `windows` and `digest`. Each group's running totals must add up row by
    /// row; every row must be the contribution of an `allow` record in the
    /// chain (no forged rows); every `allow` record under this policy must
    /// have its rows (none deleted). `Err` names the first window and group
    /// that differ.
    pub fn verify_windows(
        &self,
        windows: &[capfence_compiler::window::Window],
        digest: &str,
    ) -> Result<(), VerifyError> {
        let fault = |text: String| Err(VerifyError::Window(text));
        let describe = |spec: &str| {
            windows.iter().find(|w| w.key() == spec).map_or_else(
                || spec.to_owned(),
                capfence_compiler::window::Window::describe,
            )
        };
        // The rows first, in one snapshot with the head seq they match; the
        // chain's records up to that seq are what they must add up to.
        let snapshot = self.inner.store.rows()?;
        let mut all = Contributions::new();
        let mut current = Contributions::new();
        let records = self.records()?;
        // What became of each call by the snapshot: a failed call counts
        // nothing, an executed one the amount sent.
        let outcomes: std::collections::HashMap<u64, super::Outcome> = records
            .iter()
            .take_while(|r| r.seq <= snapshot.head)
            .filter(|r| r.decision == crate::audit::RecordKind::Outcome)
            .filter_map(|r| {
                let seq = super::decision_of(r.approval_id.as_deref()?)?;
                Some((seq, super::Outcome::of_record(r).ok()?))
            })
            .collect();
        for record in records {
            if record.seq > snapshot.head {
                break;
            }
            if record.decision != crate::audit::RecordKind::ALLOW {
                continue;
            }
            let Some(event) = event_of(&record) else {
                continue;
            };
            for w in windows.iter().filter(|w| w.covers_event(&event)) {
                if let (Some(group), Some(value)) = (w.group(&event), w.contribution(&event)) {
                    let value = match outcomes.get(&record.seq) {
                        Some(outcome) => super::outcome::counted(w, value, outcome),
                        None => value,
                    };
                    let key = (w.key(), group, value.normalize());
                    *all.entry(key.clone()).or_default() += 1;
                    if record.policy_digest.as_deref() == Some(digest) {
                        *current.entry(key).or_default() += 1;
                    }
                }
            }
        }
        let mut rows = Contributions::new();
        let mut running: std::collections::HashMap<(String, String), rust_decimal::Decimal> =
            std::collections::HashMap::new();
        for row in snapshot.windows {
            let previous = running
                .get(&(row.spec.clone(), row.group.clone()))
                .copied()
                .unwrap_or_default();
            if previous.checked_add(row.value) != Some(row.running) {
                return fault(format!(
                    "window `{}`: a row's running total {} does not follow from the one before \
                     ({previous} + {})",
                    describe(&row.spec),
                    row.running,
                    row.value
                ));
            }
            running.insert((row.spec.clone(), row.group.clone()), row.running);
            *rows
                .entry((row.spec, row.group, row.value.normalize()))
                .or_default() += 1;
        }
        let mut counts: std::collections::HashMap<(String, String), u64> =
            std::collections::HashMap::new();
        for ((spec, group, _), n) in &rows {
            *counts.entry((spec.clone(), group.clone())).or_default() += n;
        }
        let heads = snapshot.window_heads;
        for (spec, group, n, total) in &heads {
            let key = (spec.clone(), group.clone());
            if counts.get(&key) != Some(n) || running.get(&key) != Some(total) {
                return fault(format!(
                    "window `{}`: its head says {n} calls totalling {total}, but its rows differ",
                    describe(spec)
                ));
            }
        }
        if heads.len() != counts.len() {
            return fault("a window group has rows but no head".to_owned());
        }
        for (key, count) in &rows {
            if all.get(key).copied().unwrap_or_default() < *count {
                return fault(format!(
                    "window `{}`: a row counts a call of {} that no allow record in the chain made",
                    describe(&key.0),
                    key.2
                ));
            }
        }
        for (key, count) in &current {
            if rows.get(key).copied().unwrap_or_default() < *count {
                return fault(format!(
                    "window `{}`: an allowed call of {} has no window row (rows deleted?)",
                    describe(&key.0),
                    key.2
                ));
            }
        }
        Ok(())
    }
}

/// The event a decision record was made for.
pub(super) fn event_of(record: &AuditRecord) -> Option<capfence_compiler::Event> {
    let text = |v: &Option<String>| serde_json::to_string(v).unwrap_or_else(|_| "null".to_owned());
    capfence_compiler::Event::from_json(&format!(
        "{{\"actor\":{},\"capability\":{},\"environment\":{},\"risk\":{},\"payload\":{}}}",
        text(&record.actor),
        text(&record.capability),
        text(&record.environment),
        text(&record.risk),
        record.payload
    ))
    .ok()
}

/// The policies the chain activated, as it is read: once one is active, a
/// call is let through (allowed, or held for approval) only under it, and
/// another is activated only by name under a policy without approvers, or
/// by a proposal (replayed with the approvals).
#[derive(Default)]
struct Policies {
    /// The last activation: its record and digest.
    active: Option<(u64, String)>,
    /// Every activated policy's text, by digest.
    texts: std::collections::HashMap<String, String>,
    /// Each activation that carried out a proposal: the proposal's label,
    /// and the digest active just before.
    carried_out: std::collections::HashMap<String, (u64, String)>,
    /// The first fault.
    fault: Option<VerifyError>,
}

impl Policies {
    fn observe(&mut self, record: &AuditRecord) {
        if self.fault.is_some() {
            return;
        }
        match record.decision {
            RecordKind::Activate => {
                let digest = record.policy_digest.clone().unwrap_or_default();
                let text = serde_json::from_str::<serde_json::Value>(&record.payload)
                    .ok()
                    .and_then(|p| p.get("text")?.as_str().map(str::to_owned))
                    .unwrap_or_default();
                if let Some((_, before)) = &self.active {
                    match &record.approval_id {
                        Some(label) => {
                            self.carried_out
                                .insert(label.clone(), (record.seq, before.clone()));
                        }
                        None => {
                            let signed = self
                                .texts
                                .get(before)
                                .and_then(|t| capfence_compiler::Policy::parse(t, "policy").ok())
                                .is_none_or(|p| !p.approvers.is_empty());
                            if signed {
                                self.fault = Some(VerifyError::Record(format!(
                                    "record {}: policy {digest} was activated by name while \
                                     policy {before}, which lists approvers, was active",
                                    record.seq
                                )));
                            }
                        }
                    }
                }
                self.texts.insert(digest.clone(), text);
                self.active = Some((record.seq, digest));
            }
            kind => self.observe_kind(
                record.seq,
                kind,
                record.policy_digest.as_deref().map(str::as_bytes),
            ),
        }
    }

    /// Observes a record that is not an activation: a decision that lets a
    /// call through must name the active policy.
    fn observe_kind(&mut self, seq: u64, kind: RecordKind, digest: Option<&[u8]>) {
        if self.fault.is_some() {
            return;
        }
        if let RecordKind::Decision(kind) = kind
            && kind != DecisionKind::Deny
            && let Some((at, active)) = &self.active
            && digest != Some(active.as_bytes())
        {
            self.fault = Some(VerifyError::Record(format!(
                "record {seq}: {} under policy {}, but policy {active} was active (since record \
                 {at})",
                kind.as_str(),
                digest.map_or_else(
                    || "(none)".to_owned(),
                    |d| String::from_utf8_lossy(d).into_owned()
                )
            )));
        }
    }
}

impl Policies {
    /// Replays proposal `label`: a `propose` first, `sign` records whose
    /// signatures verify under the policy it changes, the loosenings it
    /// recorded those of the two texts, and an activation (if any) that
    /// came while that policy was active, with enough signatures and after
    /// the delay. `Err((seq, why))` names the first bad record.
    fn replay_proposal(&self, label: &str, records: &[AuditRecord]) -> Result<(), (u64, String)> {
        use super::proposal::{check_signatures, from_records, needs};
        let first = records.first().map_or(0, |r| r.seq);
        let id = label
            .strip_prefix("P-")
            .and_then(|n| n.parse().ok())
            .ok_or((first, "not a proposal label".to_owned()))?;
        let proposal = from_records(id, records).ok_or((
            first,
            "its first record is not a readable `propose`".to_owned(),
        ))?;
        let base_text = self.texts.get(&proposal.base).ok_or((
            first,
            format!(
                "it changes policy {}, which the chain never activated",
                proposal.base
            ),
        ))?;
        let base = capfence_compiler::Policy::parse(base_text, "policy")
            .map_err(|_| (first, "the policy it changes does not load".to_owned()))?;
        let new = capfence_compiler::Policy::parse(&proposal.text, "policy")
            .map_err(|_| (first, "the proposed policy does not load".to_owned()))?;
        if new.digest != proposal.digest {
            return Err((
                first,
                "the proposed text does not have the recorded digest".to_owned(),
            ));
        }
        let diff = capfence_compiler::analysis::DiffReport::new(&base, &new).ok();
        if capfence_compiler::analysis::loosenings(&base, &new, diff.as_ref()) != proposal.loosens {
            return Err((
                first,
                "the loosenings it recorded are not those of the two policies".to_owned(),
            ));
        }
        let signers = check_signatures(&proposal, &base, records).map_err(|why| (first, why))?;
        if let Some(at) = proposal.activated {
            let (_, before) = self.carried_out.get(label).ok_or((
                at,
                "activated, but not in the chain's activations".to_owned(),
            ))?;
            if *before != proposal.base {
                return Err((
                    at,
                    format!(
                        "activated while policy {before} was active, not {}",
                        proposal.base
                    ),
                ));
            }
            let (needed, delay) = needs(&proposal, &base);
            if (signers.len() as u32) < needed {
                return Err((
                    at,
                    format!(
                        "activated with {} valid signature(s) of {needed}",
                        signers.len()
                    ),
                ));
            }
            let when = records
                .iter()
                .find(|r| r.seq == at)
                .and_then(|r| capfence_compiler::time::parse_time(&r.time))
                .unwrap_or(i64::MIN);
            if when < proposal.proposed_at.saturating_add(delay) {
                return Err((at, "activated before its delay passed".to_owned()));
            }
        }
        Ok(())
    }
}
