//! Operator actions: approve, reject, grant, revoke. Each is one transaction
//! holding the change and its chain record; tickets and grants are judged by
//! what their chain records say, never by their rows alone.

use std::time::Duration;

use capfence_compiler::facts::RuleFacts;
use capfence_compiler::policy::DecisionKind;
use capfence_compiler::token;

use super::{Ledger, PolicyFacts, append, micros};
use crate::approvals::{
    self, Grant, GrantId, GrantLimits, Ticket, TicketId, TicketStatus, requirements_key,
};
use crate::audit::{AuditRecord, RecordKind};
use crate::clock::rfc3339;
use crate::signing::OperatorKey;
use crate::store::{StoreError, Tx};

/// Whom a grant is for: the actor, and the capability and environment it
/// lets them through.
#[derive(Debug, Clone, Copy)]
pub struct GrantScope<'a> {
    /// The agent.
    pub actor: &'a str,
    /// `resource.action`.
    pub capability: &'a str,
    /// The environment.
    pub environment: &'a str,
}

/// When a grant ends.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    /// This long after it is recorded.
    After(Duration),
    /// At this time, µs since the epoch (a signer elsewhere signed it).
    At(i64),
}

/// Who carries out an operator action.
#[derive(Clone, Copy)]
pub enum Operator<'a> {
    /// A name, taken as given: only where the policy lists no approvers.
    Name(&'a str),
    /// An operator's key: the action is signed, and the signer is the name
    /// the policy gives the key. An [`OperatorKey`] signs here; a
    /// [`Presigned`] signature, made elsewhere (the console's page), is
    /// checked against the statement the ledger builds.
    Key(&'a dyn Signer),
}

impl std::fmt::Debug for Operator<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Operator::Name(name) => f.debug_tuple("Name").field(name).finish(),
            Operator::Key(key) => f.debug_tuple("Key").field(&key.public_key()).finish(),
        }
    }
}

/// What signs an operator's statement: a key held here, or a signature
/// made where the key is (a browser) and only checked here.
pub trait Signer {
    /// The public key, `ed25519:<base64>`.
    fn public_key(&self) -> String;
    /// What the key calls itself, for messages (the policy's name for the
    /// key is what is recorded).
    fn key_name(&self) -> &str;
    /// The signature of `statement` (base64), or the refusal when this
    /// signer cannot give one: a presigned signature over other bytes.
    fn sign_statement(&self, statement: &[u8]) -> Result<String, Refusal>;
    /// A signer that only reads statements: an action that would record
    /// without a signature (an unsigned grant's revocation) refuses it.
    fn only_reads(&self) -> bool {
        false
    }
}

impl Signer for OperatorKey {
    fn public_key(&self) -> String {
        OperatorKey::public_key(self)
    }

    fn key_name(&self) -> &str {
        self.name()
    }

    fn sign_statement(&self, statement: &[u8]) -> Result<String, Refusal> {
        Ok(self.sign(statement))
    }
}

/// A signature made elsewhere over the statement of one operator action
/// (the console's page signs with a key the server never sees). The ledger
/// builds the statement from the chain and accepts the action only if this
/// signature verifies over exactly those bytes: a field changed on the way
/// (by a proxy, or by the server) is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Presigned {
    /// The signer's public key, `ed25519:<base64>`.
    pub public_key: String,
    /// The signature, base64.
    pub signature: String,
}

impl Signer for Presigned {
    fn public_key(&self) -> String {
        self.public_key.clone()
    }

    fn key_name(&self) -> &str {
        &self.public_key
    }

    fn sign_statement(&self, statement: &[u8]) -> Result<String, Refusal> {
        if crate::signing::verify(&self.public_key, statement, &self.signature) {
            Ok(self.signature.clone())
        } else {
            Err(Refusal::StatementMismatch {
                public: self.public_key.clone(),
                statement: String::from_utf8_lossy(statement).into_owned(),
            })
        }
    }
}

/// Runs `action` as `public_key` with a signer that keeps the statement it
/// is asked to sign and refuses it: the statement, or the action's refusal.
fn read_statement<T>(
    public_key: &str,
    action: impl FnOnce(Operator<'_>) -> Result<T, OperatorError>,
) -> Result<Vec<u8>, OperatorError> {
    let capture = Capture {
        public_key: public_key.to_owned(),
        statement: std::sync::Mutex::new(None),
    };
    let result = action(Operator::Key(&capture));
    let kept = capture.statement.lock().ok().and_then(|mut s| s.take());
    match (kept, result) {
        (Some(statement), _) => Ok(statement),
        (None, Err(e)) => Err(e),
        (None, Ok(_)) => Err(Invalid::NothingDone.into()),
    }
}

/// A signer that keeps the statement it is asked to sign and refuses, so
/// the action stops before anything is written.
struct Capture {
    public_key: String,
    statement: std::sync::Mutex<Option<Vec<u8>>>,
}

impl Signer for Capture {
    fn public_key(&self) -> String {
        self.public_key.clone()
    }

    fn key_name(&self) -> &str {
        &self.public_key
    }

    fn sign_statement(&self, statement: &[u8]) -> Result<String, Refusal> {
        if let Ok(mut kept) = self.statement.lock() {
            *kept = Some(statement.to_vec());
        }
        Err(Refusal::StatementMismatch {
            public: self.public_key.clone(),
            statement: String::new(),
        })
    }

    fn only_reads(&self) -> bool {
        true
    }
}

impl<'a> From<&'a Presigned> for Operator<'a> {
    fn from(signed: &'a Presigned) -> Operator<'a> {
        Operator::Key(signed)
    }
}

impl<'a> From<&'a str> for Operator<'a> {
    fn from(name: &'a str) -> Operator<'a> {
        Operator::Name(name)
    }
}

impl<'a> From<&'a OperatorKey> for Operator<'a> {
    fn from(key: &'a OperatorKey) -> Operator<'a> {
        Operator::Key(key)
    }
}

/// An approve or reject, carried out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketOutcome {
    /// The ticket as it now stands (`pending` while a quorum is incomplete).
    pub ticket: Ticket,
    /// The distinct approvers so far.
    pub approvals: Vec<String>,
    /// How many the rule needs.
    pub needed: u32,
}

/// An operator action that could not be carried out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OperatorError {
    /// No ticket or grant with that id.
    #[error("no {kind} with id {id}")]
    NotFound {
        /// A ticket or a grant.
        kind: Approval,
        /// The id as given.
        id: String,
    },
    /// The ticket is not pending.
    #[error("ticket {ticket} is {}, not pending", status.as_str())]
    NotPending {
        /// The ticket.
        ticket: String,
        /// Where it stands.
        status: TicketStatus,
    },
    /// The ticket has expired.
    #[error("ticket {0} has expired")]
    Expired(String),
    /// The grant was already revoked.
    #[error("grant {grant} was already revoked by {by}")]
    AlreadyRevoked {
        /// The grant.
        grant: String,
        /// Who revoked it.
        by: String,
    },
    /// A malformed argument, or a ticket or grant the chain does not vouch
    /// for.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Refused; nothing was recorded.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// A grant's caps do not fit the policy.
    #[error(transparent)]
    Caps(#[from] crate::approvals::CapError),
    /// The store failed; nothing was done.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an operator action could not be taken as asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Invalid {
    /// No operator name.
    #[error("an operator action needs the operator's name (--by)")]
    NoOperatorName,
    /// A grant's actor, environment or capability is not a plain name.
    #[error(
        "a grant needs an actor and an environment that are plain tokens and a capability \
         `resource.action` (got {actor:?}, {capability:?}, {environment:?})"
    )]
    GrantSubject {
        /// The actor as given.
        actor: String,
        /// The capability as given.
        capability: String,
        /// The environment as given.
        environment: String,
    },
    /// A grant of no time.
    #[error("a grant needs a positive duration")]
    ZeroDuration,
    /// Not `resource.action.environment`.
    #[error("`{0}` is not `resource.action.environment`")]
    NotACapability(String),
    /// The audit chain does not vouch for the ticket or grant (its rows were
    /// written outside CapFence, or its records do not replay).
    #[error("{kind} {id} is not vouched for by the audit chain: {why}")]
    Unvouched {
        /// A ticket or a grant.
        kind: Approval,
        /// Its id.
        id: String,
        /// What does not replay.
        why: String,
    },
    /// A ticket row that does not match the event its chain opened it for.
    #[error("ticket {ticket}'s row does not match the event its chain records opened it for")]
    RowMismatch {
        /// The ticket.
        ticket: String,
    },
    /// A ticket opened under another policy than the one given.
    #[error(
        "ticket {ticket} was opened under policy {opened_under}, not under this one ({current}); \
         an approval under another policy could never let its event through"
    )]
    OtherPolicy {
        /// The ticket.
        ticket: String,
        /// The policy it was opened under (short digest).
        opened_under: String,
        /// The policy given (short digest).
        current: String,
    },
    /// The action recorded nothing.
    #[error("operator action did nothing")]
    NothingDone,
    /// The policy to activate is the active one.
    #[error("policy {0} is already the active policy")]
    AlreadyActive(String),
    /// No policy is active yet: the first one to decide is activated.
    #[error("the ledger holds no active policy yet: the first policy to decide is activated")]
    NoActivePolicy,
    /// An approver the active policy does not let sign its changes.
    #[error("`{0}` may not sign changes of the active policy (its `policy_changes.approvers`)")]
    MayNotSignPolicyChanges(String),
    /// A signer signing a proposal twice.
    #[error("`{signer}` has already signed {proposal}")]
    AlreadySigned {
        /// The signer.
        signer: String,
        /// The proposal.
        proposal: String,
    },
    /// A proposal already activated.
    #[error("{0} was already activated")]
    ProposalDone(String),
    /// A proposal of a change to a policy that is no longer active.
    #[error("{proposal} changes policy {base}, which is no longer the active policy")]
    ProposalStale {
        /// The proposal.
        proposal: String,
        /// The policy it changes.
        base: String,
    },
    /// Not enough signatures yet.
    #[error("{proposal} has {have} valid signature(s); it needs {needed}")]
    ProposalUnsigned {
        /// The proposal.
        proposal: String,
        /// Valid distinct signatures so far.
        have: usize,
        /// Needed.
        needed: u32,
    },
    /// The change's delay has not passed.
    #[error(
        "{proposal} may be activated from {until} (the active policy's `policy_changes.delay`)"
    )]
    ProposalDelayed {
        /// The proposal.
        proposal: String,
        /// When it may be.
        until: String,
    },
    /// The active policy lists approvers: a change must be proposed and
    /// signed by them.
    #[error(
        "the active policy {0} lists approvers: a policy change must be proposed and signed \
         (`capfence policy propose`), not activated by name"
    )]
    PolicyChangeNeedsSignatures(String),
}

/// A ticket or a grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// A ticket (`T-7`).
    Ticket,
    /// A grant (`G-3`).
    Grant,
    /// A proposed policy change (`P-1`).
    Proposal,
}

impl std::fmt::Display for Approval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Approval::Ticket => "ticket",
            Approval::Grant => "grant",
            Approval::Proposal => "policy proposal",
        })
    }
}

/// Why an operator action was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// A name where the ticket's rule needs signed approvals.
    #[error(
        "ticket {ticket}'s rule {rule} needs {approvals} signed approval{} from {approvers}: sign \
         it with an operator key (--key)",
        if *approvals == 1 { "" } else { "s" }
    )]
    SignatureNeeded {
        /// The ticket.
        ticket: String,
        /// Its rule.
        rule: String,
        /// How many approvals the rule needs.
        approvals: u32,
        /// Who may sign, in words.
        approvers: String,
    },
    /// The same approver twice.
    #[error("`{approver}` has already approved {ticket}; it needs {needed} distinct approvers")]
    AlreadyApproved {
        /// Who.
        approver: String,
        /// The ticket.
        ticket: String,
        /// How many distinct approvers it needs.
        needed: u32,
    },
    /// An unsigned grant, or one without its policy, on a ledger that holds
    /// tickets of a policy that lists approvers.
    #[error(
        "this ledger holds tickets of a policy that lists approvers: a grant must be signed \
         (--key) and name the policy it is signed under (--policy)"
    )]
    GrantNeedsPolicy,
    /// An unsigned grant where the policy lists approvers.
    #[error("the policy lists approvers: a grant must be signed with --key")]
    GrantMustBeSigned,
    /// An unsigned revocation of a signed grant.
    #[error("grant {grant} was signed: revoking it must be signed too (--key)")]
    RevokeMustBeSigned {
        /// The grant.
        grant: String,
    },
    /// A key that is not an approver of the policy a grant was signed under.
    #[error(
        "the key of `{key}` is not among the approvers of the policy grant {grant} was signed \
         under"
    )]
    NotAnApproverOfGrant {
        /// The key's name.
        key: String,
        /// The grant.
        grant: String,
    },
    /// A key that may not sign for the ticket's rule.
    #[error(
        "the key of `{key}` ({public}) may not sign for rule {rule}: its approvers are {approvers}"
    )]
    NotAnApproverOfRule {
        /// The key's name.
        key: String,
        /// Its public key.
        public: String,
        /// The rule.
        rule: String,
        /// Who may sign, in words.
        approvers: String,
    },
    /// A signature made elsewhere that does not verify over the statement
    /// the ledger built for the action: the action's fields were not the
    /// ones signed.
    #[error(
        "the signature of {public} does not verify over the statement this action needs \
         (the fields signed are not the ledger's):\n{statement}"
    )]
    StatementMismatch {
        /// The signer's public key.
        public: String,
        /// The statement the ledger built.
        statement: String,
    },
    /// A key the active policy does not list.
    #[error("the key of `{key}` ({public}) is not among the active policy's approvers")]
    UnknownKey {
        /// The key's name.
        key: String,
        /// Its public key.
        public: String,
    },
    /// A key that may not sign grants for the capability.
    #[error(
        "the key of `{key}` ({public}) may not sign grants for {capability}: a grant needs an \
         approver of a require_approval rule of {capability} with `approvals: 1` (rules that \
         need more approvers take tickets, one event at a time)"
    )]
    MayNotSignGrants {
        /// The key's name.
        key: String,
        /// Its public key.
        public: String,
        /// The capability.
        capability: String,
    },
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
        let result = self.inner.store.transaction(&mut |tx| {
            outcome = None;
            refused = None;
            let now = tx.ledger_time(self.inner.clock.now_micros())?;
            match action(tx, now) {
                Ok((value, mut record)) => {
                    record.time = rfc3339(now);
                    append(tx, record)?;
                    outcome = Some(value);
                    Ok(())
                }
                Err(OperatorError::Store(e)) => Err(e),
                // A refusal rolls back whatever the action wrote before it
                // was refused (a grant's row, say): nothing but a whole
                // action with its record is ever kept.
                Err(e) => {
                    refused = Some(e);
                    Err(StoreError::Invalid(
                        "the operator action was refused".to_owned().into(),
                    ))
                }
            }
        });
        match (outcome, refused, result) {
            (_, Some(e), _) => Err(e),
            (Some(value), None, Ok(())) => Ok(value),
            (_, None, Err(e)) => Err(e.into()),
            (None, None, Ok(())) => Err(Invalid::NothingDone.into()),
        }
    }

    /// Approves a pending ticket; the next identical event consumes it once
    /// the rule's quorum is met. `policy`: the policy in force (else the
    /// requirements the ledger noted when it opened the ticket).
    pub fn approve(
        &self,
        ticket: &str,
        who: Operator<'_>,
        policy: Option<&PolicyFacts>,
    ) -> Result<TicketOutcome, OperatorError> {
        self.decide_ticket(ticket, who, TicketStatus::Approved, policy)
    }

    /// Rejects a pending ticket; the identical event is then denied until the
    /// ticket expires.
    pub fn reject(
        &self,
        ticket: &str,
        who: Operator<'_>,
        policy: Option<&PolicyFacts>,
    ) -> Result<TicketOutcome, OperatorError> {
        self.decide_ticket(ticket, who, TicketStatus::Rejected, policy)
    }

    /// The statement `public_key` would sign to approve (`approve`) or
    /// reject the ticket now: the same bytes the action itself builds and
    /// checks, read by running it with a signer that only keeps them (so
    /// nothing is recorded). Errors are the action's own: not an approver of
    /// the rule, not pending, expired, already approved by this key.
    pub fn ticket_statement(
        &self,
        ticket: &str,
        approve: bool,
        public_key: &str,
        policy: Option<&PolicyFacts>,
    ) -> Result<Vec<u8>, OperatorError> {
        let status = if approve {
            TicketStatus::Approved
        } else {
            TicketStatus::Rejected
        };
        read_statement(public_key, |who| {
            self.decide_ticket(ticket, who, status, policy)
        })
    }

    /// The statement `public_key` would sign to revoke the grant now, read
    /// as [`ticket_statement`](Self::ticket_statement) reads its own.
    pub fn revoke_statement(
        &self,
        grant: &str,
        public_key: &str,
        policy: Option<&PolicyFacts>,
    ) -> Result<Vec<u8>, OperatorError> {
        read_statement(public_key, |who| self.revoke(grant, who, policy))
    }

    fn decide_ticket(
        &self,
        ticket: &str,
        who: Operator<'_>,
        status: TicketStatus,
        policy: Option<&PolicyFacts>,
    ) -> Result<TicketOutcome, OperatorError> {
        if let Operator::Name(by) = who {
            operator_name(by)?;
        }
        let id = TicketId::parse(ticket)
            .map(|t| t.0)
            .ok_or_else(|| OperatorError::NotFound {
                kind: Approval::Ticket,
                id: ticket.to_owned(),
            })?;
        let label = TicketId(id).to_string();
        let verb = if status == TicketStatus::Approved {
            RecordKind::Approve
        } else {
            RecordKind::Reject
        };
        let ttl = micros(self.inner.ticket_ttl);
        self.operator(|tx, now| {
            let mut t = tx.ticket(id)?.ok_or_else(|| OperatorError::NotFound {
                kind: Approval::Ticket,
                id: label.clone(),
            })?;
            let records = tx.records_citing(&label)?;
            let digest = records
                .first()
                .and_then(|r| r.policy_digest.clone())
                .unwrap_or_default();
            let rule = ticket_rule(tx, policy, &digest, t.rule.as_deref(), &label)?;
            // The chain, not the row, says where the ticket stands.
            let chain = approvals::chain_ticket(&records, rule.as_ref()).map_err(|why| {
                Invalid::Unvouched {
                    kind: Approval::Ticket,
                    id: label.clone(),
                    why: why.to_string(),
                }
            })?;
            if chain.key != t.event_key {
                return Err(Invalid::RowMismatch {
                    ticket: label.clone(),
                }
                .into());
            }
            let standing = chain.standing();
            if standing != TicketStatus::Pending {
                return Err(OperatorError::NotPending {
                    ticket: label.clone(),
                    status: standing,
                });
            }
            let expires_at = chain.opened_at.saturating_add(ttl);
            if expires_at <= now {
                return Err(OperatorError::Expired(label.clone()));
            }
            let signed_rule = rule.as_ref().filter(|f| f.signed());
            let needed = signed_rule.map_or(1, |f| f.approvals);
            let (by, signature) = match (who, signed_rule) {
                (Operator::Name(_), Some(f)) => {
                    return Err(Refusal::SignatureNeeded {
                        ticket: label.clone(),
                        rule: f.id.to_string(),
                        approvals: f.approvals,
                        approvers: names(f),
                    }
                    .into());
                }
                (Operator::Name(by), None) => (operator_name(by)?, None),
                (Operator::Key(key), rule) => {
                    let name = match rule {
                        Some(f) => eligible_name(key, f)?,
                        None => key.key_name().to_owned(),
                    };
                    if verb == RecordKind::Approve && chain.approvals.contains(&name) {
                        return Err(Refusal::AlreadyApproved {
                            approver: name,
                            ticket: label.clone(),
                            needed,
                        }
                        .into());
                    }
                    let expires = rfc3339(expires_at);
                    let statement = approvals::ticket_statement(
                        verb.as_str(),
                        &label,
                        &chain.key,
                        &chain.opened_hash,
                        &digest,
                        needed,
                        &expires,
                        &name,
                    );
                    let payload = serde_json::json!({
                        "signer": name,
                        "key": key.public_key(),
                        "signature": key.sign_statement(&statement)?,
                        "quorum": needed,
                        "expires_at": expires,
                    });
                    (name, Some(payload.to_string()))
                }
            };
            let mut approvals = chain.approvals.clone();
            if verb == RecordKind::Approve && !approvals.contains(&by) {
                approvals.push(by.clone());
            }
            let done = status == TicketStatus::Rejected
                || approvals.len() >= usize::try_from(needed).unwrap_or(usize::MAX);
            if done {
                tx.update_ticket(id, status, Some(&by))?;
                t.status = status;
                t.decided_by = Some(if status == TicketStatus::Approved {
                    approvals.join(", ")
                } else {
                    by.clone()
                });
            }
            let reason = if done || status == TicketStatus::Rejected {
                format!(
                    "ticket {label} for {} by {} {verb}d by {by}",
                    t.capability,
                    t.actor.as_deref().unwrap_or("?"),
                )
            } else {
                format!(
                    "ticket {label} for {} by {} approved by {by} ({} of {needed})",
                    t.capability,
                    t.actor.as_deref().unwrap_or("?"),
                    approvals.len()
                )
            };
            let signed = signature.is_some();
            let mut record = operator_record(
                &by,
                verb,
                Some(t.environment.clone().unwrap_or_default()),
                signature.unwrap_or_else(|| t.payload.clone()),
                t.rule.clone(),
                reason,
                label.clone(),
            );
            if signed {
                record.policy_digest = Some(digest.clone());
            }
            Ok((
                TicketOutcome {
                    ticket: t,
                    approvals,
                    needed,
                },
                record,
            ))
        })
    }

    /// Grants `actor` passage through `require_approval` for `capability` in
    /// `environment` for `duration`, within `limits`. Never overrides deny.
    /// Where the policy lists approvers, the grant must be signed by one
    /// eligible for a rule of the capability that needs one approval, and it
    /// satisfies only such rules.
    #[allow(clippy::too_many_arguments)]
    pub fn grant(
        &self,
        actor: &str,
        capability: &str,
        environment: &str,
        who: Operator<'_>,
        duration: Duration,
        limits: GrantLimits,
        policy: Option<&PolicyFacts>,
    ) -> Result<Grant, OperatorError> {
        if duration.is_zero() {
            return Err(Invalid::ZeroDuration.into());
        }
        let scope = GrantScope {
            actor,
            capability,
            environment,
        };
        self.grant_until(scope, who, Expiry::After(duration), limits, policy)
    }

    /// A grant that ends at `expires_at` (µs since the epoch), as
    /// [`grant`](Self::grant) otherwise: for a signer elsewhere, who signs
    /// the statement [`grant_statement`](Self::grant_statement) gives for
    /// the same expiry. The grant's id is in the statement: if another
    /// grant took that id meanwhile, the signature no longer matches and
    /// the grant is refused (read the statement again and sign anew).
    pub fn grant_at(
        &self,
        scope: GrantScope<'_>,
        who: Operator<'_>,
        expires_at: i64,
        limits: GrantLimits,
        policy: Option<&PolicyFacts>,
    ) -> Result<Grant, OperatorError> {
        self.grant_until(scope, who, Expiry::At(expires_at), limits, policy)
    }

    /// The statement `public_key` would sign to make the grant
    /// [`grant_at`](Self::grant_at) makes now, read as
    /// [`ticket_statement`](Self::ticket_statement) reads its own.
    pub fn grant_statement(
        &self,
        scope: GrantScope<'_>,
        public_key: &str,
        expires_at: i64,
        limits: GrantLimits,
        policy: Option<&PolicyFacts>,
    ) -> Result<Vec<u8>, OperatorError> {
        read_statement(public_key, |who| {
            self.grant_until(scope, who, Expiry::At(expires_at), limits, policy)
        })
    }

    fn grant_until(
        &self,
        scope: GrantScope<'_>,
        who: Operator<'_>,
        expiry: Expiry,
        limits: GrantLimits,
        policy: Option<&PolicyFacts>,
    ) -> Result<Grant, OperatorError> {
        let GrantScope {
            actor,
            capability,
            environment,
        } = scope;
        if let Operator::Name(by) = who {
            operator_name(by)?;
        }
        let capability = capability.to_ascii_lowercase();
        let environment = environment.to_ascii_lowercase();
        let segments = capability
            .split_once('.')
            .is_some_and(|(r, a)| token::is_segment(r) && token::is_segment(a));
        if !token::is_token(actor) || !token::is_token(&environment) || !segments {
            return Err(Invalid::GrantSubject {
                actor: actor.to_owned(),
                capability: capability.clone(),
                environment: environment.clone(),
            }
            .into());
        }
        if let Some(p) = policy {
            approvals::check_caps(&p.facts, &capability, &limits.caps)?;
        }
        self.operator(|tx, now| {
            let expires_at = match expiry {
                Expiry::After(duration) => now.saturating_add(micros(duration)),
                Expiry::At(at) if at > now => at,
                Expiry::At(_) => return Err(Invalid::ZeroDuration.into()),
            };
            let signed_policy = match policy {
                Some(p) if p.signed() => Some(p),
                Some(_) => None,
                None if tx.has_note_with_prefix(&requirements_key(""))? => {
                    return Err(Refusal::GrantNeedsPolicy.into());
                }
                None => None,
            };
            let by = match (who, signed_policy) {
                (Operator::Name(_), Some(_)) => {
                    return Err(Refusal::GrantMustBeSigned.into());
                }
                (Operator::Name(by), None) => operator_name(by)?,
                (Operator::Key(key), Some(p)) => grant_signer(key, p, &capability)?,
                (Operator::Key(key), None) if key.only_reads() => {
                    return Err(Invalid::NothingDone.into());
                }
                (Operator::Key(key), None) => key.key_name().to_owned(),
            };
            let mut grant = Grant {
                id: 0,
                actor: actor.to_owned(),
                capability: capability.clone(),
                environment: environment.clone(),
                granted_by: by.clone(),
                created_at: now,
                expires_at,
                caps: limits.caps.clone(),
                uses_left: limits.uses,
                revoked_by: None,
                signed: None,
            };
            grant.id = tx.insert_grant(&grant)?;
            let label = GrantId(grant.id).to_string();
            let caps = approvals::caps_text(&grant.caps);
            let expires = rfc3339(grant.expires_at);
            let mut payload = serde_json::json!({
                "actor": grant.actor,
                "capability": grant.capability,
                "environment": grant.environment,
                "expires_at": expires,
                "caps": caps,
                "uses": grant.uses_left,
            });
            let mut digest = None;
            if let (Operator::Key(key), Some(p)) = (who, signed_policy) {
                let statement = approvals::grant_statement(
                    &label,
                    &grant.actor,
                    &grant.capability,
                    &grant.environment,
                    &caps,
                    grant.uses_left,
                    &expires,
                    &p.digest,
                    &by,
                );
                if let Some(body) = payload.as_object_mut() {
                    body.insert("signer".to_owned(), serde_json::json!(by));
                    body.insert("key".to_owned(), serde_json::json!(key.public_key()));
                    body.insert(
                        "signature".to_owned(),
                        serde_json::json!(key.sign_statement(&statement)?),
                    );
                }
                grant.signed = Some(approvals::GrantSignature {
                    signer: by.clone(),
                    key: key.public_key(),
                    policy_digest: p.digest.clone(),
                });
                if let Some(note) = &p.note {
                    tx.set_note(&requirements_key(&p.digest), note)?;
                }
                digest = Some(p.digest.clone());
            }
            let mut record = operator_record(
                &by,
                RecordKind::Grant,
                Some(environment.clone()),
                payload.to_string(),
                None,
                format!(
                    "grant {label} of {capability}.{environment} to {actor} by {by} until {expires}"
                ),
                label.clone(),
            );
            record.policy_digest = digest;
            Ok((grant, record))
        })
    }

    /// Revokes a grant. A signed grant needs a signed revoke, by any
    /// approver its policy lists.
    pub fn revoke(
        &self,
        grant: &str,
        who: Operator<'_>,
        policy: Option<&PolicyFacts>,
    ) -> Result<Grant, OperatorError> {
        if let Operator::Name(by) = who {
            operator_name(by)?;
        }
        let id = GrantId::parse(grant)
            .map(|g| g.0)
            .ok_or_else(|| OperatorError::NotFound {
                kind: Approval::Grant,
                id: grant.to_owned(),
            })?;
        let label = GrantId(id).to_string();
        self.operator(|tx, _now| {
            if tx.grant(id)?.is_none() {
                return Err(OperatorError::NotFound {
                    kind: Approval::Grant,
                    id: label.clone(),
                });
            }
            let records = tx.records_citing(&label)?;
            let mut g = approvals::chain_grant(id, &records).map_err(|why| Invalid::Unvouched {
                kind: Approval::Grant,
                id: label.clone(),
                why: why.to_string(),
            })?;
            if let Some(previous) = &g.revoked_by {
                return Err(OperatorError::AlreadyRevoked {
                    grant: label.clone(),
                    by: previous.clone(),
                });
            }
            let granted_hash = records.first().map(|r| r.hash.clone()).unwrap_or_default();
            let (by, signature) = match (&g.signed, who) {
                (Some(_), Operator::Name(_)) => {
                    return Err(Refusal::RevokeMustBeSigned {
                        grant: label.clone(),
                    }
                    .into());
                }
                (Some(s), Operator::Key(key)) => {
                    let listed = match policy.filter(|p| p.digest == s.policy_digest) {
                        Some(p) => p.facts.clone(),
                        None => tx
                            .note(&requirements_key(&s.policy_digest))?
                            .and_then(|n| approvals::parse_requirements(&n))
                            .unwrap_or_default(),
                    };
                    let public = key.public_key();
                    let name = listed
                        .iter()
                        .flat_map(|f| f.approvers.iter())
                        .find(|a| a.key == public.as_str())
                        .map(|a| a.name.to_string())
                        .ok_or_else(|| Refusal::NotAnApproverOfGrant {
                            key: key.key_name().to_owned(),
                            grant: label.clone(),
                        })?;
                    let statement =
                        approvals::revoke_statement(&label, &granted_hash, &s.policy_digest, &name);
                    let payload = serde_json::json!({
                        "signer": name,
                        "key": public,
                        "signature": key.sign_statement(&statement)?,
                    });
                    (name, Some((payload.to_string(), s.policy_digest.clone())))
                }
                (None, Operator::Name(by)) => (operator_name(by)?, None),
                (None, Operator::Key(key)) if key.only_reads() => {
                    return Err(Invalid::NothingDone.into());
                }
                (None, Operator::Key(key)) => (key.key_name().to_owned(), None),
            };
            tx.update_grant(id, g.uses_left, Some(&by))?;
            g.revoked_by = Some(by.clone());
            let (payload, digest) = match signature {
                Some((payload, digest)) => (payload, Some(digest)),
                None => ("{}".to_owned(), None),
            };
            let mut record = operator_record(
                &by,
                RecordKind::Revoke,
                Some(g.environment.clone()),
                payload,
                None,
                format!(
                    "grant {label} of {}.{} to {} revoked by {by}",
                    g.capability, g.environment, g.actor
                ),
                label.clone(),
            );
            record.policy_digest = digest;
            Ok((g, record))
        })
    }
}

/// The facts of the rule that opened a ticket: from the policy in force
/// (which must be the ticket's), else from the requirements the ledger
/// noted for the ticket's policy. `None`: approvals for it are not signed.
fn ticket_rule(
    tx: &mut dyn Tx,
    policy: Option<&PolicyFacts>,
    digest: &str,
    rule: Option<&str>,
    label: &str,
) -> Result<Option<RuleFacts>, OperatorError> {
    let rule = rule.unwrap_or_default();
    match policy {
        Some(p) if p.digest != digest => Err(Invalid::OtherPolicy {
            ticket: label.to_owned(),
            opened_under: short(digest).to_owned(),
            current: short(&p.digest).to_owned(),
        }
        .into()),
        Some(p) => Ok(p.rule(rule).cloned()),
        None => Ok(tx
            .note(&requirements_key(digest))?
            .and_then(|n| approvals::parse_requirements(&n))
            .and_then(|facts| facts.into_iter().find(|f| f.id == rule))),
    }
}

fn short(digest: &str) -> &str {
    digest.get(..12).unwrap_or(digest)
}

/// The policy's name for `key`, if it may sign for `rule`.
fn eligible_name(key: &dyn Signer, rule: &RuleFacts) -> Result<String, OperatorError> {
    let public = key.public_key();
    rule.approvers
        .iter()
        .find(|a| a.key == public.as_str())
        .map(|a| a.name.to_string())
        .ok_or_else(|| {
            Refusal::NotAnApproverOfRule {
                key: key.key_name().to_owned(),
                public: public.clone(),
                rule: rule.id.to_string(),
                approvers: names(rule),
            }
            .into()
        })
}

/// The policy's name for `key`, if some rule of `capability` that a grant
/// can satisfy (quorum 1) lists it.
fn grant_signer(
    key: &dyn Signer,
    policy: &PolicyFacts,
    capability: &str,
) -> Result<String, OperatorError> {
    let public = key.public_key();
    let (resource, action) = capability.split_once('.').unwrap_or((capability, ""));
    policy
        .facts
        .iter()
        .filter(|f| f.tier == DecisionKind::RequireApproval && f.covers(resource, action))
        .filter(|f| f.approvals == 1)
        .flat_map(|f| f.approvers.iter())
        .find(|a| a.key == public.as_str())
        .map(|a| a.name.to_string())
        .ok_or_else(|| {
            Refusal::MayNotSignGrants {
                key: key.key_name().to_owned(),
                public: public.clone(),
                capability: capability.to_owned(),
            }
            .into()
        })
}

fn names(rule: &RuleFacts) -> String {
    rule.approvers
        .iter()
        .map(|a| a.name.as_ref())
        .collect::<Vec<&str>>()
        .join(", ")
}

pub(super) fn operator_name(by: &str) -> Result<String, OperatorError> {
    let by = by.trim();
    if by.is_empty() {
        return Err(Invalid::NoOperatorName.into());
    }
    Ok(by.to_owned())
}

fn operator_record(
    by: &str,
    verb: RecordKind,
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
        decision: verb,
        rule,
        reason,
        approval_id: Some(approval_id),
        policy_digest: None,
        prev_hash: String::new(),
        hash: String::new(),
    }
}
