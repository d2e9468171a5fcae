//! The ledger: the audit chain and the approval state behind a [`Store`],
//! with group commit for decisions and one transaction per operator action.
//!
//! Group commit: concurrent `settle` calls queue their decisions; one caller
//! at a time becomes the leader, takes the whole queue and settles it in one
//! durable transaction, then hands every caller its verdict. No verdict is
//! handed out before the transaction holding its record has committed; if the
//! transaction fails, every verdict in it is a deny naming the fault.

mod operator;
mod outcome;
mod policy;
mod proposal;
mod queue;
mod verify;
mod views;
pub use outcome::{Outcome, OutcomeError, decision_label, decision_of};
pub use policy::{Activation, ActivePolicy, FIRST_USE};

pub use proposal::{Impact, Proposal, Proposed, proposal_label};
pub use verify::TimeReversal;

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use capfence_compiler::facts::RuleFacts;

use crate::approvals::{Grant, Ticket};
use crate::audit::{AuditRecord, ChainFault};
use crate::clock::SharedClock;
use crate::store::{Store, StoreError, Tx};

pub use operator::{
    Approval, GrantScope, Invalid, Operator, OperatorError, Presigned, Refusal, Signer,
    TicketOutcome,
};
use queue::Queue;
pub use views::TicketView;

/// What [`Ledger::observe_commits`] is told: a transaction's duration and
/// its number of decisions.
pub type CommitObserver = Box<dyn Fn(Duration, usize) + Send + Sync>;

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
    /// The chain is intact, but a velocity window's rows or heads do not
    /// follow from its allowed calls (a row deleted, forged or lowered).
    #[error("{0}")]
    Window(String),
    /// The chain is intact, but a record holds what CapFence never writes
    /// (a `decision` that is neither a decision nor an operator action).
    #[error("{0}")]
    Record(String),
    /// The store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What the ledger needs to know of the policy in force: its digest, every
/// rule's facts (caps, quorum, eligible approvers) and its signing
/// requirements as a ledger note. Built once per runtime.
#[derive(Debug, Clone)]
pub struct PolicyFacts {
    /// The policy digest.
    pub digest: String,
    /// Every rule's facts, in precedence order.
    pub facts: Vec<RuleFacts>,
    /// [`crate::approvals::requirements_note`] of the facts.
    pub note: Option<String>,
}

impl PolicyFacts {
    /// The facts of a policy with this digest.
    pub fn new(digest: &str, facts: Vec<RuleFacts>) -> PolicyFacts {
        PolicyFacts {
            digest: digest.to_owned(),
            note: crate::approvals::requirements_note(&facts),
            facts,
        }
    }

    /// One rule's facts.
    pub fn rule(&self, id: &str) -> Option<&RuleFacts> {
        self.facts.iter().find(|f| f.id == id)
    }

    /// Whether the policy lists approvers (approvals must be signed).
    pub fn signed(&self) -> bool {
        self.note.is_some()
    }
}

/// What deciding inside the transaction needs: the decider and the policy's
/// velocity windows. Events of a capability some window covers are decided
/// there, after their window totals are read, so concurrent callers can
/// never jointly pass a cap.
pub struct Windowed {
    /// The decider.
    pub decider: Arc<dyn crate::decide::Decide>,
    /// Every window the policy's rules test.
    pub windows: Vec<capfence_compiler::window::Window>,
    /// Each window's key, in the order of `windows` (made once: a key is a
    /// formatted string, and every windowed decision names its windows).
    keys: Vec<String>,
}

impl std::fmt::Debug for Windowed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Windowed")
            .field("windows", &self.windows)
            .finish_non_exhaustive()
    }
}

impl Windowed {
    /// The decider and the windows its rules test.
    pub fn new(
        decider: Arc<dyn crate::decide::Decide>,
        windows: Vec<capfence_compiler::window::Window>,
    ) -> Windowed {
        let keys = windows
            .iter()
            .map(capfence_compiler::window::Window::key)
            .collect();
        Windowed {
            decider,
            windows,
            keys,
        }
    }

    /// Which of `windows` `win` is (by address: callers hand back the
    /// windows they were given).
    pub(crate) fn index_of(&self, win: &capfence_compiler::window::Window) -> Option<usize> {
        self.windows.iter().position(|w| std::ptr::eq(w, win))
    }

    /// Each window's key, in the order of `windows`.
    pub(crate) fn keys(&self) -> &[String] {
        &self.keys
    }

    /// `win`'s key.
    pub(crate) fn key_of(
        &self,
        win: &capfence_compiler::window::Window,
    ) -> std::borrow::Cow<'_, str> {
        match self.index_of(win).and_then(|i| self.keys.get(i)) {
            Some(key) => std::borrow::Cow::Borrowed(key),
            None => std::borrow::Cow::Owned(win.key()),
        }
    }

    /// Whether some window counts `event`'s calls.
    pub fn covers(&self, event: &capfence_compiler::Event) -> bool {
        self.windows.iter().any(|w| w.covers_event(event))
    }
}

struct Inner {
    store: Arc<dyn Store>,
    clock: SharedClock,
    ticket_ttl: Duration,
    queue: Mutex<Queue>,
    /// The gathering leader waits here for more jobs.
    gather: Condvar,
    /// Checkpoints written as the chain grows, if asked for.
    checkpoints: std::sync::OnceLock<Checkpoints>,
    /// Told how long each group commit's transaction took, and how many
    /// decisions it held (`/metrics`).
    commit_observer: std::sync::OnceLock<CommitObserver>,
}

/// Signed checkpoints written every `every` records to `dir`.
pub struct Checkpoints {
    /// How many records apart.
    pub every: u64,
    /// The directory they are written to (`checkpoint-<size>`, never
    /// overwritten).
    pub dir: std::path::PathBuf,
    /// The key that signs them.
    pub key: crate::signing::OperatorKey,
    /// The size of the last checkpoint written (one writer at a time).
    last: Mutex<u64>,
}

impl Checkpoints {
    /// Checkpoints every `every` records (at least 1) into `dir`, signed by
    /// `key`.
    pub fn new(
        every: u64,
        dir: impl Into<std::path::PathBuf>,
        key: crate::signing::OperatorKey,
    ) -> Checkpoints {
        Checkpoints {
            every: every.max(1),
            dir: dir.into(),
            key,
            last: Mutex::new(0),
        }
    }
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("every", &self.every)
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
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

/// The note holding the Merkle tree's right edge.
const FRONTIER_NOTE: &str = "merkle.frontier";

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
                checkpoints: std::sync::OnceLock::new(),
                commit_observer: std::sync::OnceLock::new(),
            }),
        }
    }

    /// A note kept beside the chain (a hint; decisions never rely on it).
    #[cfg(feature = "serve")]
    pub(crate) fn note(&self, key: &str) -> Result<Option<String>, StoreError> {
        let mut value = None;
        self.inner.store.transaction(&mut |tx| {
            value = tx.note(key)?;
            Ok(())
        })?;
        Ok(value)
    }

    /// Keeps a note (replacing one with the same key).
    #[cfg(feature = "serve")]
    pub(crate) fn set_note(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.inner
            .store
            .transaction(&mut |tx| tx.set_note(key, value))
    }

    /// The records citing a ticket or grant id, in order.
    #[cfg(feature = "serve")]
    pub(crate) fn citing(&self, id: &str) -> Result<Vec<AuditRecord>, StoreError> {
        let mut records = Vec::new();
        self.inner.store.transaction(&mut |tx| {
            records = tx.records_citing(id)?;
            Ok(())
        })?;
        Ok(records)
    }

    /// Every ticket, newest first.
    pub fn tickets(&self) -> Result<Vec<Ticket>, StoreError> {
        self.inner.store.tickets()
    }

    /// Every grant, newest first.
    pub fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.inner.store.grants()
    }
    /// The last record's (seq, hash), without verifying.
    pub fn head(&self) -> Result<(u64, String), StoreError> {
        let mut head = None;
        self.inner.store.transaction(&mut |tx| {
            head = Some(tx.head()?);
            Ok(())
        })?;
        head.ok_or_else(|| StoreError::Io("no head".to_owned().into()))
    }

    /// Tells `observe` the duration of each group commit's transaction and
    /// the number of decisions it held (the first observer set stays).
    pub fn observe_commits(&self, observe: CommitObserver) {
        let _ = self.inner.commit_observer.set(observe);
    }

    /// Writes a signed checkpoint every `checkpoints.every` records from
    /// now on (set once; later calls are ignored).
    pub fn write_checkpoints(&self, checkpoints: Checkpoints) {
        let _ = self.inner.checkpoints.set(checkpoints);
    }

    /// After a commit that left the chain at `head`: writes a checkpoint
    /// when the chain crossed a multiple of the interval since the last.
    /// A checkpoint that cannot be written is reported, never a decision's
    /// fault.
    pub(crate) fn checkpoint_if_due(&self, head: u64) {
        let Some(cp) = self.inner.checkpoints.get() else {
            return;
        };
        let Ok(mut last) = cp.last.lock() else {
            return;
        };
        if head / cp.every <= *last / cp.every {
            return;
        }
        match self.write_checkpoint(cp) {
            Ok(size) => *last = size,
            Err(e) => {
                tracing::warn!(target: "capfence::checkpoint", error = %e, "checkpoint not written")
            }
        }
    }

    fn write_checkpoint(&self, cp: &Checkpoints) -> Result<u64, String> {
        let (size, root) = self.tree_head().map_err(|e| e.to_string())?;
        let first = self
            .records_from(1, 1)
            .map_err(|e| e.to_string())?
            .pop()
            .ok_or("the ledger is empty")?;
        let origin = crate::checkpoint::origin_of(&first.hash);
        let note = crate::checkpoint::Checkpoint::signed(&origin, size, root, &cp.key).render();
        std::fs::create_dir_all(&cp.dir).map_err(|e| e.to_string())?;
        // Written aside, then linked under its name (never replacing one):
        // a reader (the console) sees a whole note or none.
        let file = cp.dir.join(format!("checkpoint-{size:012}"));
        let staged = cp.dir.join(format!(".checkpoint-{size:012}.tmp"));
        use std::io::Write as _;
        let written = std::fs::File::create(&staged)
            .and_then(|mut f| f.write_all(note.as_bytes()).and_then(|()| f.sync_all()))
            .and_then(|()| std::fs::hard_link(&staged, &file));
        let _ = std::fs::remove_file(&staged);
        written.map_err(|e| format!("{}: {e}", file.display()))?;
        Ok(size)
    }

    /// Up to `count` records from `seq` on.
    fn records_from(&self, seq: u64, count: u64) -> Result<Vec<AuditRecord>, StoreError> {
        let mut out = Vec::new();
        self.inner.store.transaction(&mut |tx| {
            out.clear();
            for s in seq..seq.saturating_add(count) {
                match tx.record_at(s)? {
                    Some(r) => out.push(r),
                    None => break,
                }
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// The tree's size and root now, kept incrementally: a note holds the
    /// tree's right edge ([`crate::merkle::Frontier`]) as of some size, and
    /// only the records after it are read and added (then the note moves
    /// on). A note ahead of the chain (a cut ledger) is not trusted: the
    /// tree is then rebuilt from the first record.
    pub fn tree_head(&self) -> Result<(u64, crate::merkle::Hash), StoreError> {
        let mut out = None;
        self.inner.store.transaction(&mut |tx| {
            let (head, _) = tx.head()?;
            let mut frontier = tx
                .note(FRONTIER_NOTE)?
                .and_then(|t| crate::merkle::Frontier::from_text(&t))
                .filter(|f| f.size() <= head)
                .unwrap_or_default();
            let from = frontier.size();
            for seq in frontier.size() + 1..=head {
                let record = tx.record_at(seq)?.ok_or_else(|| {
                    StoreError::Invalid(format!("record {seq} is missing below the head").into())
                })?;
                let leaf = crate::merkle::leaf_of_hex(&record.hash).ok_or_else(|| {
                    StoreError::Invalid(format!("record {seq}'s hash is not 64 hex digits").into())
                })?;
                frontier.push(leaf);
            }
            if frontier.size() != from {
                tx.set_note(FRONTIER_NOTE, &frontier.to_text())?;
            }
            out = Some((frontier.size(), frontier.root()));
            Ok(())
        })?;
        out.ok_or_else(|| StoreError::Invalid("no tree head".into()))
    }

    /// The Merkle leaves of every record in chain order, and the ledger's
    /// checkpoint origin (`None` while it is empty). Read in one pass; the
    /// chain itself is checked by [`verify`](Self::verify).
    pub fn tree(&self) -> Result<(Option<String>, Vec<crate::merkle::Hash>), StoreError> {
        let mut leaves = Vec::new();
        let mut origin = None;
        let mut bad = None;
        self.inner.store.scan_views(&mut |view| {
            let leaf = std::str::from_utf8(view.hash)
                .ok()
                .and_then(crate::merkle::leaf_of_hex);
            match leaf {
                Some(leaf) => {
                    if origin.is_none() {
                        origin = std::str::from_utf8(view.hash)
                            .ok()
                            .map(crate::checkpoint::origin_of);
                    }
                    leaves.push(leaf);
                    true
                }
                None => {
                    bad = Some(view.seq);
                    false
                }
            }
        })?;
        if let Some(seq) = bad {
            return Err(StoreError::Invalid(
                format!("record {seq}'s hash is not 64 hex digits").into(),
            ));
        }
        Ok((origin, leaves))
    }

    /// Calls `visit` with each record after seq `after`, in order, until it
    /// returns false. A read: it never waits for, or delays, a writer.
    pub fn records_after(
        &self,
        after: u64,
        visit: &mut dyn FnMut(AuditRecord) -> bool,
    ) -> Result<(), StoreError> {
        self.inner.store.scan_after(after, visit)
    }

    /// Waits until a record after seq `after` is committed, or `timeout`
    /// passes (`true` when there is one): see [`Store::wait_for_records`].
    pub fn wait_for_records(
        &self,
        after: u64,
        timeout: std::time::Duration,
    ) -> Result<bool, StoreError> {
        self.inner.store.wait_for_records(after, timeout)
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

/// Seals `record` onto the chain's head and appends it.
/// Seals `record` onto the chain's head and appends it: its seq.
fn append(tx: &mut dyn Tx, mut record: AuditRecord) -> Result<u64, StoreError> {
    let (seq, prev) = tx.head()?;
    record.seq = seq + 1;
    record.seal(&prev);
    tx.append(&record)?;
    Ok(record.seq)
}
