//! [`Verdict`]: what the runtime answers for one event.

use capfence_compiler::DecisionKind;

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
}

impl Verdict {
    /// A deny with no rule.
    pub fn deny(reason: impl Into<String>) -> Verdict {
        Verdict {
            authorized: false,
            decision: DecisionKind::Deny,
            reason: reason.into(),
            rule: None,
            approval_id: None,
        }
    }

    /// The verdict as one JSON line:
    /// `{"authorized":…,"decision":…,"reason":…,"rule":…,"approval_id":…}`.
    pub fn to_json(&self) -> String {
        #[derive(serde::Serialize)]
        struct Line<'a> {
            authorized: bool,
            decision: &'a str,
            reason: &'a str,
            rule: Option<&'a str>,
            approval_id: Option<&'a str>,
        }
        let line = Line {
            authorized: self.authorized,
            decision: self.decision.as_str(),
            reason: &self.reason,
            rule: self.rule.as_deref(),
            approval_id: self.approval_id.as_deref(),
        };
        serde_json::to_string(&line).unwrap_or_else(|_| {
            r#"{"authorized":false,"decision":"deny","reason":"cannot encode verdict","rule":null,"approval_id":null}"#.to_owned()
        })
    }
}
