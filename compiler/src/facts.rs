//! What the runtime needs of a policy's rules beyond deciding: capability
//! patterns, numerically compared fields (a grant's caps), quorums and
//! eligible approvers. Read from the IR here; generated tables carry the
//! same facts as statics.

use std::borrow::Cow;

use crate::policy::{Approver, CapabilityPattern, DecisionKind, Field, Policy, Rule, Test};

/// A name held by [`RuleFacts`]: borrowed in generated code, owned when
/// read from a loaded policy.
pub type Name = Cow<'static, str>;

/// An approver eligible to sign for a rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eligible {
    /// The approver's name.
    pub name: Name,
    /// The public key, `ed25519:<base64>`.
    pub key: Name,
}

/// What the runtime needs to know of a rule beyond its decision: its
/// capability pattern and the payload fields it compares as numbers (a
/// grant's caps name such fields), its quorum and who may sign. The loader
/// builds it with owned names; generated tables write it with borrowed ones:
/// one type for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFacts {
    /// The rule's id.
    pub id: Name,
    /// Its tier.
    pub tier: DecisionKind,
    /// The resource segment, `None` for `*`.
    pub resource: Option<Name>,
    /// The action segment, `None` for `*`.
    pub action: Option<Name>,
    /// The payload fields it compares as numbers, sorted, distinct.
    pub numbers: Cow<'static, [Name]>,
    /// For `require_approval`: how many distinct approvers must sign.
    pub approvals: u32,
    /// For `require_approval`: who may sign. Empty when the policy lists no
    /// approvers: approvals are then not authenticated.
    pub approvers: Cow<'static, [Eligible]>,
}

impl RuleFacts {
    /// Whether approvals for this rule must be signed.
    pub fn signed(&self) -> bool {
        !self.approvers.is_empty()
    }

    /// Whether the rule's pattern covers `resource.action`.
    pub fn covers(&self, resource: &str, action: &str) -> bool {
        crate::capability::covers(
            self.resource.as_deref(),
            self.action.as_deref(),
            resource,
            action,
        )
    }
}

/// The facts of a generated table (read on the approval path only, never
/// while deciding).
pub type RuleFactList = Vec<RuleFacts>;

impl Rule {
    /// The rule's [`RuleFacts`], with `approvers` the policy's list (the
    /// rule's eligible approvers are picked from it).
    pub fn facts(&self, approvers: &[Approver]) -> RuleFacts {
        let (resource, action) = match &self.capability {
            CapabilityPattern::Any => (None, None),
            CapabilityPattern::Segments { resource, action } => (
                resource.clone().map(Cow::Owned),
                action.clone().map(Cow::Owned),
            ),
        };
        let mut numbers = Vec::new();
        self.for_each_test(&mut |t| {
            if let (Test::Number { .. }, Field::Payload(name)) = (t, t.field()) {
                numbers.push(Cow::Owned(name.clone()));
            }
        });
        numbers.sort();
        numbers.dedup();
        let eligible = if self.tier == DecisionKind::RequireApproval {
            approvers
                .iter()
                .filter(|a| {
                    self.approvers
                        .as_ref()
                        .is_none_or(|names| names.contains(&a.name))
                })
                .map(|a| Eligible {
                    name: Cow::Owned(a.name.clone()),
                    key: Cow::Owned(a.key.clone()),
                })
                .collect()
        } else {
            Vec::new()
        };
        RuleFacts {
            id: Cow::Owned(self.id.clone()),
            tier: self.tier,
            resource,
            action,
            numbers: Cow::Owned(numbers),
            approvals: self.approvals.unwrap_or(1),
            approvers: Cow::Owned(eligible),
        }
    }
}

impl Policy {
    /// Every rule's [`RuleFacts`], in precedence order.
    pub fn rule_facts(&self) -> Vec<RuleFacts> {
        self.rules
            .iter()
            .map(|r| r.facts(&self.approvers))
            .collect()
    }
}
