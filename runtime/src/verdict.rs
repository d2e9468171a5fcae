//! [`Verdict`]: what the runtime answers for one event.

use capfence_compiler::DecisionKind;

mod detail;

pub use detail::{
    DetailCause, GrantDetail, LimitDetail, MalformedDetail, TicketDetail, VerdictDetail,
    WindowDetail,
};

/// The runtime's answer: the policy's decision after approvals, with the
/// evidence an agent or an operator needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the call may proceed. True only for `allow`, and only after the
    /// decision's audit record is durable.
    pub authorized: bool,
    /// `allow`, `require_approval` or `deny`. A require_approval rule satisfied
    /// by an approved ticket or an active grant reports `allow`.
    pub decision: DecisionKind,
    /// Why.
    pub reason: String,
    /// The deciding rule, if one decided.
    pub rule: Option<String>,
    /// The ticket (`T-…`) or grant (`G-…`) involved, if any.
    pub approval_id: Option<String>,
    /// Why, in fields: the rule's limits and the call's values, window
    /// totals, the ticket, the malformed field.
    pub detail: VerdictDetail,
    /// The seq of the chain record of this decision (`None`: nothing was
    /// recorded). An authorized call's outcome cites it
    /// ([`ActionRuntime::record_outcome`](crate::ActionRuntime::record_outcome)).
    pub seq: Option<u64>,
}

impl Verdict {
    /// A deny with no rule and nothing recorded (the ledger could not be
    /// written, a gate without a context): `detail.cause` is `unrecorded`.
    pub fn deny(reason: impl Into<String>) -> Verdict {
        Verdict {
            authorized: false,
            decision: DecisionKind::Deny,
            reason: reason.into(),
            rule: None,
            approval_id: None,
            detail: VerdictDetail::unrecorded(),
            seq: None,
        }
    }

    /// The verdict as one JSON line:
    /// `{"authorized":…,"decision":…,"reason":…,"rule":…,"approval_id":…,"detail":{…}}`
    /// (docs/cli.md has the JSON schema).
    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.line()).unwrap_or_else(|_| {
            r#"{"authorized":false,"decision":"deny","reason":"cannot encode verdict","rule":null,"approval_id":null,"seq":null,"detail":{"cause":"unrecorded"}}"#.to_owned()
        })
    }

    /// The verdict as a JSON value, with the fields of [`to_json`](Self::to_json).
    pub fn to_value(&self) -> serde_json::Value {
        serde_json::to_value(self.line()).unwrap_or_else(|_| {
            serde_json::json!({
                "authorized": false,
                "decision": "deny",
                "reason": "cannot encode verdict",
                "rule": null,
                "approval_id": null,
                "seq": null,
                "detail": {"cause": "unrecorded"},
            })
        })
    }

    fn line(&self) -> Line<'_> {
        Line {
            authorized: self.authorized,
            decision: self.decision.as_str(),
            reason: &self.reason,
            rule: self.rule.as_deref(),
            approval_id: self.approval_id.as_deref(),
            seq: self.seq,
            detail: &self.detail,
        }
    }
}

/// A verdict as JSON writes it, fields in this order.
#[derive(serde::Serialize)]
struct Line<'a> {
    authorized: bool,
    decision: &'a str,
    reason: &'a str,
    rule: Option<&'a str>,
    approval_id: Option<&'a str>,
    seq: Option<u64>,
    detail: &'a VerdictDetail,
}
