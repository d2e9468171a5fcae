//! What the runtime needs of a policy's rules beyond deciding: capability
//! patterns, numerically compared fields (a grant's caps), quorums and
//! eligible approvers. Read from the IR here; generated tables carry the
//! same facts as statics.

use crate::policy::{Approver, CapabilityPattern, DecisionKind, Field, Policy, Rule, Test};

/// What the runtime needs to know of a rule beyond its decision: its
/// capability pattern and the payload fields it compares as numbers (a
/// grant's caps name such fields). Compiled tables carry the same facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFacts {
    /// The rule's id.
    pub id: String,
    /// Its tier.
    pub tier: DecisionKind,
    /// The resource segment, `None` for `*`.
    pub resource: Option<String>,
    /// The action segment, `None` for `*`.
    pub action: Option<String>,
    /// The payload fields it compares as numbers, sorted, distinct.
    pub numbers: Vec<String>,
    /// For `require_approval`: how many distinct approvers must sign.
    pub approvals: u32,
    /// For `require_approval`: who may sign, as (name, `ed25519:` key).
    /// Empty when the policy lists no approvers: approvals are then not
    /// authenticated.
    pub approvers: Vec<(String, String)>,
}

impl RuleFacts {
    /// Facts from generated code.
    pub fn new(f: &StaticRuleFacts) -> RuleFacts {
        RuleFacts {
            id: f.id.to_owned(),
            tier: f.tier,
            resource: f.resource.map(str::to_owned),
            action: f.action.map(str::to_owned),
            numbers: f.numbers.iter().map(|n| (*n).to_owned()).collect(),
            approvals: f.approvals,
            approvers: f
                .approvers
                .iter()
                .map(|(name, key)| ((*name).to_owned(), (*key).to_owned()))
                .collect(),
        }
    }

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

/// [`RuleFacts`] as generated code writes them: all `'static`.
#[derive(Debug, Clone, Copy)]
pub struct StaticRuleFacts {
    /// The rule's id.
    pub id: &'static str,
    /// Its tier.
    pub tier: DecisionKind,
    /// The resource segment, `None` for `*`.
    pub resource: Option<&'static str>,
    /// The action segment, `None` for `*`.
    pub action: Option<&'static str>,
    /// The payload fields it compares as numbers.
    pub numbers: &'static [&'static str],
    /// How many distinct approvers must sign.
    pub approvals: u32,
    /// Who may sign: (name, `ed25519:` key).
    pub approvers: &'static [(&'static str, &'static str)],
}

/// The facts of a generated table, owned (read on the approval path only,
/// never while deciding).
pub type RuleFactList = Vec<RuleFacts>;

/// Owned facts from a generated table's static ones.
pub fn facts_from_static(list: &[StaticRuleFacts]) -> RuleFactList {
    list.iter().map(RuleFacts::new).collect()
}

impl Rule {
    /// The rule's [`RuleFacts`], with `approvers` the policy's list (the
    /// rule's eligible approvers are picked from it).
    pub fn facts(&self, approvers: &[Approver]) -> RuleFacts {
        let (resource, action) = match &self.capability {
            CapabilityPattern::Any => (None, None),
            CapabilityPattern::Segments { resource, action } => (resource.clone(), action.clone()),
        };
        let mut numbers = Vec::new();
        self.for_each_test(&mut |t| {
            if let (Test::Number { .. }, Field::Payload(name)) = (t, t.field()) {
                numbers.push(name.clone());
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
                .map(|a| (a.name.clone(), a.key.clone()))
                .collect()
        } else {
            Vec::new()
        };
        RuleFacts {
            id: self.id.clone(),
            tier: self.tier,
            resource,
            action,
            numbers,
            approvals: self.approvals.unwrap_or(1),
            approvers: eligible,
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
