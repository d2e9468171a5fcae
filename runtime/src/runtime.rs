//! [`ActionRuntime`]: decide, settle approvals, record, answer.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use capfence_compiler::{Decision, Event, LoadError, Policy};

use crate::action::ActionEvent;
use crate::approvals::{Grant, GrantLimits};
use crate::clock::{SharedClock, SystemClock};
use crate::decide::Decide;
use crate::ledger::{
    Ledger, Operator, OperatorError, PolicyFacts, TicketOutcome, VerifyError, Windowed,
};
use crate::store::sqlite::{SqliteOptions, SqliteStore};
use crate::store::{Store, StoreError};
use crate::verdict::Verdict;

/// One `tracing` event per decision, target `capfence::decision`: at INFO
/// the capability, decision, rule, approval id, whether it was authorized
/// and the latency in microseconds (decision, approvals and the durable
/// record); a storage fault at WARN; the payload only at TRACE. Costs a
/// relaxed atomic load when no subscriber listens.
fn trace_decision(event: &Event, result: &Result<Verdict, RuntimeError>, latency: Duration) {
    let latency_us = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
    let capability = CapabilityOf(event);
    match result {
        Ok(verdict) => tracing::info!(
            target: "capfence::decision",
            capability = %capability,
            decision = verdict.decision.as_str(),
            rule = verdict.rule.as_deref().unwrap_or(""),
            approval_id = verdict.approval_id.as_deref().unwrap_or(""),
            authorized = verdict.authorized,
            latency_us,
            "decision"
        ),
        Err(e) => tracing::warn!(
            target: "capfence::decision",
            capability = %capability,
            decision = "deny",
            error = %e,
            latency_us,
            "decision denied: no audit record could be written"
        ),
    }
    if tracing::enabled!(target: "capfence::decision", tracing::Level::TRACE) {
        let payload = crate::approvals::canonical_payload(event);
        tracing::trace!(
            target: "capfence::decision",
            capability = %capability,
            actor = event.actor.as_deref().unwrap_or(""),
            payload = %payload,
            "decision payload"
        );
    }
}

/// An event's capability (`resource.action`, empty when it names none),
/// written only when a subscriber formats it.
struct CapabilityOf<'a>(&'a Event);

impl std::fmt::Display for CapabilityOf<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (&self.0.resource, &self.0.action) {
            (Some(resource), Some(action)) => write!(f, "{resource}.{action}"),
            _ => Ok(()),
        }
    }
}

/// The state directory used when none is given: `$CAPFENCE_STATE`, else `.capfence`.
pub fn default_state_dir() -> PathBuf {
    std::env::var_os("CAPFENCE_STATE").map_or_else(|| PathBuf::from(".capfence"), PathBuf::from)
}

/// Why a runtime could not be built or an explicit call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuntimeError {
    /// The policy does not load.
    #[error(transparent)]
    Policy(#[from] LoadError),
    /// The store failed.
    #[error(transparent)]
    Storage(#[from] StoreError),
    /// An approver's public key is not a usable Ed25519 key.
    #[error("approver `{0}`: the public key is not a usable Ed25519 key")]
    Approver(String),
}

/// Decides agent tool calls: policy, then approvals, then a durable audit
/// record, then the verdict. A cheap `Clone + Send + Sync` handle; clones
/// share one store connection and one group-commit queue.
///
/// ```
/// use std::time::Duration;
/// use capfence::{payload, ActionEvent, ActionRuntime, DecisionKind, Risk};
///
/// let state = std::env::temp_dir().join(format!("capfence-doc-{}", std::process::id()));
/// let runtime = ActionRuntime::builder(concat!(env!("CARGO_MANIFEST_DIR"), "/../policies/fintech_policy.yaml"))
///     .state_dir(&state)
///     .build()?;
/// let event = ActionEvent::create("treasury-agent", "transfer", "payments", "production", Risk::High,
///     payload! {"amount" => "2500.00", "destination" => "vendor-7"});
/// let verdict = runtime.execute(&event);
/// assert_eq!(verdict.decision, DecisionKind::RequireApproval);
/// runtime.grant_capability("treasury-agent", "payments.transfer.production", "ops@corp", Duration::from_secs(30))?;
/// assert!(runtime.execute(&event).authorized);
/// # std::fs::remove_dir_all(&state)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone)]
pub struct ActionRuntime {
    decider: Arc<dyn Decide>,
    /// The decider's rule facts and signing requirements, read once.
    policy: Arc<PolicyFacts>,
    /// The decider and its velocity windows, if it has any.
    windowed: Option<Arc<Windowed>>,
    /// The policy's text, for a ledger that has none active yet.
    source: Arc<str>,
    ledger: Ledger,
}

impl std::fmt::Debug for ActionRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ActionRuntime")
            .field("digest", &self.decider.digest())
            .finish_non_exhaustive()
    }
}

/// A `'static` table as a shared decider.
struct Static(&'static dyn Decide);

impl crate::decide::Sealed for Static {}

impl Decide for Static {
    fn decide(&self, event: &Event) -> capfence_compiler::Decision {
        self.0.decide(event)
    }

    fn digest(&self) -> &str {
        self.0.digest()
    }

    fn rule_facts(&self) -> Vec<capfence_compiler::facts::RuleFacts> {
        self.0.rule_facts()
    }

    fn source(&self) -> &str {
        self.0.source()
    }

    fn windows(&self) -> Vec<capfence_compiler::window::Window> {
        self.0.windows()
    }
}

enum Source {
    Path(PathBuf),
    Decider(Arc<dyn Decide>),
}

/// Configures an [`ActionRuntime`].
pub struct RuntimeBuilder {
    source: Source,
    state_dir: Option<PathBuf>,
    sqlite: SqliteOptions,
    store: Option<Arc<dyn Store>>,
    store_url: Option<String>,
    clock: SharedClock,
    ticket_ttl: Duration,
    checkpoints: Option<crate::ledger::Checkpoints>,
}

impl RuntimeBuilder {
    fn new(source: Source) -> RuntimeBuilder {
        RuntimeBuilder {
            source,
            state_dir: None,
            sqlite: SqliteOptions::default(),
            store: None,
            store_url: None,
            clock: Arc::new(SystemClock),
            ticket_ttl: Duration::from_secs(3600),
            checkpoints: None,
        }
    }

    /// Writes a signed checkpoint of the ledger's Merkle tree every
    /// `checkpoints.every` records, into its directory (after the commit
    /// that crossed the mark; a checkpoint that cannot be written is
    /// reported through `tracing`, never a decision's fault).
    pub fn checkpoints(mut self, checkpoints: crate::ledger::Checkpoints) -> Self {
        self.checkpoints = Some(checkpoints);
        self
    }

    /// Where the SQLite state lives (default [`default_state_dir`]).
    pub fn state_dir(mut self, dir: impl AsRef<Path>) -> Self {
        self.state_dir = Some(dir.as_ref().to_owned());
        self
    }

    /// How long to wait for another writer before denying (default 5 s).
    pub fn lock_timeout(mut self, timeout: Duration) -> Self {
        self.sqlite.lock_timeout = timeout;
        self
    }

    /// SQLite options in full (read-only, page limit, lock timeout).
    pub fn sqlite_options(mut self, options: SqliteOptions) -> Self {
        self.sqlite = options;
        self
    }

    /// Use this store instead of SQLite.
    pub fn store(mut self, store: Arc<dyn Store>) -> Self {
        self.store = Some(store);
        self
    }

    /// The ledger named by a URL (see [`crate::store::open_url`]):
    /// `postgres://user@host/db` for a PostgreSQL server every agent host
    /// shares, or a SQLite state directory. Overrides [`state_dir`](Self::state_dir).
    pub fn store_url(mut self, url: impl Into<String>) -> Self {
        self.store_url = Some(url.into());
        self
    }

    /// Use this clock (tests of expiry).
    pub fn clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// How long a ticket stays pending or approved (default one hour).
    pub fn ticket_ttl(mut self, ttl: Duration) -> Self {
        self.ticket_ttl = ttl;
        self
    }

    /// Loads the policy and opens the store. A store that cannot be opened
    /// does not fail the build: every `execute` denies, naming the fault,
    /// until it can be opened.
    pub fn build(self) -> Result<ActionRuntime, RuntimeError> {
        let decider: Arc<dyn Decide> = match &self.source {
            Source::Path(path) => Arc::new(Policy::load(path)?),
            Source::Decider(d) => Arc::clone(d),
        };
        for f in decider.rule_facts() {
            if let Some(bad) = f
                .approvers
                .iter()
                .find(|a| !crate::signing::usable_public_key(&a.key))
            {
                return Err(RuntimeError::Approver(bad.name.to_string()));
            }
        }
        self.assemble(decider)
    }

    fn assemble(self, decider: Arc<dyn Decide>) -> Result<ActionRuntime, RuntimeError> {
        let store = match (self.store, &self.store_url) {
            (Some(store), _) => store,
            (None, Some(url)) => crate::store::open_url(url, self.sqlite.lock_timeout)?,
            (None, None) => Arc::new(SqliteStore::new(
                self.state_dir.unwrap_or_else(default_state_dir),
                self.sqlite,
            )),
        };
        // The ledger's active policy is checked in each decision's
        // transaction: a fresh ledger takes this policy as its first (on
        // the record, before the first decision); any other keeps its own,
        // and this runtime's calls are denied unless they agree.
        let ledger = Ledger::new(store, self.clock, self.ticket_ttl);
        if let Some(checkpoints) = self.checkpoints {
            ledger.write_checkpoints(checkpoints);
        }
        Ok(ActionRuntime {
            policy: policy_facts(decider.as_ref()),
            windowed: windowed(&decider),
            source: Arc::from(decider.source()),
            decider,
            ledger,
        })
    }
}

fn policy_facts(decider: &dyn Decide) -> Arc<PolicyFacts> {
    Arc::new(PolicyFacts::new(decider.digest(), decider.rule_facts()))
}

fn windowed(decider: &Arc<dyn Decide>) -> Option<Arc<Windowed>> {
    let windows = decider.windows();
    (!windows.is_empty()).then(|| Arc::new(Windowed::new(Arc::clone(decider), windows)))
}

impl ActionRuntime {
    /// A runtime for the policy file at `path`, with state in the default directory.
    pub fn from_policy(path: impl AsRef<Path>) -> Result<ActionRuntime, RuntimeError> {
        ActionRuntime::builder(path).build()
    }

    /// A builder for the policy file at `path` (reference evaluator).
    pub fn builder(path: impl AsRef<Path>) -> RuntimeBuilder {
        RuntimeBuilder::new(Source::Path(path.as_ref().to_owned()))
    }

    /// A runtime for a compiled table (`capfence::policy!`), with state in the
    /// default directory.
    ///
    /// ```
    /// static POLICY: &dyn capfence::Decide = &capfence::policy!("../policies/fintech_policy.yaml");
    /// # let state = std::env::temp_dir().join(format!("capfence-compiled-doc-{}", std::process::id()));
    /// let runtime = capfence::ActionRuntime::compiled_builder(POLICY).state_dir(&state).build()?;
    /// assert_eq!(runtime.policy_digest().len(), 64);
    /// # std::fs::remove_dir_all(&state).ok();
    /// # Ok::<(), capfence::RuntimeError>(())
    /// ```
    pub fn from_compiled(table: &'static dyn Decide) -> Result<ActionRuntime, RuntimeError> {
        ActionRuntime::compiled_builder(table).build()
    }

    /// A builder for a compiled table.
    pub fn compiled_builder(table: &'static dyn Decide) -> RuntimeBuilder {
        RuntimeBuilder::new(Source::Decider(Arc::new(Static(table))))
    }

    /// A builder for an already decidable policy: a compiled table, or a
    /// loaded [`Policy`].
    pub fn with_decider(decider: Arc<dyn Decide>) -> RuntimeBuilder {
        RuntimeBuilder::new(Source::Decider(decider))
    }

    /// Decides `event`. Never panics; authorizes only after the audit record is
    /// durable; a storage fault is a deny whose reason names it.
    pub fn execute(&self, event: &ActionEvent) -> Verdict {
        self.execute_event(event.event())
    }

    /// [`execute`](Self::execute) for a plain [`Event`].
    pub fn execute_event(&self, event: &Event) -> Verdict {
        self.try_execute_event(event).unwrap_or_else(|e| {
            Verdict::deny(format!("denied: no audit record could be written ({e})"))
        })
    }

    /// [`execute_event`](Self::execute_event) for an async caller (the
    /// console's HTTP API): the same decision, record and verdict, awaited
    /// without a thread per call; a batch this call leads is committed on a
    /// blocking thread.
    #[cfg(feature = "serve")]
    pub async fn execute_event_async(&self, event: Event) -> Verdict {
        let started = std::time::Instant::now();
        let windowed = self.windowed.as_ref().filter(|w| w.covers(&event)).cloned();
        let decision = match &windowed {
            Some(_) => Decision::refused("decided on its window totals"),
            None => self.decider.decide(&event),
        };
        // The event goes to the ledger; the trace needs its capability (and
        // the rest only at TRACE).
        let traced = if tracing::enabled!(target: "capfence::decision", tracing::Level::TRACE) {
            event.clone()
        } else {
            Event {
                resource: event.resource.clone(),
                action: event.action.clone(),
                ..Event::default()
            }
        };
        let result = self
            .ledger
            .settle_async(
                event,
                decision,
                self.decider.digest(),
                &self.source,
                Some(Arc::clone(&self.policy)),
                windowed,
            )
            .await
            .map_err(RuntimeError::from);
        trace_decision(&traced, &result, started.elapsed());
        result.unwrap_or_else(|e| {
            Verdict::deny(format!("denied: no audit record could be written ({e})"))
        })
    }

    /// Records a deny for input that could not be read as an event (a line
    /// that is not UTF-8, not JSON, too long): every input gets a verdict and
    /// a record. `reason` says what was wrong with it.
    pub fn execute_unreadable(&self, reason: &str) -> Verdict {
        self.deny_event(Event::default(), Decision::unreadable(reason))
    }

    /// Records `decision`, a deny made without consulting the policy (a gate
    /// checked against another policy than the runtime's, an MCP call that
    /// cannot be decided), for `event`.
    pub(crate) fn deny_event(&self, event: Event, decision: Decision) -> Verdict {
        self.traced(event, |runtime, event| {
            Ok(runtime.ledger.settle(
                event,
                decision,
                runtime.decider.digest(),
                &runtime.source,
                None,
                None,
            )?)
        })
    }

    /// Settles a gated call. The runtime decides the event it records with
    /// its own decider; `gate` is the decision the gate's table made from
    /// its typed arguments (`None` for a capability a velocity window counts,
    /// decided on the ledger's totals). When the two differ, the arguments
    /// the gate decided on are not the ones it records and runs with: the
    /// call is denied, naming both.
    pub(crate) fn execute_decided(&self, event: Event, gate: Option<Decision>) -> Verdict {
        self.traced(event, |runtime, event| {
            let covered = runtime.windowed.as_ref().is_some_and(|w| w.covers(&event));
            if covered {
                return runtime.settle_owned(event, None);
            }
            let own = runtime.decider.decide(&event);
            if let Some(gate) = gate
                && (gate.kind != own.kind || gate.rule != own.rule)
            {
                let reason = format!(
                    "denied: the gate decided {} ({}) on its arguments, but the recorded call is \
                     decided {} ({}): the gate's arguments are not what it records and runs",
                    gate.kind.as_str(),
                    gate.rule.as_deref().unwrap_or("no rule"),
                    own.kind.as_str(),
                    own.rule.as_deref().unwrap_or("no rule"),
                );
                let decision = Decision::refused(reason);
                return Ok(runtime.ledger.settle(
                    event,
                    decision,
                    runtime.decider.digest(),
                    &runtime.source,
                    None,
                    None,
                )?);
            }
            runtime.settle_owned(event, Some(own))
        })
    }

    /// Runs `settle` on `event` with the one `tracing` event every decision
    /// gets, whatever path made it; a storage fault is a deny naming it.
    fn traced(
        &self,
        event: Event,
        settle: impl FnOnce(&Self, Event) -> Result<Verdict, RuntimeError>,
    ) -> Verdict {
        let started = std::time::Instant::now();
        // The event moves into the ledger; keep a copy only for a listener.
        let copy = tracing::enabled!(target: "capfence::decision", tracing::Level::INFO)
            .then(|| event.clone());
        let result = settle(self, event);
        if let Some(event) = copy {
            trace_decision(&event, &result, started.elapsed());
        }
        result.unwrap_or_else(|e| {
            Verdict::deny(format!("denied: no audit record could be written ({e})"))
        })
    }

    /// Like [`execute`](Self::execute), but a storage fault is an `Err`
    /// (nothing was authorized or recorded).
    pub fn try_execute(&self, event: &ActionEvent) -> Result<Verdict, RuntimeError> {
        self.try_execute_event(event.event())
    }

    fn try_execute_event(&self, event: &Event) -> Result<Verdict, RuntimeError> {
        let started = std::time::Instant::now();
        let result = self.settle_event(event);
        trace_decision(event, &result, started.elapsed());
        result
    }

    fn settle_event(&self, event: &Event) -> Result<Verdict, RuntimeError> {
        self.settle_owned(event.clone(), None)
    }

    /// Settles `event`, decided by `decided` when given (a decision of this
    /// runtime's policy), else by the decider.
    fn settle_owned(
        &self,
        event: Event,
        decided: Option<Decision>,
    ) -> Result<Verdict, RuntimeError> {
        // A capability some velocity window covers is decided inside the
        // transaction, on its window totals; this decision is a placeholder.
        let windowed = self.windowed.as_ref().filter(|w| w.covers(&event)).cloned();
        let decision = match (&windowed, decided) {
            (Some(_), _) => Decision::refused("decided on its window totals"),
            (None, Some(decision)) => decision,
            (None, None) => self.decider.decide(&event),
        };
        // The deciding rule's facts: its conditions and limits for the
        // verdict's detail; for approvals, the fields a grant's caps may
        // name, the quorum and who may sign.
        let policy = Some(Arc::clone(&self.policy));
        Ok(self.ledger.settle(
            event,
            decision,
            self.decider.digest(),
            &self.source,
            policy,
            windowed,
        )?)
    }

    /// The case study's grant: `capability` is `resource.action.environment`
    /// (`payments.transfer.production`), by an operator's name (refused
    /// where the policy lists approvers) or key.
    pub fn grant_capability<'a>(
        &self,
        actor: &str,
        capability: &str,
        granted_by: impl Into<Operator<'a>>,
        duration: Duration,
    ) -> Result<Grant, OperatorError> {
        let (cap, environment) = capability
            .rsplit_once('.')
            .ok_or_else(|| crate::ledger::Invalid::NotACapability(capability.to_owned()))?;
        self.grant(
            actor,
            cap,
            environment,
            granted_by,
            duration,
            GrantLimits::default(),
        )
    }

    /// A grant for (actor, capability, environment) with limits, by an
    /// operator's name or key. Every capped field must be one a
    /// `require_approval` rule of the capability compares as a number
    /// (refused otherwise, naming the field). By name: refused where the
    /// policy lists approvers. By key: the key must belong to an approver of
    /// a `require_approval` rule of the capability that needs one approval,
    /// and the grant satisfies only such rules.
    pub fn grant<'a>(
        &self,
        actor: &str,
        capability: &str,
        environment: &str,
        granted_by: impl Into<Operator<'a>>,
        duration: Duration,
        limits: GrantLimits,
    ) -> Result<Grant, OperatorError> {
        self.ledger.grant(
            actor,
            capability,
            environment,
            granted_by.into(),
            duration,
            limits,
            Some(&self.policy),
        )
    }

    /// A grant that ends at `expires_at` (µs since the epoch), signed
    /// elsewhere over the statement [`grant_statement`](Self::grant_statement)
    /// gave (see [`Ledger::grant_at`](crate::Ledger::grant_at)).
    pub fn grant_at<'a>(
        &self,
        scope: crate::ledger::GrantScope<'_>,
        granted_by: impl Into<Operator<'a>>,
        expires_at: i64,
        limits: GrantLimits,
    ) -> Result<Grant, OperatorError> {
        self.ledger.grant_at(
            scope,
            granted_by.into(),
            expires_at,
            limits,
            Some(&self.policy),
        )
    }

    /// The statement `public_key` signs to make that grant now.
    pub fn grant_statement(
        &self,
        scope: crate::ledger::GrantScope<'_>,
        public_key: &str,
        expires_at: i64,
        limits: GrantLimits,
    ) -> Result<Vec<u8>, OperatorError> {
        self.ledger
            .grant_statement(scope, public_key, expires_at, limits, Some(&self.policy))
    }

    /// Records what became of the authorized call whose decision is record
    /// `seq` (its verdict's `seq`): executed, with the rail's reference and
    /// the amount sent, or failed. From then on a failed call counts nothing
    /// in this policy's velocity windows, and an executed one the amount it
    /// sent. Refused for a record that is no authorized call, a call that
    /// has its outcome, or a runtime whose policy is not the active one.
    pub fn record_outcome(
        &self,
        seq: u64,
        outcome: &crate::ledger::Outcome,
    ) -> Result<crate::AuditRecord, crate::ledger::OutcomeError> {
        self.ledger.record_outcome(
            seq,
            outcome,
            self.decider.digest(),
            self.windowed.as_deref(),
        )
    }

    /// Approves a pending ticket, by an operator's name (refused where the
    /// policy lists approvers) or key (eligible for the ticket's rule). The
    /// ticket is approved once the rule's quorum of distinct approvers has
    /// signed; the outcome says how many have.
    pub fn approve<'a>(
        &self,
        ticket: &str,
        by: impl Into<Operator<'a>>,
    ) -> Result<TicketOutcome, OperatorError> {
        self.ledger.approve(ticket, by.into(), Some(&self.policy))
    }

    /// The policy's facts: each rule's approvers, quorum and limits.
    pub fn policy_facts(&self) -> &crate::ledger::PolicyFacts {
        &self.policy
    }

    /// The newest `limit` tickets as their chains tell them (who signed, how
    /// many more, expired), for an operator's screen.
    pub fn ticket_views(
        &self,
        limit: usize,
    ) -> Result<Vec<crate::ledger::TicketView>, crate::store::StoreError> {
        self.ledger.ticket_views(Some(&self.policy), limit)
    }

    /// One ticket as its chain tells it (`None`: no such ticket, or a row
    /// its chain does not vouch for).
    pub fn ticket_view(
        &self,
        ticket: crate::approvals::TicketId,
    ) -> Result<Option<crate::ledger::TicketView>, crate::store::StoreError> {
        self.ledger.ticket_view(ticket, Some(&self.policy))
    }

    /// The statement `public_key` signs to approve (`approve`) or reject
    /// `ticket` now, for a signer that holds the key elsewhere (the
    /// console's page): sign it and pass a [`Presigned`](crate::ledger::Presigned)
    /// to [`approve`](Self::approve) or [`reject`](Self::reject), which
    /// rebuild the statement and refuse a signature over any other bytes.
    pub fn ticket_statement(
        &self,
        ticket: &str,
        approve: bool,
        public_key: &str,
    ) -> Result<Vec<u8>, OperatorError> {
        self.ledger
            .ticket_statement(ticket, approve, public_key, Some(&self.policy))
    }

    /// The statement `public_key` signs to revoke `grant` now (see
    /// [`ticket_statement`](Self::ticket_statement)); an unsigned grant has
    /// none (it is revoked by name).
    pub fn revoke_statement(
        &self,
        grant: &str,
        public_key: &str,
    ) -> Result<Vec<u8>, OperatorError> {
        self.ledger
            .revoke_statement(grant, public_key, Some(&self.policy))
    }

    /// Rejects a pending ticket, by an operator's name (refused where the
    /// policy lists approvers) or key (eligible for the ticket's rule).
    pub fn reject<'a>(
        &self,
        ticket: &str,
        by: impl Into<Operator<'a>>,
    ) -> Result<TicketOutcome, OperatorError> {
        self.ledger.reject(ticket, by.into(), Some(&self.policy))
    }

    /// Revokes a grant, by an operator's name (refused for a signed grant)
    /// or key (a signed grant needs one listed by the policy it was signed
    /// under).
    pub fn revoke<'a>(
        &self,
        grant: &str,
        by: impl Into<Operator<'a>>,
    ) -> Result<Grant, OperatorError> {
        self.ledger.revoke(grant, by.into(), Some(&self.policy))
    }

    /// Verifies the audit chain, the approvals, and (for a policy with
    /// velocity windows) the window rows against the chain's allowed calls.
    pub fn verify(&self) -> Result<(u64, String), VerifyError> {
        let head = self.ledger.verify(None)?;
        if let Some(w) = &self.windowed {
            self.ledger
                .verify_windows(&w.windows, self.decider.digest())?;
        }
        Ok(head)
    }

    /// The ledger (chain and approvals).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// The policy digest recorded with each decision.
    pub fn policy_digest(&self) -> &str {
        self.decider.digest()
    }
}
