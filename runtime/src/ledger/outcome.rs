//! What became of an authorized call. An `outcome` record cites the
//! decision it follows (`D-<seq>`): `executed`, with the payment rail's
//! reference and, when it differs, the amount actually sent; or `failed`,
//! with the error. One outcome per decision, and only for a call that was
//! authorized; both are checked inside the transaction that appends it, and
//! again by `verify`.

use rust_decimal::Decimal;

use super::{Ledger, append};
use crate::audit::{AuditRecord, RecordKind};
use crate::clock::rfc3339;
use crate::store::{StoreError, Tx};

/// The longest reference or error text an outcome keeps.
const MAX_TEXT: usize = 2000;

/// What became of an authorized call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The call ran and the money moved.
    Executed {
        /// The rail's own id of the movement (a bank transaction id).
        reference: Option<String>,
        /// The amount actually sent, when it is not the decided one.
        amount: Option<Decimal>,
    },
    /// The call ran and failed: nothing moved.
    Failed {
        /// What the tool or the rail said.
        error: String,
    },
}

/// An outcome that cannot be recorded.
#[derive(Debug, thiserror::Error)]
pub enum OutcomeError {
    /// No record at that seq.
    #[error("no record {0} in the chain")]
    NoSuchRecord(u64),
    /// The record is not an authorized call.
    #[error(
        "record {seq} is `{kind}`, not an authorized call: only a call that was allowed has an \
         outcome"
    )]
    NotAuthorized {
        /// The record.
        seq: u64,
        /// What it is.
        kind: String,
    },
    /// The call already has its outcome.
    #[error("record {seq} already has its outcome: record {at} says {said}")]
    AlreadyRecorded {
        /// The decision.
        seq: u64,
        /// The outcome record.
        at: u64,
        /// What it said.
        said: String,
    },
    /// The policy whose windows the outcome would recount is not the
    /// ledger's active one.
    #[error(
        "policy {policy} is not the ledger's active policy ({active}): its windows are not what counts"
    )]
    NotActive {
        /// The runtime's policy digest.
        policy: String,
        /// The active one (`none`: no policy is active).
        active: String,
    },
    /// A reference, error or amount that cannot be kept.
    #[error("{0}")]
    Invalid(String),
    /// The ledger could not be written.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The id an outcome record cites: `D-<seq>` of its decision.
pub fn decision_label(seq: u64) -> String {
    format!("D-{seq}")
}

/// The decision seq of a `D-<seq>` label; `None` for anything else.
pub fn decision_of(label: &str) -> Option<u64> {
    let digits = label.strip_prefix("D-")?;
    if digits.is_empty() || digits.starts_with('0') || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn checked_text(what: &str, text: &str) -> Result<(), OutcomeError> {
    if text.trim().is_empty() {
        return Err(OutcomeError::Invalid(format!("the {what} is empty")));
    }
    if text.chars().count() > MAX_TEXT {
        return Err(OutcomeError::Invalid(format!(
            "the {what} is longer than {MAX_TEXT} characters"
        )));
    }
    if text.chars().any(char::is_control) {
        return Err(OutcomeError::Invalid(format!(
            "the {what} holds a control character"
        )));
    }
    Ok(())
}

impl Outcome {
    /// `executed` or `failed`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Outcome::Executed { .. } => "executed",
            Outcome::Failed { .. } => "failed",
        }
    }

    fn check(&self) -> Result<(), OutcomeError> {
        match self {
            Outcome::Executed { reference, amount } => {
                if let Some(r) = reference {
                    checked_text("reference", r)?;
                }
                if amount.is_some_and(|a| a.is_sign_negative() && !a.is_zero()) {
                    return Err(OutcomeError::Invalid(
                        "the amount sent is negative".to_owned(),
                    ));
                }
                Ok(())
            }
            Outcome::Failed { error } => checked_text("error", error),
        }
    }

    /// The record's payload: `{"outcome":"executed","reference":…,"amount":"…"}`
    /// or `{"outcome":"failed","error":…}` (amounts as exact decimal text).
    fn payload(&self) -> String {
        let value = match self {
            Outcome::Executed { reference, amount } => serde_json::json!({
                "outcome": "executed",
                "reference": reference,
                "amount": amount.map(|a| a.normalize().to_string()),
            }),
            Outcome::Failed { error } => serde_json::json!({
                "outcome": "failed",
                "error": error,
            }),
        };
        value.to_string()
    }

    /// The reason text of its record.
    fn reason(&self, seq: u64) -> String {
        match self {
            Outcome::Executed { reference, amount } => {
                let mut parts = Vec::new();
                if let Some(r) = reference {
                    parts.push(format!("reference {r}"));
                }
                if let Some(a) = amount {
                    parts.push(format!("amount sent {}", a.normalize()));
                }
                let said = if parts.is_empty() {
                    String::new()
                } else {
                    format!(" ({})", parts.join(", "))
                };
                format!("record {seq} executed{said}")
            }
            Outcome::Failed { error } => format!("record {seq} failed: {error}"),
        }
    }

    /// Reads an outcome record's payload back.
    pub fn of_record(record: &AuditRecord) -> Result<Outcome, String> {
        if record.decision != RecordKind::Outcome {
            return Err(format!("record {} is no outcome", record.seq));
        }
        let body: serde_json::Value = serde_json::from_str(&record.payload)
            .map_err(|_| format!("record {}: an unreadable outcome", record.seq))?;
        let text = |key: &str| body.get(key).and_then(serde_json::Value::as_str);
        let outcome = match text("outcome") {
            Some("executed") => Outcome::Executed {
                reference: text("reference").map(str::to_owned),
                amount: match body.get("amount") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(_) => Some(
                        text("amount")
                            .and_then(capfence_compiler::number::parse_exact)
                            .ok_or_else(|| format!("record {}: a bad amount", record.seq))?,
                    ),
                },
            },
            Some("failed") => Outcome::Failed {
                error: text("error").unwrap_or_default().to_owned(),
            },
            _ => return Err(format!("record {}: no outcome named", record.seq)),
        };
        outcome
            .check()
            .map_err(|e| format!("record {}: {e}", record.seq))?;
        Ok(outcome)
    }
}

impl Ledger {
    /// Records what became of the authorized call at `seq`, in one
    /// transaction: refused when there is no such record, when it was not
    /// an authorized call, or when it has its outcome already. A failed
    /// call, or one that sent another amount, counts so in every velocity
    /// window of the policy `digest` from then on (`windows`; `None`: the
    /// policy has none), which must be the ledger's active policy.
    pub fn record_outcome(
        &self,
        seq: u64,
        outcome: &Outcome,
        digest: &str,
        windows: Option<&super::Windowed>,
    ) -> Result<AuditRecord, OutcomeError> {
        outcome.check()?;
        let mut done = None;
        let mut refused = None;
        let result = self.inner.store.transaction(&mut |tx| {
            done = None;
            refused = None;
            let now = tx.ledger_time(self.inner.clock.now_micros())?;
            let active = super::policy::active_in(tx)?;
            if active.as_ref().is_none_or(|a| a.digest != digest) {
                refused = Some(OutcomeError::NotActive {
                    policy: digest.to_owned(),
                    active: active.map_or_else(|| "none".to_owned(), |a| a.digest),
                });
                return Err(StoreError::Invalid(
                    "the outcome was refused".to_owned().into(),
                ));
            }
            match outcome_in(tx, seq, outcome, now, windows) {
                Ok(record) => {
                    let mut record = record;
                    record.seq = append(tx, record.clone())?;
                    done = Some(record);
                    Ok(())
                }
                Err(OutcomeError::Store(e)) => Err(e),
                Err(e) => {
                    refused = Some(e);
                    Err(StoreError::Invalid(
                        "the outcome was refused".to_owned().into(),
                    ))
                }
            }
        });
        match (done, refused, result) {
            (_, Some(e), _) => Err(e),
            (Some(record), None, Ok(())) => Ok(record),
            (_, None, Err(e)) => Err(e.into()),
            (None, None, Ok(())) => Err(OutcomeError::Invalid("nothing was recorded".to_owned())),
        }
    }
}

/// The outcome record for the call at `seq`, after the checks, with its
/// window rows adjusted.
fn outcome_in(
    tx: &mut dyn Tx,
    seq: u64,
    outcome: &Outcome,
    now: i64,
    windows: Option<&super::Windowed>,
) -> Result<AuditRecord, OutcomeError> {
    let decision = tx.record_at(seq)?.ok_or(OutcomeError::NoSuchRecord(seq))?;
    if decision.decision != RecordKind::ALLOW {
        return Err(OutcomeError::NotAuthorized {
            seq,
            kind: decision.decision.as_str().to_owned(),
        });
    }
    let label = decision_label(seq);
    if let Some(earlier) = tx.records_citing(&label)?.first() {
        return Err(OutcomeError::AlreadyRecorded {
            seq,
            at: earlier.seq,
            said: earlier.reason.clone(),
        });
    }
    if let Some(w) = windows {
        recount_in_windows(tx, w, &decision, outcome)?;
    }
    Ok(AuditRecord {
        seq: 0,
        time: rfc3339(now),
        actor: decision.actor.clone(),
        capability: decision.capability.clone(),
        environment: decision.environment.clone(),
        risk: decision.risk.clone(),
        payload: outcome.payload(),
        decision: RecordKind::Outcome,
        rule: None,
        reason: outcome.reason(seq),
        approval_id: Some(label),
        policy_digest: None,
        prev_hash: String::new(),
        hash: String::new(),
    })
}

/// What the call at `decision` counts in each window from now on: nothing
/// when it failed; the amount sent in a window that sums `amount` when
/// that differs from the decided one.
fn recount_in_windows(
    tx: &mut dyn Tx,
    w: &super::Windowed,
    decision: &AuditRecord,
    outcome: &Outcome,
) -> Result<(), OutcomeError> {
    let Some(event) = super::verify::event_of(decision) else {
        return Ok(());
    };
    let at = crate::clock::parse_rfc3339(&decision.time).ok_or_else(|| {
        OutcomeError::Invalid(format!("record {} has an unreadable time", decision.seq))
    })?;
    for win in w.windows.iter().filter(|win| win.covers_event(&event)) {
        let (Some(group), Some(old)) = (win.group(&event), win.contribution(&event)) else {
            continue;
        };
        let new = counted(win, old, outcome);
        if new != old {
            tx.adjust_window(&win.key(), &group, at, old, new)?;
        }
    }
    Ok(())
}

/// What a call that contributed `old` to `win` counts after `outcome`.
pub(crate) fn counted(
    win: &capfence_compiler::window::Window,
    old: Decimal,
    outcome: &Outcome,
) -> Decimal {
    match outcome {
        Outcome::Failed { .. } => Decimal::ZERO,
        Outcome::Executed {
            amount: Some(sent), ..
        } if win.field.as_deref() == Some("amount") => *sent,
        Outcome::Executed { .. } => old,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_read_back_and_nothing_else_does() {
        assert_eq!(decision_of(&decision_label(17)), Some(17));
        for bad in ["D-", "D-0", "D-017", "D-1x", "T-1", "d-1", "D--1"] {
            assert_eq!(decision_of(bad), None, "{bad}");
        }
    }
}
